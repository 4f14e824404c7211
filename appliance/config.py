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
import difflib
import ipaddress
import os
import re
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable

from appliance import units
from appliance.config_yaml import ConfigError, Node, describe, load_yaml

__all__ = ["Config", "ConfigError", "MemcachedConfig", "StorageConfig", "DeviceConfig",
           "PoolConfig", "LoggingConfig", "load_config", "parse_config", "summary"]

REQUIRED = object()

# Bytes a segment needs beyond its largest item: record header, key and
# segment trailer, with room to spare (ss_store.h: segment > item_size_max +
# record header).
SEGMENT_OVERHEAD = 4 * 1024
MIN_SEGMENTS_PER_POOL = 4
UINT32_MAX = 2**32 - 1


@dataclass(frozen=True)
class _Context:
    base_dir: Path


Converter = Callable[[Node, str, _Context], Any]


@dataclass(frozen=True)
class Spec:
    """One YAML key: how to convert it and its default (as written in YAML)."""

    convert: Converter
    default: Any = REQUIRED


def setting(convert: Converter, default: Any = REQUIRED) -> Any:
    """Declare a YAML key on a section dataclass (its one table row)."""
    return dataclasses.field(metadata={"spec": Spec(convert, default)})


def derived(default: Any = None) -> Any:
    """Declare a field computed by the section's _check, not read from YAML."""
    return dataclasses.field(default=default, metadata={"derived": True})


def _fail(message: str, node: Node | None, path: str) -> ConfigError:
    return ConfigError(message, path=path, line=node.line if node is not None else None)


def scalar(parse: Callable[[Any], Any]) -> Converter:
    """Lift ``parse(raw) -> value`` (raising ValueError(expected)) to a Converter."""

    def convert(node: Node, path: str, ctx: _Context) -> Any:
        try:
            return parse(node.value)
        except ValueError as exc:
            raise _fail(f"expected {exc}, got {describe(node)}", node, path) from None

    return convert


# ---------------------------------------------------------------- scalar kinds


def int_range(lo: int, hi: int, what: str = "an integer") -> Callable[[Any], int]:
    """An integer in [lo, hi]; YAML booleans are not integers here."""

    def parse(raw: Any) -> int:
        if isinstance(raw, bool) or not isinstance(raw, int) or not lo <= raw <= hi:
            raise ValueError(f"{what} from {lo} to {hi}")
        return raw

    return parse


def port(raw: Any) -> int:
    """A TCP/UDP port; 0 asks the kernel for a free one."""
    return int_range(0, 65535, "a port number")(raw)


def optional(parse: Callable[[Any], Any], off: str) -> Callable[[Any], Any]:
    """Accept null (meaning `off`) besides what parse accepts."""

    def wrapped(raw: Any) -> Any:
        if raw is None:
            return None
        try:
            return parse(raw)
        except ValueError as exc:
            raise ValueError(f"{exc}, or null for {off}") from None

    return wrapped


def ip_literal(raw: Any) -> str:
    """A numeric IPv4 or IPv6 address (no host names: no DNS at start-up)."""
    expected = "a numeric IPv4 or IPv6 address like 127.0.0.1 or ::1"
    if not isinstance(raw, str):
        raise ValueError(expected)
    try:
        return str(ipaddress.ip_address(raw.strip()))
    except ValueError:
        raise ValueError(expected) from None


def worker_count(raw: Any) -> int | None:
    """`auto` (None: one per usable core) or a thread count."""
    if raw == "auto":
        return None
    try:
        return int_range(1, 1024)(raw)
    except ValueError:
        raise ValueError("auto or a number of threads from 1 to 1024") from None


def size_range(lo: int, hi: int) -> Callable[[Any], int]:
    """A byte size in [lo, hi]."""

    def parse(raw: Any) -> int:
        nbytes = units.parse_size(raw)
        if not lo <= nbytes <= hi:
            raise ValueError(f"a size from {units.format_size(lo)} to {units.format_size(hi)}")
        return nbytes

    return parse


def duration_ms(lo_ms: int, hi_ms: int, whole_seconds: bool = False) -> Callable[[Any], int]:
    """A duration in milliseconds within [lo_ms, hi_ms]."""

    def parse(raw: Any) -> int:
        ms = units.parse_duration_ms(raw)
        if whole_seconds and ms % 1000:
            raise ValueError("a duration in whole seconds like 30s or 5m")
        if not lo_ms <= ms <= hi_ms:
            raise ValueError(f"a duration from {units.format_duration_ms(lo_ms)} "
                             f"to {units.format_duration_ms(hi_ms)}")
        return ms

    return parse


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


