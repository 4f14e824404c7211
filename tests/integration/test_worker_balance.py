"""Connections are spread evenly over the workers.

The kernel spreads a listener group's connections by flow hash, so on two
workers 100 connections land anywhere from about 40/60 to 60/40; the
appliance hands a new connection to the least loaded worker instead, so the
counts never differ by more than a couple (ss_balance.c).
"""

from __future__ import annotations

import socket
import time

from .conftest import ApplianceFactory

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


def test_connections_are_spread_evenly(appliance_factory: ApplianceFactory) -> None:
    srv = appliance_factory()  # two workers
    clients = [socket.create_connection(srv.addr, timeout=5) for _ in range(CONNECTIONS)]
    try:
        # every connection is adopted by a worker before stats is asked
        for c in clients:
            c.sendall(b"mn\r\n")
            assert c.recv(16) == b"MN\r\n"
        counts = _worker_connections(srv.addr)
        assert len(counts) == 2, counts
        assert sum(counts) == CONNECTIONS + 1, counts  # the stats connection too
        assert max(counts) - min(counts) <= 2, f"connections per worker: {counts}"
    finally:
        for c in clients:
            c.close()
