"""Connections are spread evenly over the workers.

The kernel spreads a listener group's connections by flow hash, so on two
workers 100 connections land anywhere from about 40/60 to 60/40; the
appliance hands a new connection (memcached or HTTP) to the least loaded worker
instead, so the counts never differ by more than a couple (ss_balance.c).
"""

from __future__ import annotations

import http.client
import socket
import time
from pathlib import Path

from .conftest import ApplianceFactory
from .helpers.objects import objects_config, start_objects

CONNECTIONS = 100


def _worker_connections(addr: tuple[str, int]) -> list[int]:
    with socket.create_connection(addr, timeout=5) as s:
        s.sendall(b"stats\r\n")
        data = b""
        deadline = time.monotonic() + 5
        while not data.endswith(b"END\r\n") and time.monotonic() < deadline:
            data += s.recv(65536)
    counts = {}
    for line in data.decode().split("\r\n"):
        parts = line.split()
        if len(parts) == 3 and parts[1].startswith("worker:"):
            counts[int(parts[1].split(":")[1])] = int(parts[2])
    return [counts[i] for i in sorted(counts)]


def assert_spread_evenly(addr: tuple[str, int]) -> None:
    """CONNECTIONS clients (and the stats connection) within 2 of even on two workers."""
    counts = _worker_connections(addr)
    assert len(counts) == 2, counts
    assert sum(counts) == CONNECTIONS + 1, counts  # the stats connection too
    assert max(counts) - min(counts) <= 2, f"connections per worker: {counts}"


def test_connections_are_spread_evenly(appliance_factory: ApplianceFactory) -> None:
    srv = appliance_factory()  # two workers
    clients = [socket.create_connection(srv.addr, timeout=5) for _ in range(CONNECTIONS)]
    try:
        # every connection is adopted by a worker before stats is asked
        for c in clients:
            c.sendall(b"mn\r\n")
            assert c.recv(16) == b"MN\r\n"
        assert_spread_evenly(srv.addr)
    finally:
        for c in clients:
            c.close()


def test_http_connections_are_spread_evenly_too(tmp_path: Path) -> None:
    """The objects listener's connections are balanced like memcached's: with 50 wrk
    connections a 28/22 split made the busier worker set the 1 MiB hits' p99."""
    srv, port = start_objects(objects_config(tmp_path))
    clients = [http.client.HTTPConnection("127.0.0.1", port, timeout=5)
               for _ in range(CONNECTIONS)]
    try:
        for c in clients:  # each kept alive, and served, before stats is asked
            c.request("GET", "/default/nothing")
            r = c.getresponse()
            r.read()
            assert r.status == 404 and not r.will_close
        assert_spread_evenly(srv.addr)
    finally:
        for c in clients:
            c.close()
        srv.terminate()
