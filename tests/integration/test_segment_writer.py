"""The segment writer: full segments are written, and the next one reclaimed,
by the store's own thread, never by the worker whose set filled the segment.

The appliance runs with 1 MiB segments on an O_DIRECT device and no DRAM
tier, so every item read back comes from the open segment's buffer, from a
sealed segment's buffer still being written, or from the device. Loading
many segments' worth while reading back what was just written must serve
every value whole; the writer thread (named ss-segwriter) must be the one
that wrote the segments; and a restart must find everything the ring still
holds.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from .conftest import ApplianceFactory
from .helpers.mcproto import RawConn
from .helpers.procs import verify_index
from .test_direct_io import _config as direct_config
from .test_direct_io import device_dir  # noqa: F401  (a fixture: a directory taking O_DIRECT)

MIB = 1024 * 1024
VALUE_BYTES = 16 * 1024
NKEYS = 1500          # ~24 MiB: two dozen 1 MiB segments in a 64 MiB pool


def _value(i: int) -> bytes:
    head = b"<seg %d>" % i
    return (head * (VALUE_BYTES // len(head) + 1))[:VALUE_BYTES]


def _thread_wchar(pid: int, name: str) -> int:
    """Bytes the threads of pid called `name` passed to write calls."""
    total, found = 0, False
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                if f.read().strip() != name:
                    continue
            with open(f"/proc/{pid}/task/{tid}/io") as f:
                fields = dict(line.split(": ") for line in f.read().splitlines())
        except OSError:
            continue
        found = True
        total += int(fields["wchar"])
    assert found, f"no thread named {name} in pid {pid}"
    return total


def test_rolls_hand_segments_to_the_writer(tmp_path: Path, device_dir: Path,
                                          appliance_factory: ApplianceFactory) -> None:
    config = direct_config(tmp_path, device_dir / "store.dat", hot_tier="0",
                           segment_size="1MiB", memcached__item_size_max="512KiB")
    srv = appliance_factory(config)
    wrote_before = _thread_wchar(srv.pid, "ss-segwriter")
    with RawConn(srv.addr, timeout=30) as c:
        before = c.counters()
        for start in range(0, NKEYS, 50):
            batch = range(start, start + 50)
            c.send(b"".join(b"set k%d 0 0 %d noreply\r\n%s\r\n" % (i, VALUE_BYTES, _value(i))
                            for i in batch))
            # Read back at once what was just written (the open or the sealed
            # segment's buffer) and some from a few segments back (the device).
            probe = [*batch[::10], *range(max(0, start - 300), start, 37)]
            c.send(b"".join(b"get k%d\r\n" % i for i in probe))
            for i in probe:
                assert c.read_line() == b"VALUE k%d 0 %d\r\n" % (i, VALUE_BYTES)
                assert c.read_exact(VALUE_BYTES + 2)[:-2] == _value(i), f"k{i} came back wrong"
                assert c.read_line() == b"END\r\n"
        after = c.counters()
    rolled = after["segments_flushed"] - before["segments_flushed"]
    assert rolled >= 20, f"only {rolled} segments rolled"
    written = _thread_wchar(srv.pid, "ss-segwriter") - wrote_before
    # The writer wrote the sealed segments (housekeeping's periodic flush may
    # have written some of their first bytes already).
    assert written >= rolled * MIB // 2, f"the segment writer wrote only {written} bytes"
    assert "log_roll_waits" in after

    assert srv.terminate() == 0
    assert verify_index(config).returncode == 0
    srv2 = appliance_factory(config)
    with RawConn(srv2.addr, timeout=30) as c:
        for i in range(0, NKEYS, 7):
            assert c.get(b"k%d" % i) == _value(i), f"k{i} lost or wrong after a restart"
