"""The appliance configuration: one YAML file validated into frozen dataclasses.

Each section is a frozen dataclass whose fields are its table: every YAML key
is a field declared with ``setting(converter, default)``, where the default is
written exactly as in configs/default.yaml and goes through the same
converter as operator input (tests/unit/test_config.py checks that the two
agree). Unknown keys are refused. Cross-field rules live in each section's
``_check`` hook and name the field an operator has to change.

Every failure raises one ConfigError (appliance.config_yaml) that renders as
``FILE:LINE: yaml.path: what was expected, got what``.
"""


from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from appliance import units
from appliance.config_schema import (
    UINT32_MAX,
    Context,
    boolean,
    build,
    derived,
    duration_ms,
    fail,
    identifier,
    int_range,
    ip_literal,
    join,
    list_of,
    one_of,
    optional,
    path_value,
    pool_size,
    port,
    power_of_two_size,
    scalar,
    section,
    setting,
    size_range,
    worker_count,
)
from appliance.config_proxy import (
    BackendConfig,
    BackendDefaultsConfig,
    RoutingConfig,
    SparePoolConfig,
    all_backends,
    check_proxy,
    describe_proxy,
    spare_pools,
)
from appliance.config_spdk import (
    SPDK_TRANSPORTS,
    SpdkConfig,
    block_size,
    check_file_or_block,
    check_spdk,
    describe,
    export_address,
    nqn,
    optional_path,
    transport_address,
)
from appliance.config_console import ConsoleConfig
from appliance.config_switch import DataplaneConfig, check_switch, describe_switch
from appliance.config_yaml import ConfigError, Node, load_yaml