def identifier(raw: Any) -> str:
    """A short identifier operators use to refer to a device or pool."""
    if not isinstance(raw, str) or not _NAME.match(raw):
        raise ValueError("a name of letters, digits, '.', '-' or '_' (at most 63)")
    return raw


def one_of(*choices: str, later: tuple[str, ...] = (), hint: str = "") -> Callable[[Any], str]:
    """One word from choices; words in `later` are named as not supported yet."""

    def parse(raw: Any) -> str:
        if raw in choices:
            return raw
        words = choices[0] if len(choices) == 1 else "one of " + ", ".join(choices)
        if raw in later:
            raise ValueError(f"{words} ({raw} is not supported yet{hint})")
        extra = f" ({', '.join(later)}: not supported yet)" if later else ""
        raise ValueError(words + extra)

    return parse


def path_value(node: Node, path: str, ctx: _Context) -> Path:
    """A file system path; relative ones resolve against the working directory."""
    raw = node.value
    if not isinstance(raw, str) or not raw.strip():
        raise _fail(f"expected a file system path, got {describe(node)}", node, path)
    return Path(os.path.normpath(ctx.base_dir / raw))


def pool_size(raw: Any) -> int | Decimal:
    """Bytes (int) or a percentage of the device (Decimal), resolved in _check."""
    expected = "a size like 4GiB or 60%"
    if units.is_percent(raw):
        try:
            return units.parse_percent(raw)
        except ValueError as exc:
            raise ValueError(f"{expected} ({exc})") from None
    try:
        nbytes = units.parse_size(raw)
    except ValueError:
        raise ValueError(expected) from None
    if nbytes == 0:
        raise ValueError(expected + ", not zero")
    return nbytes


def power_of_two_size(lo: int, hi: int) -> Callable[[Any], int]:
    """A power-of-two byte size in [lo, hi]."""

    def parse(raw: Any) -> int:
        expected = (f"a power of two from {units.format_size(lo)} to "
                    f"{units.format_size(hi)} like 8MiB")
        try:
            nbytes = units.parse_size(raw)
        except ValueError:
            raise ValueError(expected) from None
        if not lo <= nbytes <= hi or nbytes & (nbytes - 1):
            raise ValueError(expected)
        return nbytes

    return parse


# ---------------------------------------------------------- composite kinds


def section(cls: type) -> Converter:
    """A mapping validated into the frozen dataclass cls (null = all defaults)."""

    def convert(node: Node, path: str, ctx: _Context) -> Any:
        return build(cls, node, path, ctx)

    return convert


def list_of(cls: type, noun: str) -> Converter:
    """A list of mappings, each validated into cls; returned as a tuple."""

    def convert(node: Node, path: str, ctx: _Context) -> tuple[Any, ...]:
        if not isinstance(node.value, list):
            raise _fail(f"expected a list of {noun}, got {describe(node)}", node, path)
        return tuple(build(cls, item, f"{path}[{i}]", ctx) for i, item in enumerate(node.value))

    return convert


def _specs(cls: type) -> dict[str, Spec]:
    return {f.name: f.metadata["spec"] for f in dataclasses.fields(cls) if "spec" in f.metadata}


