"""A clean restart keeps every item: 100,000 items, SIGTERM, start again."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from pymemcache.client.base import Client

from .conftest import ApplianceFactory
from .helpers.mcproto import RawConn
from .helpers.procs import write_config

N_ITEMS = 100_000
BATCH = 500
TIME_LIMIT_S = 180.0


def _value(i: int) -> bytes:
    # Varied sizes (16 B .. ~1 KiB), self-describing, so a mix-up shows.
    size = 16 + (i * 7919) % 1000
    head = b"item-%d:" % i
    return (head * (size // len(head) + 1))[:size]


def _flags(i: int) -> int:
    return (i * 2654435761) % 2**32


def _write_all(c: Client) -> None:
    start = time.monotonic()
    for lo in range(0, N_ITEMS, BATCH):
        assert time.monotonic() - start < TIME_LIMIT_S, f"only {lo} items written in time"
        # Raw pipelined sets: set_many would give a whole batch one flag value.
        keys = range(lo, min(lo + BATCH, N_ITEMS))
        cmds = b"".join(b"set r%d %d 0 %d noreply\r\n%s\r\n" % (i, _flags(i), len(_value(i)),
                                                               _value(i)) for i in keys)
        c.raw_command(cmds + b"mn", b"MN\r\n")


@pytest.mark.slow
def test_clean_restart_keeps_every_item(tmp_path: Path,
                                        appliance_factory: ApplianceFactory) -> None:
    config = write_config(tmp_path, device_size="512MiB", hot_tier="16MiB")
    srv = appliance_factory(config)
    c = Client(srv.addr, connect_timeout=5, timeout=30, default_noreply=False)
    _write_all(c)
    assert c.get(b"r%d" % (N_ITEMS - 1)) == _value(N_ITEMS - 1)
    c.close()
    assert srv.terminate() == 0, f"SIGTERM exit status {srv.stopped_rc}\n{srv.log()}"

    srv2 = appliance_factory(config)
    c = RawConn(srv2.addr, timeout=30)
    missing: list[int] = []
    wrong: list[int] = []
    start = time.monotonic()
    for lo in range(0, N_ITEMS, BATCH):
        assert time.monotonic() - start < TIME_LIMIT_S, f"only {lo} items checked in time"
        keys = [b"r%d" % i for i in range(lo, min(lo + BATCH, N_ITEMS))]
        c.send(b"get " + b" ".join(keys) + b"\r\n")
        segs = c.read_segments_until((b"END\r\n",))
        got = {h.split()[1]: (int(h.split()[2]), d[:-2]) for h, d in segs[:-1]}
        for i in range(lo, min(lo + BATCH, N_ITEMS)):
            item = got.get(b"r%d" % i)
            if item is None:
                missing.append(i)
            elif item != (_flags(i), _value(i)):
                wrong.append(i)
    c.close()
    assert not missing and not wrong, (
        f"after a clean restart: {len(missing)} items missing (first {missing[:10]}), "
        f"{len(wrong)} with a wrong value or flags (first {wrong[:10]})")


def test_sigusr1_writes_every_threads_stack_and_the_appliance_serves_on(
        tmp_path: Path, appliance_factory: ApplianceFactory) -> None:
    """What an operator (or a test whose SIGTERM timed out) sends a process that seems stuck."""
    srv = appliance_factory()
    before = srv.log_path.read_bytes()
    os.kill(srv.pid, signal.SIGUSR1)
    deadline = time.monotonic() + 10
    dump = b""
    while time.monotonic() < deadline and b"ss-worker-0" not in dump:
        time.sleep(0.05)
        dump = srv.log_path.read_bytes()[len(before):]
    text = dump.decode("utf-8", "replace")
    # faulthandler names each Python thread by ident; the main thread waits in serve(),
    # each worker sits in run_worker (in C, the GIL released).
    assert "Thread 0x" in text and "in serve" in text and "in run_worker" in text, text
    with RawConn(srv.addr, timeout=5) as c:
        assert c.set(b"after-usr1", b"ok") == b"STORED\r\n"
        assert c.get(b"after-usr1") == b"ok"
    assert srv.terminate() == 0, srv.log()
