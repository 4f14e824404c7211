"""Config of `kind: spdk` devices and the `storage.spdk` section.

A device entry has one table for every kind (appliance.config.DeviceConfig); this module
holds the spdk keys' converters and the per-kind rules: which keys a kind (and, for spdk, a
transport) accepts, what is required, and the defaults that only make sense for spdk. A key
written for a kind that has no use for it is refused by name rather than ignored.

The keys and their meaning are in spdk_bindings/README.md ("Config parameters of a kind:
spdk device") and configs/spdk-example.yaml.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.config import units
from appliance.config.schema import (
    Context,
    boolean,
    one_of,
    path_value,
    scalar,
    setting,
    size_range,
)
from appliance.config.yaml_source import ConfigError, Node

SPDK_TRANSPORTS = ("pcie", "tcp", "aio", "uring")
DEFAULT_RPC_SOCKET = "/var/tmp/spdk.sock"
DEFAULT_RPC_TIMEOUT_MS = 30_000
DEFAULT_CLUSTER_SIZE = 4 * 1024**2
DEFAULT_EXPORT = "127.0.0.1:4420"
# storage.spdk.mem_size in embedded mode: its default, and the least that starts.
EMBEDDED_MEM_SIZE = 1024**3
EMBEDDED_MEM_MIN = 512 * 1024**2
# One subsystem per device: SmartSwitch's NQN prefix (date and reversed domain, as the
# NVMe base specification asks), then the device's name.
EXPORT_NQN_PREFIX = "nqn.2016-06.io.smartswitch:"

# Keys of a device entry that only a kind: spdk device has.
SPDK_KEYS = ("rpc_socket", "rpc_timeout", "transport", "traddr", "trsvcid", "adrfam",
             "subnqn", "block_size", "bdev", "controller", "lvstore", "cluster_size",
             "reconnect_delay", "fast_io_fail_timeout", "ctrlr_loss_timeout",
             "export", "export_nqn")
# Keys an spdk device accepts only with some transports.
TRANSPORT_KEYS = {
    "path": ("aio", "uring"), "block_size": ("aio", "uring"),
    "traddr": ("pcie", "tcp"), "controller": ("pcie", "tcp"),
    "trsvcid": ("tcp",), "adrfam": ("tcp",), "subnqn": ("tcp",),
    "reconnect_delay": ("tcp",), "fast_io_fail_timeout": ("tcp",),
    "ctrlr_loss_timeout": ("tcp",),
}
# Keys that file and block devices have and spdk devices do not.
NOT_SPDK_KEYS = ("direct_io", "direct_writes")

_PCI = re.compile(r"^(?:([0-9a-fA-F]{4}):)?([0-9a-fA-F]{2}):([0-9a-fA-F]{2})\.([0-7])$")
_NQN_REST = re.compile(r"^[\x21-\x7e]+$")


def ctrlr_loss(raw: Any) -> int:
    """ctrlr_loss_timeout: -1 (never give the controller up), or whole seconds, in ms."""
    if raw == -1:
        return -1
    try:
        ms = units.parse_duration_ms(raw)
    except ValueError:
        ms = -2
    if ms < 1000 or ms > 24 * 3_600_000 or ms % 1000:
        raise ValueError("-1 (never give up) or a duration in whole seconds from 1s to 24h")
    return ms


def optional_path(node: Node, path: str, ctx: Context) -> Path | None:
    """A file system path, or null."""
    return None if node.value is None else path_value(node, path, ctx)


def nqn(raw: Any) -> str:
    """An NVMe qualified name: "nqn." then printable ASCII, at most 223 bytes."""
    expected = "an NVMe qualified name like nqn.2016-06.io.spdk:cnode1 (at most 223 bytes)"
    if not isinstance(raw, str) or not raw.startswith("nqn.") or len(raw.encode()) > 223 \
            or not _NQN_REST.match(raw):
        raise ValueError(expected)
    return raw


def transport_address(raw: Any) -> str:
    """A PCI or IP address as a string (checked further once the transport is known)."""
    if not isinstance(raw, str) or not raw.strip():
        # YAML 1.1 reads an unquoted 0000:01:00.0 as a base-60 number.
        raise ValueError("a PCI address or an IP address, quoted (an unquoted 0000:01:00.0 "
                         "is a number in YAML)")
    return raw.strip()


def export_address(raw: Any) -> str:
    """HOST:PORT with a numeric host ([v6]:PORT for IPv6), normalised."""
    expected = "an address like 127.0.0.1:4420 or [::1]:4420, or null for no export"
    if not isinstance(raw, str):
        raise ValueError(expected)
    host, sep, port = raw.strip().rpartition(":")
    if not sep or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(expected)
    try:
        ip = ipaddress.ip_address(host[1:-1] if host.startswith("[") else host)
    except ValueError:
        raise ValueError(expected) from None
    if ip.version == 6 and not host.startswith("["):
        raise ValueError(expected)
    return f"[{ip}]:{int(port)}" if ip.version == 6 else f"{ip}:{int(port)}"


def split_address(addr: str) -> tuple[str, int]:
    """("127.0.0.1", 4420) from a normalised export address."""
    host, _, port = addr.rpartition(":")
    return host.strip("[]"), int(port)


def block_size(raw: Any) -> int:
    """A logical block size: a power of two from 512 to 64KiB (SPDK cannot detect it on
    files)."""
    if isinstance(raw, bool) or not isinstance(raw, int) or not 512 <= raw <= 65536 \
            or raw & (raw - 1):
        raise ValueError("a block size in bytes, a power of two from 512 to 65536")
    return raw


def _line(node: Node, key: str) -> int | None:
    return node.line_of(key) if node.child(key) is not None else node.line


def _given(node: Node) -> list[str]:
    return list(node.value) if isinstance(node.value, dict) else []


def check_file_or_block(dev: Any, node: Node, path: str) -> None:
    """Refuse spdk keys on a file or block device; require a path."""
    for key in _given(node):
        if key in SPDK_KEYS:
            raise ConfigError(f"only a kind: spdk device has {key}; a {dev.kind} device "
                              f"takes name, kind, path, size, direct_io and direct_writes",
                              path=f"{path}.{key}", line=_line(node, key))
    if dev.path is None:
        raise ConfigError(f"missing; a device of kind {dev.kind} needs a path",
                          path=f"{path}.path", line=_line(node, "path"))


def check_spdk(dev: Any, node: Node, path: str) -> Any:
    """Validate a kind: spdk device entry and fill in its spdk defaults.

    Returns:
        dev with rpc_socket, rpc_timeout, cluster_size, bdev, controller, lvstore, export
        and export_nqn set (export None: `export: null`, not exported).
    """
    given = _given(node)
    for key in given:
        if key in NOT_SPDK_KEYS:
            raise ConfigError(f"a kind: spdk device has no {key} (SPDK always bypasses the "
                              f"page cache); remove it", path=f"{path}.{key}",
                              line=_line(node, key))
    if dev.transport is None:
        raise ConfigError(f"missing; a kind: spdk device needs a transport "
                          f"({', '.join(SPDK_TRANSPORTS)})", path=f"{path}.transport",
                          line=_line(node, "transport"))
    for key in given:
        allowed = TRANSPORT_KEYS.get(key)
        if allowed is not None and dev.transport not in allowed:
            raise ConfigError(f"only for transport {' or '.join(allowed)}; a "
                              f"{dev.transport} device has no {key}", path=f"{path}.{key}",
                              line=_line(node, key))
    need = {"pcie": ("traddr",), "tcp": ("traddr", "trsvcid", "subnqn"),
            "aio": ("path", "block_size"), "uring": ("path", "block_size")}[dev.transport]
    for key in need:
        if getattr(dev, key) is None:
            why = " (SPDK cannot detect the block size of a file)" if key == "block_size" \
                else ""
            raise ConfigError(f"missing; transport {dev.transport} needs {key}{why}",
                              path=f"{path}.{key}", line=_line(node, "transport"))
    _check_reconnect(dev, node, path)
    changes: dict[str, Any] = {"direct_io": False}
    if dev.traddr is not None:
        changes["traddr"] = _traddr(dev, node, path)
    if dev.transport == "tcp" and dev.adrfam is None:
        changes["adrfam"] = "ipv6" if ":" in changes["traddr"] else "ipv4"
    if dev.rpc_socket is None:
        changes["rpc_socket"] = Path(DEFAULT_RPC_SOCKET)
    if dev.rpc_timeout is None:
        changes["rpc_timeout"] = DEFAULT_RPC_TIMEOUT_MS
    if dev.cluster_size is None:
        changes["cluster_size"] = DEFAULT_CLUSTER_SIZE
    nvme = dev.transport in ("pcie", "tcp")
    controller = dev.controller or (dev.name if nvme else None)
    changes["controller"] = controller
    changes["bdev"] = dev.bdev or (f"{controller}n1" if nvme else dev.name)
    changes["lvstore"] = dev.lvstore or f"ss_{dev.name}"
    exported = not ("export" in given and node.child("export").value is None)
    changes["export"] = (dev.export or DEFAULT_EXPORT) if exported else None
    changes["export_nqn"] = dev.export_nqn or f"{EXPORT_NQN_PREFIX}{dev.name}"
    return dataclasses.replace(dev, **changes)


def _check_reconnect(dev: Any, node: Node, path: str) -> None:
    """SPDK's own rules for the three (bdev_nvme_attach_controller refuses otherwise):
    a reconnect delay and a fast-fail timeout need a controller-loss timeout, and
    neither may exceed it (unless it is -1); the fast-fail timeout is at least the delay."""
    loss, delay, fail = dev.ctrlr_loss_timeout, dev.reconnect_delay, dev.fast_io_fail_timeout
    for key, value in (("reconnect_delay", delay), ("fast_io_fail_timeout", fail)):
        if value is None:
            continue
        if loss is None:
            raise ConfigError(f"needs ctrlr_loss_timeout (-1 for never) beside it",
                              path=f"{path}.{key}", line=_line(node, key))
        if loss != -1 and value > loss:
            raise ConfigError(f"{units.format_duration_ms(value)} is more than "
                              f"ctrlr_loss_timeout {units.format_duration_ms(loss)}",
                              path=f"{path}.{key}", line=_line(node, key))
    if fail is not None and delay is not None and fail < delay:
        raise ConfigError(f"{units.format_duration_ms(fail)} is less than reconnect_delay "
                          f"{units.format_duration_ms(delay)}",
                          path=f"{path}.fast_io_fail_timeout",
                          line=_line(node, "fast_io_fail_timeout"))


def _traddr(dev: Any, node: Node, path: str) -> str:
    raw = str(dev.traddr)
    if dev.transport == "pcie":
        m = _PCI.match(raw)
        if m:
            domain, bus, slot, fn = m.groups()
            return f"{(domain or '0000').lower()}:{bus.lower()}:{slot.lower()}.{fn}"
        expected = "a PCI address like 0000:01:00.0"
    else:
        try:
            return str(ipaddress.ip_address(raw))
        except ValueError:
            expected = "a numeric IPv4 or IPv6 address of the NVMe-oF target"
    raise ConfigError(f"expected {expected}, got {raw!r}", path=f"{path}.traddr",
                      line=_line(node, "traddr"))


def describe(dev: Any) -> str:
    """A device in a few words, for summaries and logs."""
    if dev.kind != "spdk":
        return f"{dev.kind} {dev.path}"
    where = {"pcie": lambda: dev.traddr, "aio": lambda: dev.path, "uring": lambda: dev.path,
             "tcp": lambda: f"{dev.traddr}:{dev.trsvcid} {dev.subnqn}"}[dev.transport]()
    return f"spdk {dev.name} ({dev.transport} {where}, lvstore {dev.lvstore})"


@dataclass(frozen=True)
class SpdkConfig:
    """`storage.spdk`: the SPDK environment the data path starts in this process."""

    NOUN = "spdk settings"

    # embedded (the default): SPDK runs inside the appliance (spdk_bindings/embedded.py):
    # its RPC server on each device's rpc_socket, each pool's lvol opened directly.
    # external: spdk_tgt owns the devices and exports each pool's lvol over NVMe-oF/TCP,
    # and the data path is an initiator.
    mode: str = setting(scalar(one_of("embedded", "external")), "embedded")
    # null: $SPDK_DIR/build/lib when SPDK_DIR is set, else the system library path.
    lib_dir: Path | None = setting(optional_path, None)
    # Not given: 1GiB embedded (EMBEDDED_MEM_SIZE), 256MiB external (an initiator only).
    mem_size: int = setting(scalar(size_range(64 * 1024**2, 2**40)), "256MiB")
    hugepages: bool = setting(scalar(boolean), False)

    def _check(self, node: Node, path: str) -> SpdkConfig:
        if self.mem_size % 1024**2:
            raise ConfigError(f"expected whole MiB, got {units.format_size(self.mem_size)}",
                              path=f"{path}.mem_size", line=_line(node, "mem_size"))
        if self.mode == "embedded":
            # The bdev layer's buffer pools alone take about 200 MiB of SPDK's memory;
            # with less its subsystems refuse to start.
            if "mem_size" not in _given(node):
                return dataclasses.replace(self._with_lib_dir(), mem_size=EMBEDDED_MEM_SIZE)
            if self.mem_size < EMBEDDED_MEM_MIN:
                raise ConfigError(f"embedded SPDK needs at least "
                                  f"{units.format_size(EMBEDDED_MEM_MIN)} (its bdev layer's "
                                  f"buffer pools), got {units.format_size(self.mem_size)}",
                                  path=f"{path}.mem_size", line=_line(node, "mem_size"))
        return self._with_lib_dir()

    def _with_lib_dir(self) -> SpdkConfig:
        if self.lib_dir is None and os.environ.get("SPDK_DIR"):
            return dataclasses.replace(self, lib_dir=Path(os.environ["SPDK_DIR"]) / "build"
                                       / "lib")
        return self
