"""The `storage` section: devices, pools, and how pools are laid out on a device.

Sizes are bytes once loaded; a pool written as a percentage keeps it in
``size_percent`` until its device's size is known (probed by provisioning,
appliance.storage). The layout constants here are the device format's
(docs/architecture.md, "Devices and pools"): provisioning writes what they say.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from appliance.config import units
from appliance.config.schema import (
    boolean,
    derived,
    duration_ms,
    fail,
    identifier,
    int_range,
    join,
    list_of,
    one_of,
    optional,
    path_value,
    pool_size,
    power_of_two_size,
    scalar,
    section,
    setting,
    size_range,
)
from appliance.config.spdk import (
    ctrlr_loss,
    SPDK_TRANSPORTS,
    SpdkConfig,
    block_size,
    check_file_or_block,
    check_spdk,
    export_address,
    nqn,
    optional_path,
    transport_address,
)
from appliance.config.yaml_source import ConfigError, Node

# Bytes a segment needs beyond its largest item: record header, key and
# segment trailer, with room to spare (ss_store.h: segment > item_size_max +
# record header).
SEGMENT_OVERHEAD = 4 * 1024
MIN_SEGMENTS_PER_POOL = 4

# Device layout (docs/architecture.md, "Devices and pools"): a label in the
# first LABEL_BYTES, then pools, each starting on a POOL_ALIGN boundary.
# Percentages are of the space after the label.
LABEL_BYTES = 1024**2
POOL_ALIGN = 1024**2


def align_up(n: int, to: int = POOL_ALIGN) -> int:
    """n rounded up to a multiple of to."""
    return (n + to - 1) // to * to


def percent_bytes(capacity: int, percent: Decimal) -> int:
    """Bytes of a percent pool on a device of capacity bytes (whole MiB, rounded down)."""
    usable = max(0, capacity - LABEL_BYTES)
    return int(usable * percent / 100) // POOL_ALIGN * POOL_ALIGN


def layout_end(sizes: list[int]) -> int:
    """Where the last of these pools ends when laid out in order after the label."""
    end = LABEL_BYTES
    for size in sizes:
        end = align_up(end) + size
    return end



# ------------------------------------------------------------------ sections
# Defaults below are written as in configs/default.yaml; keep them equal
# (tests/unit/test_config.py::test_defaults_match_default_yaml).
@dataclass(frozen=True)
class DeviceConfig:
    """An entry of `storage.devices`: where a pool's bytes live."""

    NOUN = "devices"

    name: str = setting(scalar(identifier))
    kind: str = setting(scalar(one_of("file", "block", "spdk")), "file")
    # file and block: the file or device; spdk aio/uring: the file spdk_tgt opens.
    path: Path | None = setting(optional_path, None)
    # file: required; block: defaults to the whole device (None); spdk: optional
    # minimum the target must give (refused below it).
    size: int | None = setting(scalar(optional(size_range(4 * 1024**2, 2**62),
                                               "the whole device")), None)
    # O_DIRECT: every device read and write bypasses the page cache. null (the
    # default) means false for files, whose speed is the page cache, and true
    # for block devices, where hits should measure the device.
    direct_io: bool | None = setting(scalar(optional(boolean, "the kind's default")), None)
    # With direct_io false: whether the log's segment writes still bypass the
    # page cache (O_DIRECT, where the file system allows), each then read back
    # into it by readahead, so the writing CPU never copies into fresh pages.
    # false writes through the page cache: a copy per byte, but no read-back.
    direct_writes: bool = setting(scalar(boolean), True)
    # kind: spdk only (appliance.config.spdk fills in the defaults and refuses
    # the keys a kind or transport has no use for).
    rpc_socket: Path | None = setting(optional_path, None)
    rpc_timeout: int | None = setting(scalar(optional(duration_ms(100, 3_600_000), "30s")),
                                      None)
    transport: str | None = setting(scalar(optional(one_of(*SPDK_TRANSPORTS),
                                                    "none (file and block devices)")), None)
    traddr: str | None = setting(scalar(optional(transport_address, "none")), None)
    trsvcid: int | None = setting(scalar(optional(int_range(1, 65535, "a port number"),
                                                  "none")), None)
    adrfam: str | None = setting(scalar(optional(one_of("ipv4", "ipv6"), "from traddr")),
                                 None)
    subnqn: str | None = setting(scalar(optional(nqn, "none")), None)
    block_size: int | None = setting(scalar(optional(block_size, "none")), None)
    bdev: str | None = setting(scalar(optional(identifier, "the default name")), None)
    controller: str | None = setting(scalar(optional(identifier, "the device's name")), None)
    lvstore: str | None = setting(scalar(optional(identifier, "ss_<name>")), None)
    cluster_size: int | None = setting(scalar(optional(power_of_two_size(1024**2, 1024**3),
                                                       "4MiB")), None)
    # kind: spdk, transport tcp: what SPDK's NVMe driver does when the remote
    # target goes away (bdev_nvme_attach_controller's settings; null: SPDK's
    # own default). reconnect_delay: between attempts; fast_io_fail_timeout:
    # after this, I/O fails at once (a server error) instead of waiting;
    # ctrlr_loss_timeout: after this the controller is given up (-1: never).
    reconnect_delay: int | None = setting(scalar(optional(duration_ms(
        1000, 3_600_000, whole_seconds=True), "SPDK's default")), None)
    fast_io_fail_timeout: int | None = setting(scalar(optional(duration_ms(
        1000, 3_600_000, whole_seconds=True), "SPDK's default")), None)
    ctrlr_loss_timeout: int | None = setting(scalar(optional(ctrlr_loss, "SPDK's default")),
                                             None)
    export: str | None = setting(scalar(optional(export_address, "no NVMe-oF export")), None)
    export_nqn: str | None = setting(scalar(optional(nqn, "the default NQN")), None)

    def _check(self, node: Node, path: str) -> DeviceConfig:
        if self.kind == "spdk":
            return check_spdk(self, node, path)
        check_file_or_block(self, node, path)
        if self.kind == "file" and self.size is None:
            raise ConfigError("missing; a device of kind file needs a size (how large "
                              "the file is made)", path=join(path, "size"),
                              line=node.line_of("size") if node.child("size") else node.line)
        if self.direct_io is None:
            return dataclasses.replace(self, direct_io=self.kind == "block")
        return self


