"""The DRAM key filter (dataplane/src/store/ss_filter.c): a miss it rules out skips
the index, and it never rules out a key the store holds.

Every test runs the real appliance with no DRAM tier (`hot_tier: 0`), so
every get goes filter -> index -> device, and checks through `stats`:
filter_negatives (misses decided by the filter alone), filter_false_positives,
filter_capacity and filter_rebuilds. "No false negatives" is checked as
"every key the index holds is found": the gets that hit must equal
`curr_items` (the index's count), or a key written and not deleted is found.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

from .conftest import ApplianceFactory
from .helpers.mcproto import RawConn
from .helpers.procs import start_appliance, write_config

FILTER_MIN_ITEMS = 65536  # ss_filter.c: the smallest filter, rebuilt past it
BATCH = 64


def _stats(c: RawConn) -> dict[str, int]:
    return c.counters()


def _set_many(c: RawConn, keys: list[bytes], value: bytes = b"x" * 20) -> None:
    for lo in range(0, len(keys), BATCH):
        chunk = keys[lo:lo + BATCH]
        c.send(b"".join(b"set %s 0 0 %d\r\n%s\r\n" % (k, len(value), value) for k in chunk))
        for k in chunk:
            line = c.read_line()
            assert line == b"STORED\r\n", f"set {k!r}: {line!r}"


def _delete_many(c: RawConn, keys: list[bytes]) -> None:
    for lo in range(0, len(keys), BATCH):
        chunk = keys[lo:lo + BATCH]
        c.send(b"".join(b"delete %s\r\n" % k for k in chunk))
        for k in chunk:
            line = c.read_line()
            assert line == b"DELETED\r\n", f"delete {k!r}: {line!r}"


def _found(c: RawConn, keys: list[bytes]) -> set[bytes]:
    """The keys a multi-key get returns a value for."""
    hits: set[bytes] = set()
    for lo in range(0, len(keys), BATCH):
        c.send(b"get " + b" ".join(keys[lo:lo + BATCH]) + b"\r\n")
        while True:
            line = c.read_line()
            if line == b"END\r\n":
                break
            _, key, _, n = line.split()
            c.read_exact(int(n) + 2)
            hits.add(key)
    return hits


def _wait_committed(c: RawConn, items: int, timeout: float = 10.0) -> dict[str, int]:
    """Stats once the index holds `items` keys (writes are committed behind)."""
    deadline = time.monotonic() + timeout
    while True:
        st = _stats(c)
        if st["curr_items"] == items or time.monotonic() > deadline:
            return st
        time.sleep(0.1)


def test_writes_deletes_and_rebuilds(tmp_path: Path,
                                     appliance_factory: ApplianceFactory) -> None:
    """Past its capacity the filter is rebuilt while serving; reads in between
    never miss a key that is there, deleted keys are gone, and keys never
    written are mostly ruled out without the index."""
    srv = appliance_factory(hot_tier="0")
    n = FILTER_MIN_ITEMS + 40000
    keys = [b"fk:%07d" % i for i in range(n)]
    rng = random.Random(5)
    with RawConn(srv.addr, timeout=30) as c:
        st0 = _stats(c)
        assert st0["filter_capacity"] == FILTER_MIN_ITEMS and st0["filter_rebuilds"] == 0
        # Write in slices and read a sample of everything written so far after
        # each, so reads run before, during and after the rebuild.
        for lo in range(0, n, 8192):
            _set_many(c, keys[lo:lo + 8192])
            sample = rng.sample(keys[:lo + 8192], 2000)
            missing = set(sample) - _found(c, sample)
            assert not missing, f"{len(missing)} written keys not found, e.g. {min(missing)!r}"
        deadline = time.monotonic() + 20
        while _stats(c)["filter_rebuilds"] < 1:
            assert time.monotonic() < deadline, f"no rebuild past capacity: {_stats(c)}"
            time.sleep(0.1)
        st = _stats(c)
        assert st["filter_capacity"] > FILTER_MIN_ITEMS, st

        doomed = keys[::3]
        _delete_many(c, doomed)
        kept = [k for i, k in enumerate(keys) if i % 3]
        assert _found(c, kept) == set(kept)
        assert not _found(c, doomed)

        before = _stats(c)
        strangers = [b"never:%07d" % i for i in range(20000)]
        assert not _found(c, strangers)
        after = _stats(c)
    negatives = after["filter_negatives"] - before["filter_negatives"]
    false_pos = after["filter_false_positives"] - before["filter_false_positives"]
    assert negatives + false_pos == len(strangers), (before, after)
    # Sized at 16 bits per item, a filter at capacity errs well under 2%.
    assert false_pos < 0.02 * len(strangers), f"{false_pos} false positives of {len(strangers)}"


def test_evictions(tmp_path: Path, appliance_factory: ApplianceFactory) -> None:
    """After the log wraps, every key the index still holds is found."""
    srv = appliance_factory(hot_tier="0", device_size="16MiB", segment_size="2MiB")
    value = b"e" * 4000
    keys = [b"ev:%06d" % i for i in range(3 * 16 * 1024 * 1024 // 4000)]
    with RawConn(srv.addr, timeout=30) as c:
        _set_many(c, keys, value)
        time.sleep(1.0)  # group commit: the index's count settles
        st = _stats(c)
        assert st["evictions"] > 0, st
        hits = _found(c, keys)
        st = _wait_committed(c, len(hits))
    assert keys[-1] in hits
    assert len(hits) == st["curr_items"], (
        f"{st['curr_items']} keys in the index, {len(hits)} found")


def test_restart_and_crash(tmp_path: Path) -> None:
    """The filter is rebuilt from the index at start: after a clean stop every
    key is found; after kill -9 every key the repaired index keeps is found."""
    config = write_config(tmp_path, hot_tier="0")
    keys = [b"rs:%06d" % i for i in range(30000)]
    srv = start_appliance(config, tmp_path / "appliance.log")
    try:
        with RawConn(srv.addr, timeout=30) as c:
            _set_many(c, keys)
        assert srv.terminate() == 0
        srv = start_appliance(config, tmp_path / "appliance.log")
        with RawConn(srv.addr, timeout=30) as c:
            st = _stats(c)
            assert st["filter_inserts"] == len(keys), st  # built from the index
            assert _found(c, keys) == set(keys)
            assert not _found(c, [b"absent:%d" % i for i in range(1000)])
            more = [b"rs2:%06d" % i for i in range(5000)]
            _set_many(c, more)
            time.sleep(1.5)  # housekeeping syncs the index once a second
        srv.kill9()
        srv = start_appliance(config, tmp_path / "appliance.log")
        with RawConn(srv.addr, timeout=30) as c:
            hits = _found(c, keys + more)
            st = _wait_committed(c, len(hits))
            assert len(hits) == st["curr_items"], (
                f"{st['curr_items']} keys in the index after the crash, {len(hits)} found")
            assert set(keys) <= hits  # written before a clean stop
    finally:
        srv.terminate()
