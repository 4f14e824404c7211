"""The config schema machinery: one table per section, validated into dataclasses.

A section is a frozen dataclass whose fields are its table: every YAML key is
a field declared with ``setting(converter, default)``, where the default is
written exactly as in the YAML file and goes through the same converter as
operator input. ``build`` validates one mapping node against such a class,
refuses unknown keys, and runs the class's ``_check`` hook for cross-field
rules. Converters raise ConfigError naming the YAML path and line.

The sections themselves live in appliance.config (the appliance) and
appliance.config.proxy (back ends and routing).
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

from appliance.config import units
from appliance.config.yaml_source import ConfigError, Node, describe

REQUIRED = object()
UINT32_MAX = 2**32 - 1

@dataclass(frozen=True)
class Context:
    base_dir: Path


Converter = Callable[[Node, str, Context], Any]


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


def fail(message: str, node: Node | None, path: str) -> ConfigError:
    return ConfigError(message, path=path, line=node.line if node is not None else None)


def scalar(parse: Callable[[Any], Any]) -> Converter:
    """Lift ``parse(raw) -> value`` (raising ValueError(expected)) to a Converter."""

    def convert(node: Node, path: str, ctx: Context) -> Any:
        try:
            return parse(node.value)
        except ValueError as exc:
            raise fail(f"expected {exc}, got {describe(node)}", node, path) from None

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


def boolean(raw: Any) -> bool:
    """true or false, written as a YAML boolean (not "yes" in quotes, not 1)."""
    if not isinstance(raw, bool):
        raise ValueError("true or false")
    return raw


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


def path_value(node: Node, path: str, ctx: Context) -> Path:
    """A file system path; relative ones resolve against the working directory."""
    raw = node.value
    if not isinstance(raw, str) or not raw.strip():
        raise fail(f"expected a file system path, got {describe(node)}", node, path)
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

    def convert(node: Node, path: str, ctx: Context) -> Any:
        return build(cls, node, path, ctx)

    return convert


def optional_section(cls: type) -> Converter:
    """A mapping validated into cls, or null (none of it)."""

    def convert(node: Node, path: str, ctx: Context) -> Any:
        return None if node.value is None else build(cls, node, path, ctx)

    return convert


def list_of(cls: type, noun: str) -> Converter:
    """A list of mappings, each validated into cls; returned as a tuple."""

    def convert(node: Node, path: str, ctx: Context) -> tuple[Any, ...]:
        if not isinstance(node.value, list):
            raise fail(f"expected a list of {noun}, got {describe(node)}", node, path)
        return tuple(build(cls, item, f"{path}[{i}]", ctx) for i, item in enumerate(node.value))

    return convert


def specs_of(cls: type) -> dict[str, Spec]:
    return {f.name: f.metadata["spec"] for f in dataclasses.fields(cls) if "spec" in f.metadata}


def build(cls: type, node: Node, path: str, ctx: Context) -> Any:
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
    specs = specs_of(cls)
    noun = getattr(cls, "NOUN", "settings")
    if node.value is None:
        given: dict[str, Node] = {}
    elif isinstance(node.value, dict):
        given = node.value
    else:
        raise fail(f"expected a mapping of {noun}, got {describe(node)}", node, path)

    for key in given:
        if key not in specs:
            close = difflib.get_close_matches(key, list(specs), n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise ConfigError(f"unknown key; {hint}expected one of {', '.join(specs)}",
                              path=join(path, key), line=node.key_lines.get(key, node.line))

    values: dict[str, Any] = {}
    for key, spec in specs.items():
        sub = join(path, key)
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


def join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key

