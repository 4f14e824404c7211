"""Sizes, percentages and durations as written in the YAML file."""

from decimal import Decimal

import pytest

from appliance.config import units


@pytest.mark.parametrize(("text", "expected"), [
    (0, 0),
    (4096, 4096),
    ("4096", 4096),
    ("512KiB", 512 * 1024),
    ("1MiB", 1024**2),
    ("4GiB", 4 * 1024**3),
    ("2TiB", 2 * 1024**4),
    ("10MB", 10_000_000),
    ("10kB", 10_000),
    ("10KB", 10_000),
    ("3GB", 3_000_000_000),
    ("1.5GiB", 3 * 512 * 1024**2),
    ("64 MiB", 64 * 1024**2),
    ("8mib", 8 * 1024**2),
    ("100B", 100),
])
def test_parse_size(text: object, expected: int) -> None:
    assert units.parse_size(text) == expected


@pytest.mark.parametrize("text", [
    "lots", "", "MiB", "-1", -1, "1.5", "0.1KiB", "4 GiBs", "60%", True, None, 1.5, [1], "1e3",
])
def test_parse_size_refuses(text: object) -> None:
    with pytest.raises(ValueError, match="a size like 4GiB"):
        units.parse_size(text)


@pytest.mark.parametrize(("text", "expected"), [
    ("60%", Decimal(60)), ("100%", Decimal(100)), ("12.5%", Decimal("12.5")), (" 1 %", Decimal(1)),
])
def test_parse_percent(text: str, expected: Decimal) -> None:
    assert units.parse_percent(text) == expected


@pytest.mark.parametrize("text", ["0%", "101%", "60", 60, "%", "-5%", "abc%"])
def test_parse_percent_refuses(text: object) -> None:
    with pytest.raises(ValueError, match="percentage"):
        units.parse_percent(text)


@pytest.mark.parametrize(("text", "ms"), [
    ("200ms", 200), ("5s", 5000), ("0s", 0), ("2m", 120_000), ("1h", 3_600_000),
    ("1.5s", 1500), (0, 0), ("0ms", 0),
])
def test_parse_duration(text: object, ms: int) -> None:
    assert units.parse_duration_ms(text) == ms


@pytest.mark.parametrize(("text", "why"), [
    ("5", "a unit is required"),
    (5, "a unit is required"),
    ("5 sec", "a duration like"),
    ("0.5ms", "whole number of milliseconds"),
    ("soon", "a duration like"),
    (True, "a duration like"),
    (None, "a duration like"),
])
def test_parse_duration_refuses(text: object, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        units.parse_duration_ms(text)


@pytest.mark.parametrize("nbytes", [0, 1, 1000, 1024, 1536, 10_000_000, 64 * 1024**2,
                                    3 * 1024**4, 123_456_789])
def test_format_size_round_trips(nbytes: int) -> None:
    assert units.parse_size(units.format_size(nbytes)) == nbytes


def test_format_size_prefers_binary_units() -> None:
    assert units.format_size(8 * 1024**2) == "8MiB"
    assert units.format_size(10_000_000) == "10MB"
    assert units.format_size(1028 * 1024) == "1028KiB"


@pytest.mark.parametrize(("ms", "text"), [(0, "0s"), (200, "200ms"), (5000, "5s"),
                                          (120_000, "2m"), (1500, "1500ms")])
def test_format_duration(ms: int, text: str) -> None:
    assert units.format_duration_ms(ms) == text
    assert units.parse_duration_ms(text) == ms
