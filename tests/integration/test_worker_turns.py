"""A busy worker hands its CPU on after a bounded turn; an idle one never does.

Under load a worker never sleeps, so the kernel would take its CPU only at a
scheduler tick (4 ms at HZ=250), and a second worker on that CPU would wait a
whole tick with its connections' requests. The worker yields instead once it
has run 200 us without sleeping (`worker_yields` counts it;
SS_WORKER_TURN_QUOTA_NS in ss_server_internal.h).
"""

from __future__ import annotations

import os
import socket
import threading
import time

from .conftest import ApplianceFactory
from .helpers.mcproto import RawConn

BATCH = 2000          # gets per pipelined write: milliseconds of work for a worker
LOAD_SECONDS = 2.0    # each load thread stops after this, whatever happens
CONNECTIONS = 4       # spread two and two over the two workers


def _pin_to_one_cpu(pid: int) -> None:
    """Every thread of pid onto one CPU (threads it starts later inherit it)."""
    cpu = min(os.sched_getaffinity(0))
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(tid), {cpu})
        except ProcessLookupError:
            continue  # a thread that ended meanwhile


def _drive(addr: tuple[str, int], until: float, done: list[int]) -> None:
    """Pipelined gets of one key, a batch at a time, until the deadline."""
    batch = b"get turnkey\r\n" * BATCH + b"mn\r\n"
    with socket.create_connection(addr, timeout=10) as s:
        while time.monotonic() < until:
            s.sendall(batch)
            tail = b""
            while not tail.endswith(b"MN\r\n"):
                chunk = s.recv(1 << 20)
                assert chunk, "the appliance closed a loaded connection"
                tail = (tail + chunk)[-8:]
            done[0] += 1


def test_busy_workers_sharing_a_cpu_take_turns(appliance_factory: ApplianceFactory) -> None:
    srv = appliance_factory()  # two workers
    _pin_to_one_cpu(srv.pid)
    with RawConn(srv.addr) as c:
        assert c.set(b"turnkey", b"v" * 100) == b"STORED\r\n"
        before = c.counters()["worker_yields"]
        until = time.monotonic() + LOAD_SECONDS
        batches = [[0] for _ in range(CONNECTIONS)]
        threads = [threading.Thread(target=_drive, args=(srv.addr, until, b), daemon=True)
                   for b in batches]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=LOAD_SECONDS + 20)
        assert not any(t.is_alive() for t in threads), "a load thread never finished"
        assert all(b[0] >= 1 for b in batches), f"batches per connection: {batches}"
        yields = c.counters()["worker_yields"] - before
    assert yields >= 1, f"{sum(b[0] for b in batches)} batches of {BATCH} gets, and no " \
                        "worker ever handed its CPU on"


def test_a_lightly_loaded_worker_does_not_yield(appliance_factory: ApplianceFactory) -> None:
    srv = appliance_factory()
    with RawConn(srv.addr) as c:
        assert c.set(b"calm", b"v" * 100) == b"STORED\r\n"
        before = c.counters()["worker_yields"]
        for _ in range(200):
            assert c.get(b"calm") == b"v" * 100
            time.sleep(0.002)  # the worker sleeps between requests
        yields = c.counters()["worker_yields"] - before
    # A turn that lost its CPU to another process mid-way may overrun once
    # in a while on a busy machine; a worker that yielded per request would
    # show about 200.
    assert yields <= 10, f"{yields} yields in 200 spaced requests"