__all__ = ["Config", "ConfigError", "MemcachedConfig", "StorageConfig", "DeviceConfig",
           "PoolConfig", "SpdkConfig", "LoggingConfig", "BackendConfig", "BackendDefaultsConfig",
           "SparePoolConfig", "RoutingConfig", "ConsoleConfig", "load_config", "parse_config",
           "summary"]

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
class MemcachedConfig:
    """`memcached`: the memcached endpoint. Durations are in milliseconds."""

    NOUN = "memcached settings"

    listen: str = setting(scalar(ip_literal), "127.0.0.1")
    tcp_port: int = setting(scalar(port), 11211)
    udp_port: int | None = setting(scalar(optional(port, "no UDP listener")), 11211)
    workers: int | None = setting(scalar(worker_count), "auto")
    max_connections: int = setting(scalar(int_range(1, 1_000_000, "a number of connections")),
                                   4096)
    idle_timeout: int = setting(scalar(duration_ms(0, UINT32_MAX // 1000 * 1000,
                                                   whole_seconds=True)), "0s")
    item_size_max: int = setting(scalar(size_range(1024, 128 * 1024**2)), "1MiB")
    udp_reply_rate: int = setting(scalar(size_range(1, UINT32_MAX)), "4MiB")
    # A reply datagram is at most 1400 bytes, its 8-byte frame header
    # included; a smaller burst could never send a full one.
    udp_reply_burst: int = setting(scalar(size_range(1400, UINT32_MAX)), "512KiB")


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
    # kind: spdk only (appliance.config_spdk fills in the defaults and refuses
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
        {"name": "local", "kind": "file", "path": "./var/store.dat", "size": "1GiB"}])
    pools: tuple[PoolConfig, ...] = setting(list_of(PoolConfig, "pools"), [
        {"name": "items", "device": "local", "size": "100%", "role": "memcached",
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


@dataclass(frozen=True)
class LoggingConfig:
    """`logging`: what the appliance writes to stderr."""

    NOUN = "logging settings"

    level: str = setting(scalar(one_of("debug", "info", "warning", "error")), "info")


@dataclass(frozen=True)
class Config:
    """The whole file. `source` is the file name as given (None: built in)."""

    NOUN = ("sections (memcached, storage, logging, backends, backend_defaults, spare_pools, "
            "routing, dataplane, console)")

    memcached: MemcachedConfig = setting(section(MemcachedConfig), {})
    storage: StorageConfig = setting(section(StorageConfig), {})
    logging: LoggingConfig = setting(section(LoggingConfig), {})
    # Proxy mode (appliance.config_proxy): a non-empty backends list turns it on.
    backends: tuple[BackendConfig, ...] = setting(list_of(BackendConfig, "back ends"), [])
    backend_defaults: BackendDefaultsConfig = setting(section(BackendDefaultsConfig), {})
    spare_pools: tuple[SparePoolConfig, ...] = setting(spare_pools, {})
    routing: RoutingConfig = setting(section(RoutingConfig), {})
    # Switch mode (appliance.config_switch): dataplane.mode: dpdk.
    dataplane: DataplaneConfig = setting(section(DataplaneConfig), {})
    # The web console, REST API and /metrics (appliance.config_console).
    console: ConsoleConfig = setting(section(ConsoleConfig), {})
    source: str | None = derived()

    @property
    def proxy(self) -> bool:
        """True when back ends are configured (proxy mode), else standalone."""
        return bool(self.backends)

    @property
    def all_backends(self) -> tuple[BackendConfig, ...]:
        """Every back end in data-plane index order: primary, then spare pools."""
        return all_backends(self.backends, self.spare_pools)

    def _check(self, node: Node, path: str) -> Config:
        self._check_segments(node)
        check_switch(node, self.dataplane, self.memcached.listen, self.memcached.udp_port)
        self._check_one_eal(node)
        backends, pools = check_proxy(node, self.backends, self.backend_defaults,
                                      self.spare_pools,
                                      (self.memcached.listen, self.memcached.tcp_port))
        return dataclasses.replace(self, backends=backends, spare_pools=pools)

    def _check_one_eal(self, node: Node) -> None:
        """Switch mode and the SPDK data path each start DPDK's EAL, which a process can
        start only once; serving from SPDK in switch mode is refused until they share it."""
        pool = self.storage.memcached_pool
        if self.dataplane.switch and self.storage.device(pool.device).kind == "spdk":
            raise ConfigError(
                f"switch mode (dataplane.mode: dpdk) cannot serve pool {pool.name} from spdk "
                f"device {pool.device} yet: both would start DPDK's EAL in one process; use a "
                f"file or block device in switch mode, or socket mode with SPDK",
                path="dataplane.mode", line=node.line_of("dataplane", "mode"))

    def _check_segments(self, node: Node) -> None:
        item = self.memcached.item_size_max
        for i, pool in enumerate(self.storage.pools):
            if pool.role != "memcached" or pool.segment_size >= item + SEGMENT_OVERHEAD:
                continue
            need = 1 << (item + SEGMENT_OVERHEAD - 1).bit_length()
            seg_path = f"storage.pools[{i}].segment_size"
            seg_node = node.child("storage", "pools", i, "segment_size")
            if seg_node is None:
                # The segment size is a default: the item size is what the
                # operator wrote, so point there.
                raise ConfigError(
                    f"expected at most {seg_path} - 4KiB "
                    f"({units.format_size(pool.segment_size - SEGMENT_OVERHEAD)}), got "
                    f"{units.format_size(item)}; lower item_size_max or set "
                    f"{seg_path}: {units.format_size(need)}",
                    path="memcached.item_size_max",
                    line=node.line_of("memcached", "item_size_max"))
            raise ConfigError(
                f"expected at least memcached.item_size_max + 4KiB "
                f"({units.format_size(item)} + 4KiB), got "
                f"{units.format_size(pool.segment_size)}; use segment_size: "
                f"{units.format_size(need)} or lower memcached.item_size_max",
                path=seg_path, line=seg_node.line)


# --------------------------------------------------------------------- entry


def parse_config(text: str, source: str | None = None, base_dir: Path | None = None) -> Config:
    """Validate config text.

    Args:
        text: the YAML document.
        source: the file name to show in errors (as the operator wrote it).
        base_dir: where relative paths resolve (default: the working directory).

    Returns:
        The validated, frozen Config.

    Raises:
        ConfigError: the first problem, carrying file, line and YAML path.
    """
    try:
        root = load_yaml(text)
        if root.value is None:
            root = Node({}, root.line)
        config = build(Config, root, "", Context(base_dir or Path.cwd()))
    except ConfigError as exc:
        exc.file = source
        raise
    return dataclasses.replace(config, source=source)


def load_config(path: str | os.PathLike[str], base_dir: Path | None = None) -> Config:
    """Read and validate a config file.

    Args:
        path: the file, as the operator named it (kept for messages).
        base_dir: where relative paths resolve (default: the working directory).

    Raises:
        ConfigError: unreadable file, YAML syntax error or invalid setting.
    """
    source = os.fspath(path)
    try:
        with open(source, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise ConfigError("no such file; pass an existing config file "
                          "(configs/default.yaml is the embedded default)", file=source) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text ({exc.reason} at byte {exc.start})",
                          file=source) from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", file=source) from None
    return parse_config(text, source, base_dir)


def summary(config: Config) -> str:
    """One line saying what the config will run."""
    mc = config.memcached
    host = f"[{mc.listen}]" if ":" in mc.listen else mc.listen
    udp = "off" if mc.udp_port is None else f"{host}:{mc.udp_port}"
    work = "auto" if mc.workers is None else str(mc.workers)
    pool = config.storage.memcached_pool
    dev = config.storage.device(pool.device)
    pct = f" ({pool.size_percent}%)" if pool.size_percent is not None else ""
    size = units.format_size(int(pool.size)) if pool.resolved else "sized when probed"
    objects = [p.name for p in config.storage.pools if p.role == "objects"]
    return (f"memcached tcp={host}:{mc.tcp_port} udp={udp} workers={work}; "
            f"pool {pool.name}: {size}{pct} of {describe(dev)}, {pool.segments} segments "
            f"of {units.format_size(pool.segment_size)}; "
            + (f"objects pools {', '.join(objects)} (reserved, not served yet); "
               if objects else "") +
            f"hot tier {units.format_size(config.storage.hot_tier)}; "
            f"index {config.storage.index_dir}"
            + (f"; {describe_proxy(config.backends, config.spare_pools, config.routing)}"
               if config.proxy else "")
            + (f"; {describe_switch(config.dataplane)}" if config.dataplane.switch else ""))
