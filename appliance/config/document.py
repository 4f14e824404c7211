"""The whole config file: its top-level sections, and reading and validating it.

Each section is a frozen dataclass whose fields are its table: every YAML key
is a field declared with ``setting(converter, default)``, where the default is
written exactly as in configs/default.yaml and goes through the same
converter as operator input (tests/unit/test_config.py checks that the two
agree). Unknown keys are refused. Cross-field rules live in each section's
``_check`` hook and name the field an operator has to change. The sections
with tables of their own live beside this module: storage, proxy, spdk,
switch, console.

Every failure raises one ConfigError (appliance.config.yaml_source) that renders as
``FILE:LINE: yaml.path: what was expected, got what``.
"""


from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

from appliance.config import units
from appliance.config.console import ConsoleConfig
from appliance.config.objects import ObjectsConfig, check_objects, objects_section
from appliance.config.proxy import (
    BackendConfig,
    BackendDefaultsConfig,
    RoutingConfig,
    SparePoolConfig,
    all_backends,
    check_proxy,
    describe_proxy,
    spare_pools,
)
from appliance.config.schema import (
    UINT32_MAX,
    Context,
    build,
    derived,
    duration_ms,
    int_range,
    ip_literal,
    list_of,
    one_of,
    optional,
    port,
    scalar,
    section,
    setting,
    size_range,
    worker_count,
)
from appliance.config.spdk import describe
from appliance.config.storage import SEGMENT_OVERHEAD, StorageConfig
from appliance.config.switch import DataplaneConfig, check_switch, describe_switch
from appliance.config.yaml_source import ConfigError, Node, load_yaml

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
class LoggingConfig:
    """`logging`: what the appliance writes to stderr."""

    NOUN = "logging settings"

    level: str = setting(scalar(one_of("debug", "info", "warning", "error")), "info")


@dataclass(frozen=True)
class Config:
    """The whole file. `source` is the file name as given (None: built in)."""

    NOUN = ("sections (memcached, storage, logging, backends, backend_defaults, spare_pools, "
            "routing, dataplane, console, objects)")

    memcached: MemcachedConfig = setting(section(MemcachedConfig), {})
    storage: StorageConfig = setting(section(StorageConfig), {})
    logging: LoggingConfig = setting(section(LoggingConfig), {})
    # Proxy mode (appliance.config.proxy): a non-empty backends list turns it on.
    backends: tuple[BackendConfig, ...] = setting(list_of(BackendConfig, "back ends"), [])
    backend_defaults: BackendDefaultsConfig = setting(section(BackendDefaultsConfig), {})
    spare_pools: tuple[SparePoolConfig, ...] = setting(spare_pools, {})
    routing: RoutingConfig = setting(section(RoutingConfig), {})
    # Switch mode (appliance.config.switch): dataplane.mode: dpdk.
    dataplane: DataplaneConfig = setting(section(DataplaneConfig), {})
    # The web console, REST API and /metrics (appliance.config.console).
    console: ConsoleConfig = setting(section(ConsoleConfig), {})
    # Object requests over HTTP (appliance.config.objects); None: not served.
    objects: ObjectsConfig | None = setting(objects_section(), {})
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
        objects = check_objects(self, node)
        backends, pools = check_proxy(node, self.backends, self.backend_defaults,
                                      self.spare_pools,
                                      (self.memcached.listen, self.memcached.tcp_port))
        return dataclasses.replace(self, backends=backends, spare_pools=pools, objects=objects)

    def _check_one_eal(self, node: Node) -> None:
        """In switch mode SPDK attaches to the EAL switch mode starts (a process has one),
        so both must agree on hugepages: SPDK's memory is part of that EAL's."""
        pool = self.storage.memcached_pool
        if not self.dataplane.switch or self.storage.device(pool.device).kind != "spdk":
            return
        huge = not self.dataplane.dpdk.no_huge
        if self.storage.spdk.hugepages != huge:
            raise ConfigError(
                f"switch mode serves pool {pool.name} from spdk device {pool.device} through "
                f"one DPDK EAL, which dataplane.dpdk.no_huge: {str(not huge).lower()} starts "
                f"{'with' if huge else 'without'} hugepages; set storage.spdk.hugepages: "
                f"{str(huge).lower()} to match",
                path="storage.spdk.hugepages",
                line=node.line_of("storage", "spdk", "hugepages"))

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
    served = config.objects.pool if config.objects and config.objects.enabled else None
    reserved = [p.name for p in config.storage.pools if p.role == "objects" and p.name != served]
    return (f"memcached tcp={host}:{mc.tcp_port} udp={udp} workers={work}; "
            f"pool {pool.name}: {size}{pct} of {describe(dev)}, {pool.segments} segments "
            f"of {units.format_size(pool.segment_size)}; "
            + (f"objects={config.objects.url} from pool {served} "
               f"(buckets {', '.join(b.describe() for b in config.objects.buckets)}); "
               if served else "")
            + (f"objects pools {', '.join(reserved)} (reserved, not served); "
               if reserved else "") +
            f"hot tier {units.format_size(config.storage.hot_tier)}; "
            f"index {config.storage.index_dir}"
            + (f"; {describe_proxy(config.backends, config.spare_pools, config.routing)}"
               if config.proxy else "")
            + (f"; {describe_switch(config.dataplane)}" if config.dataplane.switch else ""))