def build(cls: type, node: Node, path: str, ctx: _Context) -> Any:
    """Validate one mapping node into cls, then run cls._check if it has one.

    Args:
        cls: a section dataclass declared with setting().
        node: the mapping (or null: every key takes its default).
        path: the YAML path of node ("" for the document root).
        ctx: load context (base directory for relative paths).

    Returns:
        The frozen instance.

    Raises:
        ConfigError: the first problem found, with its path and line.
    """
    specs = _specs(cls)
    noun = getattr(cls, "NOUN", "settings")
    if node.value is None:
        given: dict[str, Node] = {}
    elif isinstance(node.value, dict):
        given = node.value
    else:
        raise _fail(f"expected a mapping of {noun}, got {describe(node)}", node, path)

    for key in given:
        if key not in specs:
            close = difflib.get_close_matches(key, list(specs), n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise ConfigError(f"unknown key; {hint}expected one of {', '.join(specs)}",
                              path=_join(path, key), line=node.key_lines.get(key, node.line))

    values: dict[str, Any] = {}
    for key, spec in specs.items():
        sub = _join(path, key)
        if key in given:
            child = given[key]
        elif spec.default is REQUIRED:
            raise ConfigError(f"missing; every {noun.rstrip('s')} needs a {key}",
                              path=sub, line=node.line)
        else:
            child = Node.from_python(spec.default)
        values[key] = spec.convert(child, sub, ctx)
    obj = cls(**values)
    check = getattr(obj, "_check", None)
    return check(node, path) if check is not None else obj


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


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
    kind: str = setting(scalar(one_of("file", later=("block", "spdk"),
                                      hint="; use kind: file")), "file")
    path: Path = setting(path_value)
    size: int = setting(scalar(size_range(1024**2, 2**62)))


@dataclass(frozen=True)
class PoolConfig:
    """An entry of `storage.pools`. `size` is bytes once the config is loaded;
    `size_percent` keeps the percentage it was written as, if any."""

    NOUN = "pools"

    name: str = setting(scalar(identifier))
    device: str = setting(scalar(identifier))
    size: int | Decimal = setting(scalar(pool_size), "100%")
    role: str = setting(scalar(one_of("memcached", later=("objects",),
                                      hint="; object pools arrive with the object "
                                           "service")), "memcached")
    segment_size: int = setting(scalar(power_of_two_size(1024**2, 256 * 1024**2)), "8MiB")
    size_percent: Decimal | None = derived()

    @property
    def segments(self) -> int:
        """Whole segments that fit in the pool."""
        return int(self.size) // self.segment_size


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
                              "a pools list too", path=_join(path, "pools"), line=node.line)
        if not self.devices:
            raise _fail("expected at least one device", node.child("devices"),
                        _join(path, "devices"))
        self._check_unique(node, path, "devices", [d.name for d in self.devices], "name")
        self._check_unique(node, path, "devices", [str(d.path) for d in self.devices], "path")
        self._check_unique(node, path, "pools", [p.name for p in self.pools], "name")
        devices = {d.name: d for d in self.devices}
        used: dict[str, int] = {}
        pools: list[PoolConfig] = []
        for i, pool in enumerate(self.pools):
            at = f"{_join(path, 'pools')}[{i}]"
            dev = devices.get(pool.device)
            if dev is None:
                raise ConfigError(f"expected the name of a device in storage.devices "
                                  f"({', '.join(devices)}), got {pool.device!r}",
                                  path=f"{at}.device", line=node.line_of("pools", i, "device"))
            size_line = node.line_of("pools", i, "size")
            percent = pool.size if isinstance(pool.size, Decimal) else None
            nbytes = int(dev.size * percent / 100) if percent is not None else int(pool.size)
            if nbytes < MIN_SEGMENTS_PER_POOL * pool.segment_size:
                need = MIN_SEGMENTS_PER_POOL * pool.segment_size
                raise ConfigError(
                    f"expected at least {MIN_SEGMENTS_PER_POOL} segments "
                    f"({units.format_size(need)} with segment_size "
                    f"{units.format_size(pool.segment_size)}), got "
                    f"{units.format_size(nbytes)}", path=f"{at}.size", line=size_line)
            used[dev.name] = used.get(dev.name, 0) + nbytes
            if used[dev.name] > dev.size:
                raise ConfigError(
                    f"pools on device {dev.name!r} need {units.format_size(used[dev.name])} "
                    f"but the device has {units.format_size(dev.size)}; shrink the pool or "
                    f"grow the device", path=f"{at}.size", line=size_line)
            pools.append(dataclasses.replace(pool, size=nbytes, size_percent=percent))
        memcached = [i for i, p in enumerate(pools) if p.role == "memcached"]
        if not memcached:
            raise _fail("expected exactly one pool with role memcached, got none",
                        node.child("pools"), _join(path, "pools"))
        if len(memcached) > 1:
            i = memcached[1]
            raise ConfigError("only one memcached pool is supported for now; remove this one",
                              path=f"{_join(path, 'pools')}[{i}].role",
                              line=node.line_of("pools", i, "role"))
        return dataclasses.replace(self, pools=tuple(pools))

    @staticmethod
    def _check_unique(node: Node, path: str, key: str, values: list[str], what: str) -> None:
        seen: dict[str, int] = {}
        for i, value in enumerate(values):
            if value in seen:
                raise ConfigError(f"duplicate {what} {value!r} (also "
                                  f"{_join(path, key)}[{seen[value]}])",
                                  path=f"{_join(path, key)}[{i}].{what}",
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

    NOUN = "sections (memcached, storage, logging)"

    memcached: MemcachedConfig = setting(section(MemcachedConfig), {})
    storage: StorageConfig = setting(section(StorageConfig), {})
    logging: LoggingConfig = setting(section(LoggingConfig), {})
    source: str | None = derived()

    def _check(self, node: Node, path: str) -> Config:
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
        return self


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
        config = build(Config, root, "", _Context(base_dir or Path.cwd()))
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
    return (f"memcached tcp={host}:{mc.tcp_port} udp={udp} workers={work}; "
            f"pool {pool.name}: {units.format_size(int(pool.size))}{pct} of {dev.kind} "
            f"{dev.path}, {pool.segments} segments of {units.format_size(pool.segment_size)}; "
            f"hot tier {units.format_size(config.storage.hot_tier)}; "
            f"index {config.storage.index_dir}")