@dataclass(frozen=True)
class PoolConfig:
    """An entry of `storage.pools`. `size` is bytes once the config is loaded;
    `size_percent` keeps the percentage it was written as, if any."""

    NOUN = "pools"

    name: str = setting(scalar(identifier))
    device: str = setting(scalar(identifier))
    size: int | Decimal = setting(scalar(pool_size), "100%")
    role: str = setting(scalar(one_of("memcached", "objects")), "memcached")
    segment_size: int = setting(scalar(power_of_two_size(1024**2, 256 * 1024**2)), "8MiB")
    # Provisioning may shrink this pool (offline), evicting what no longer fits.
    allow_shrink: bool = setting(scalar(boolean), False)
    # kind: spdk devices only: a thin-provisioned lvol (clusters taken when written).
    thin: bool = setting(scalar(boolean), False)
    size_percent: Decimal | None = derived()

    @property
    def resolved(self) -> bool:
        """False for a percent pool on a block device of unknown size (until probed)."""
        return not isinstance(self.size, Decimal)

    @property
    def segments(self) -> int:
        """Whole segments that fit in the pool (after its 4 KiB superblock)."""
        return max(0, int(self.size) - 4096) // self.segment_size if self.resolved else 0


@dataclass(frozen=True)
class StorageConfig:
    """`storage`: the index directory, the DRAM tier, devices and pools."""

    NOUN = "storage settings"

    dir: Path = setting(path_value, "./var")
    hot_tier: int = setting(scalar(size_range(0, 2**62)), "64MiB")
    flush_interval: int = setting(scalar(duration_ms(0, 3_600_000)), "200ms")
    devices: tuple[DeviceConfig, ...] = setting(list_of(DeviceConfig, "devices"), [
        {"name": "local", "kind": "file", "path": "./var/store.dat", "size": "2GiB"}])
    # Half for memcached items, half for objects (a 1GiB store from before objects keeps
    # its items pool: 50% of 2GiB after the label is the same 1023MiB).
    pools: tuple[PoolConfig, ...] = setting(list_of(PoolConfig, "pools"), [
        {"name": "items", "device": "local", "size": "50%", "role": "memcached",
         "segment_size": "8MiB"},
        {"name": "objects", "device": "local", "size": "50%", "role": "objects",
         "segment_size": "8MiB"}])
    spdk: SpdkConfig = setting(section(SpdkConfig), {})

    @property
    def index_dir(self) -> Path:
        """The LMDB environment directory."""
        return self.dir / "index"

    @property
    def memcached_pool(self) -> PoolConfig:
        """The one pool with role memcached (validation guarantees it)."""
        return next(p for p in self.pools if p.role == "memcached")

    def device(self, device_name: str) -> DeviceConfig:
        """The device called device_name (validation guarantees it exists)."""
        return next(d for d in self.devices if d.name == device_name)

    def _check(self, node: Node, path: str) -> StorageConfig:
        if "devices" in (node.value or {}) and "pools" not in (node.value or {}):
            raise ConfigError("missing; a storage section that lists its own devices needs "
                              "a pools list too", path=join(path, "pools"), line=node.line)
        if not self.devices:
            raise fail("expected at least one device", node.child("devices"),
                        join(path, "devices"))
        self._check_unique(node, path, "devices", [d.name for d in self.devices], "name")
        self._check_unique(node, path, "devices", [str(d.path) if d.path else f"#{i}"
                                                   for i, d in enumerate(self.devices)], "path")
        self._check_unique(node, path, "devices", [d.export_nqn or f"#{i}"
                                                   for i, d in enumerate(self.devices)],
                           "export_nqn")
        self._check_unique(node, path, "pools", [p.name for p in self.pools], "name")
        devices = {d.name: d for d in self.devices}
        sizes: dict[str, list[int]] = {}
        percents: dict[str, Decimal] = {}
        pools: list[PoolConfig] = []
        for i, pool in enumerate(self.pools):
            at = f"{join(path, 'pools')}[{i}]"
            dev = devices.get(pool.device)
            if dev is None:
                raise ConfigError(f"expected the name of a device in storage.devices "
                                  f"({', '.join(devices)}), got {pool.device!r}",
                                  path=f"{at}.device", line=node.line_of("pools", i, "device"))
            size_line = node.line_of("pools", i, "size")
            percent = pool.size if isinstance(pool.size, Decimal) else None
            if dev.kind != "spdk" and node.child("pools", i, "thin") is not None:
                raise ConfigError(f"only pools on a kind: spdk device can be thin; device "
                                  f"{dev.name!r} is {dev.kind}", path=f"{at}.thin",
                                  line=node.line_of("pools", i, "thin"))
            if percent is not None:
                percents[dev.name] = percents.get(dev.name, Decimal(0)) + percent
                if percents[dev.name] > 100:
                    raise ConfigError(
                        f"pools on device {dev.name!r} add up to {percents[dev.name]}% of "
                        f"it; percentages on one device must sum to at most 100%",
                        path=f"{at}.size", line=size_line)
                if dev.size is None or dev.kind == "spdk":  # sized when probed
                    pools.append(dataclasses.replace(pool, size_percent=percent))
                    continue
            nbytes = percent_bytes(dev.size, percent) if percent is not None else int(pool.size)
            if nbytes < MIN_SEGMENTS_PER_POOL * pool.segment_size + 4096:
                need = MIN_SEGMENTS_PER_POOL * pool.segment_size + 4096
                raise ConfigError(
                    f"expected at least {MIN_SEGMENTS_PER_POOL} segments and the pool's 4KiB "
                    f"superblock ({units.format_size(need)} with segment_size "
                    f"{units.format_size(pool.segment_size)}), got "
                    f"{units.format_size(nbytes)}", path=f"{at}.size", line=size_line)
            sizes.setdefault(dev.name, []).append(nbytes)
            if dev.kind == "spdk":
                # No label: one lvol per pool, checked against the lvol store's capacity
                # when the target is asked (provisioning).
                pools.append(dataclasses.replace(pool, size=nbytes, size_percent=percent))
                continue
            end = layout_end(sizes[dev.name])
            if dev.size is not None and end > dev.size:
                raise ConfigError(
                    f"pools on device {dev.name!r} need {units.format_size(end)} (with its "
                    f"{units.format_size(LABEL_BYTES)} label and MiB alignment) but the "
                    f"device has {units.format_size(dev.size)}; shrink the pool or grow the "
                    f"device", path=f"{at}.size", line=size_line)
            pools.append(dataclasses.replace(pool, size=nbytes, size_percent=percent))
        memcached = [i for i, p in enumerate(pools) if p.role == "memcached"]
        if not memcached:
            raise fail("expected exactly one pool with role memcached, got none",
                        node.child("pools"), join(path, "pools"))
        if len(memcached) > 1:
            i = memcached[1]
            raise ConfigError("only one memcached pool is supported for now; remove this one",
                              path=f"{join(path, 'pools')}[{i}].role",
                              line=node.line_of("pools", i, "role"))
        return dataclasses.replace(self, pools=tuple(pools))

    @staticmethod
    def _check_unique(node: Node, path: str, key: str, values: list[str], what: str) -> None:
        seen: dict[str, int] = {}
        for i, value in enumerate(values):
            if value in seen:
                raise ConfigError(f"duplicate {what} {value!r} (also "
                                  f"{join(path, key)}[{seen[value]}])",
                                  path=f"{join(path, key)}[{i}].{what}",
                                  line=node.line_of(key, i, what))
            seen[value] = i

