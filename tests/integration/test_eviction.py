"""Writing three times the store's capacity: no errors, bounded memory, the
most recent items present, evictions counted."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from .conftest import ApplianceFactory
from .helpers.mcproto import RawConn
from .helpers.procs import write_config

MIB = 1024 * 1024
DEVICE_MIB = 32
HOT_MIB = 4
VALUE_SIZE = 8 * 1024
N_ITEMS = 3 * DEVICE_MIB * MIB // VALUE_SIZE  # three times the capacity
RECENT = 512  # the last 4 MiB written
TIME_LIMIT_S = 120.0


def _value(i: int) -> bytes:
    head = b"ev-%08d-" % i
    return (head * (VALUE_SIZE // len(head) + 1))[:VALUE_SIZE]


@pytest.mark.slow
def test_three_times_capacity(tmp_path: Path, appliance_factory: ApplianceFactory) -> None:
    config = write_config(tmp_path, device_size=f"{DEVICE_MIB}MiB", segment_size="2MiB",
                          hot_tier=f"{HOT_MIB}MiB")
    srv = appliance_factory(config)
    rss_start = srv.rss_kib()
    rss_peak = rss_start
    start = time.monotonic()
    with RawConn(srv.addr, timeout=30) as c:
        for lo in range(0, N_ITEMS, 32):
            assert time.monotonic() - start < TIME_LIMIT_S, f"only {lo} items written in time"
            ids = range(lo, min(lo + 32, N_ITEMS))
            c.send(b"".join(b"set e%d %d 0 %d\r\n%s\r\n" % (i, i, VALUE_SIZE, _value(i))
                            for i in ids))
            for i in ids:
                line = c.read_line()
                assert line == b"STORED\r\n", f"set #{i} answered {line!r}"
            if lo % 1024 == 0:
                rss_peak = max(rss_peak, srv.rss_kib())
        rss_peak = max(rss_peak, srv.rss_kib())
        missing = [i for i in range(N_ITEMS - RECENT, N_ITEMS)
                   if c.get(b"e%d" % i) != _value(i)]
        assert not missing, f"{len(missing)} of the last {RECENT} items missing: {missing[:10]}"
        stats = _stats(c)
    written_mib = N_ITEMS * VALUE_SIZE // MIB
    growth_mib = (rss_peak - rss_start) / 1024
    # Keeping what was written in memory would take ~written_mib; the hot tier
    # plus buffers and index pages must stay well under it.
    assert growth_mib < HOT_MIB + 40, (
        f"RSS grew {growth_mib:.0f} MiB (from {rss_start // 1024} MiB) after writing "
        f"{written_mib} MiB into a {DEVICE_MIB} MiB store")
    assert int(stats.get(b"evictions", b"0")) > 0, f"no evictions counted: {stats}"
    assert int(stats.get(b"curr_items", b"0")) < N_ITEMS


def _stats(c: RawConn) -> dict[bytes, bytes]:
    c.send(b"stats\r\n")
    out: dict[bytes, bytes] = {}
    while True:
        line = c.read_line()
        if line == b"END\r\n":
            return out
        parts = line.split()
        assert parts[0] == b"STAT", line
        out[parts[1]] = parts[2]
