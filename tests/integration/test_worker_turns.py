"""A busy worker hands its CPU on after a bounded turn; an idle one never does.

Under load a worker never sleeps, so the kernel would take its CPU only at a
scheduler tick (4 ms at HZ=250), and a second worker on that CPU would wait a
whole tick with its connections' requests. The worker yields instead once it
has run 200 us without sleeping (`worker_yields` counts it;
SS_WORKER_TURN_QUOTA_NS in ss_server_internal.h).

A turn that sends large bodies also takes fewer events, so that it sends about
4 MiB (`worker_short_turns`; SS_WORKER_TURN_BYTES); small replies never
shorten a turn.
"""

from __future__ import annotations

import os
import socket
import threading
import time

import hashlib
import http.client
from pathlib import Path

from .conftest import ApplianceFactory
from .helpers.mcproto import RawConn
from .helpers.objects import objects_config, request, start_objects

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


BODY = 3 * (1 << 20) + 123  # three whole 1 MiB chunks and a short one
GETTERS = 8                 # connections with a large body wanted at once
GETS_EACH = 4


def _get_bodies(port: int, path: str, digest: str, got: list[int]) -> None:
    """GETS_EACH GETs of path on one kept-alive connection, each body checked."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        for _ in range(GETS_EACH):
            conn.request("GET", path)
            r = conn.getresponse()
            if r.status == 200 and hashlib.md5(r.read()).hexdigest() == digest:
                got[0] += 1
    finally:
        conn.close()


def test_turns_that_send_large_bodies_take_fewer_events(tmp_path: Path) -> None:
    srv, port = start_objects(objects_config(tmp_path, chunk_size="1MiB", hot_tier="64MiB"))
    try:
        body = os.urandom(BODY)
        assert request(port, "PUT", "/default/large", body)[0] == 200
        assert request(port, "GET", "/default/large")[2] == body  # now in DRAM
        with RawConn(srv.addr) as c:
            assert c.set(b"small", b"v" * 4096) == b"STORED\r\n"
            before = c.counters()["worker_short_turns"]
            for _ in range(200):  # one 4 KiB reply per turn: never a short turn
                assert c.get(b"small") == b"v" * 4096
            assert c.counters()["worker_short_turns"] == before, "4 KiB replies shortened a turn"
            digest = hashlib.md5(body).hexdigest()
            got = [[0] for _ in range(GETTERS)]
            threads = [threading.Thread(target=_get_bodies, args=(port, "/default/large", digest, g),
                                        daemon=True) for g in got]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=60)
            assert not any(t.is_alive() for t in threads), "a GET thread never finished"
            # Shorter turns still serve every connection, and every body whole.
            assert [g[0] for g in got] == [GETS_EACH] * GETTERS
            short = c.counters()["worker_short_turns"] - before
        assert short >= 1, f"{GETTERS * GETS_EACH} bodies of {BODY} bytes, no turn shortened"
    finally:
        srv.terminate()
