"""Sizes, percentages and durations as operators write them in the YAML file.

Binary units (KiB, MiB, GiB, TiB) are powers of 1024; decimal units (kB, KB,
MB, GB, TB) are powers of 1000, as on a disk's label. A plain integer is a
number of bytes. Durations take ms, s, m and h; a plain number is refused
because "5" could mean seconds or milliseconds and guessing wrong is silent.

These functions raise ValueError with a short description of what was
expected; the config loader adds the file, line and YAML path.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

SIZE_UNITS: dict[str, int] = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "t": 1000**4,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}

DURATION_UNITS_MS: dict[str, int] = {
    "ms": 1,
    "s": 1000,
    "m": 60 * 1000,
    "h": 3600 * 1000,
}

_NUMBER_UNIT = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*$")
_PERCENT = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*%\s*$")

SIZE_EXPECTED = "a size like 4GiB, 512KiB or 10MB (plain integers are bytes)"
DURATION_EXPECTED = "a duration like 200ms, 5s or 2m"
PERCENT_EXPECTED = "a percentage like 60%"


def parse_size(value: object) -> int:
    """Parse a byte count.

    Args:
        value: an int (bytes) or a string such as "4GiB", "10MB", "1.5GiB".

    Returns:
        The number of bytes.

    Raises:
        ValueError: the value is not a size, is negative, or is not a whole
            number of bytes.
    """
    if isinstance(value, bool):
        raise ValueError(SIZE_EXPECTED)
    if isinstance(value, int):
        if value < 0:
            raise ValueError(SIZE_EXPECTED + ", not negative")
        return value
    if not isinstance(value, str):
        raise ValueError(SIZE_EXPECTED)
    match = _NUMBER_UNIT.match(value)
    if match is None:
        raise ValueError(SIZE_EXPECTED)
    number, unit = match.groups()
    multiplier = SIZE_UNITS.get(unit.lower())
    # Case is ignored: nobody means megabits in a storage config, and
    # refusing "1gib" would only annoy.
    if multiplier is None:
        raise ValueError(SIZE_EXPECTED)
    try:
        exact = Decimal(number) * multiplier
    except InvalidOperation as exc:  # pragma: no cover - the regex guards it
        raise ValueError(SIZE_EXPECTED) from exc
    if exact != exact.to_integral_value():
        raise ValueError(SIZE_EXPECTED + ", a whole number of bytes")
    return int(exact)


def parse_percent(value: object) -> Decimal:
    """Parse a percentage such as "60%" or "12.5%".

    Args:
        value: the YAML value.

    Returns:
        The percentage as a Decimal (60% -> Decimal("60")).

    Raises:
        ValueError: not a string ending in %, or outside (0, 100].
    """
    if not isinstance(value, str):
        raise ValueError(PERCENT_EXPECTED)
    match = _PERCENT.match(value)
    if match is None:
        raise ValueError(PERCENT_EXPECTED)
    pct = Decimal(match.group(1))
    if pct <= 0 or pct > 100:
        raise ValueError("a percentage above 0% and at most 100%")
    return pct


def is_percent(value: object) -> bool:
    """Say whether a YAML value is written as a percentage."""
    return isinstance(value, str) and value.strip().endswith("%")


def parse_duration_ms(value: object) -> int:
    """Parse a duration into whole milliseconds.

    Args:
        value: a string such as "200ms", "5s", "0s", "2m", "1.5s".

    Returns:
        Milliseconds.

    Raises:
        ValueError: not a duration, no unit, or not a whole number of ms.
    """
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(DURATION_EXPECTED)
    if isinstance(value, int):
        if value == 0:
            return 0
        raise ValueError(DURATION_EXPECTED + " (a unit is required)")
    match = _NUMBER_UNIT.match(value)
    if match is None:
        raise ValueError(DURATION_EXPECTED)
    number, unit = match.groups()
    multiplier = DURATION_UNITS_MS.get(unit)
    if multiplier is None:
        if unit == "":
            raise ValueError(DURATION_EXPECTED + " (a unit is required)")
        raise ValueError(DURATION_EXPECTED)
    exact = Decimal(number) * multiplier
    if exact != exact.to_integral_value():
        raise ValueError(DURATION_EXPECTED + ", a whole number of milliseconds")
    return int(exact)


def format_size(nbytes: int) -> str:
    """Render bytes the way an operator would write them (4GiB, 512KiB, 10MB).

    Exact binary multiples use binary units, exact decimal multiples use
    decimal units, anything else is a plain byte count, so the text always
    parses back to the same number.
    """
    if nbytes == 0:
        return "0"
    for unit, mult in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if nbytes % mult == 0:
            return f"{nbytes // mult}{unit}"
    for unit, mult in (("TB", 1000**4), ("GB", 1000**3), ("MB", 1000**2), ("kB", 1000)):
        if nbytes % mult == 0:
            return f"{nbytes // mult}{unit}"
    return str(nbytes)


def format_duration_ms(ms: int) -> str:
    """Render milliseconds as the shortest exact duration (0s, 200ms, 5s, 2m)."""
    if ms == 0:
        return "0s"
    for unit in ("h", "m", "s"):
        mult = DURATION_UNITS_MS[unit]
        if ms % mult == 0:
            return f"{ms // mult}{unit}"
    return f"{ms}ms"
