"""The request model seen from a client: executors follow the routing table, and
deferred replies keep their place.

A data plane runs in this process (fastpath.Dataplane, one worker thread) in
front of a real memcached. Installing a routing table must switch connections
that are already open to proxy mode's executor, and removing it must switch them
back to local execution; replies owed by the back end and replies answered at
once must leave in request order on a pipelined connection, whatever finishes
first.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.config import parse_config
from appliance.proxy import routing
from dataplane import fastpath

from .helpers.procs import Server, start_memcached


def _recv_until(sock: socket.socket, end: bytes, deadline_s: float = 5.0) -> bytes:
    buf = b""
    stop = time.monotonic() + deadline_s
    while not buf.endswith(end):
        assert time.monotonic() < stop, f"no {end!r} after {buf!r}"
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {buf!r}")
        buf += chunk
    return buf


def _ask(sock: socket.socket, request: bytes, end: bytes = b"\r\n") -> bytes:
    sock.sendall(request)
    return _recv_until(sock, end)


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[Server]:
    srv = start_memcached(tmp_path)
    yield srv
    srv.kill9()


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[fastpath.Dataplane]:
    store = fastpath.StoreSettings(
        index_dir=str(tmp_path / "index"), device_path=str(tmp_path / "items.dat"),
        device_bytes=16 << 20, segment_bytes=2 << 20, hot_bytes=4 << 20,
        item_size_max=1 << 20, index_map_bytes=64 << 20, flush_interval_ms=50)
    (tmp_path / "index").mkdir()
    settings = fastpath.DataplaneSettings(
        listen_host="127.0.0.1", tcp_port=0, udp_port=-1, workers=1, max_connections=64,
        idle_timeout_s=0, tcp_backlog=64, udp_reply_bytes_per_sec=0, udp_reply_burst_bytes=0,
        version="1.6.18", store=store)
    dp = fastpath.Dataplane.create(settings)
    worker = threading.Thread(target=dp.run_worker, args=(0,), daemon=True)
    worker.start()
    yield dp
    dp.stop()
    worker.join(10)
    assert not worker.is_alive(), "the worker did not stop"
    dp.destroy()


def _table(tmp_path: Path, backend: Server) -> fastpath.RoutingSettings:
    text = (f"backends:\n  - {{name: mc1, host: 127.0.0.1, port: {backend.port}}}\n"
            "routing:\n  admission: always\n")
    table = routing.routing_settings(parse_config(text, "test.yaml", base_dir=tmp_path))
    assert table is not None
    return table


def _backend_get(backend: Server, key: bytes) -> bytes:
    with socket.create_connection((backend.host, backend.port), timeout=5) as s:
        return _ask(s, b"get " + key + b"\r\n", b"END\r\n")


def _wait_for(predicate, what: str, deadline_s: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    stop = time.monotonic() + deadline_s
    while not predicate():
        assert time.monotonic() < stop, what
        time.sleep(0.02)


def test_open_connection_follows_the_adopted_table(tmp_path: Path, backend: Server,
                                                   plane: fastpath.Dataplane) -> None:
    port = plane.bound_port(False)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
        # Standalone: the local store answers, the back end sees nothing.
        assert _ask(c, b"set before 0 0 1\r\nb\r\n") == b"STORED\r\n"
        assert _backend_get(backend, b"before") == b"END\r\n"

        plane.set_routing(_table(tmp_path, backend))

        # The worker adopts the table on its next loop turn; from then on this
        # same connection's writes go to the owner.
        def forwarded() -> bool:
            _ask(c, b"set after 0 0 1\r\na\r\n")
            return _backend_get(backend, b"after") != b"END\r\n"
        _wait_for(forwarded, "a set on an open connection never reached the back end")
        assert _backend_get(backend, b"after") == b"VALUE after 0 1\r\na\r\nEND\r\n"

        plane.set_routing(None)

        # Standalone again: local execution, the back end is left alone (a
        # fresh key per try, since one forwarded before adoption stays there).
        tries = iter(range(1000))

        def local() -> bool:
            key = b"again%d" % next(tries)
            _ask(c, b"set " + key + b" 0 0 1\r\nx\r\n")
            return _backend_get(backend, key) == b"END\r\n"
        _wait_for(local, "a set after the table was removed still reached the back end")
        assert _ask(c, b"get before\r\n", b"END\r\n") == b"VALUE before 0 1\r\nb\r\nEND\r\n"


def test_deferred_and_immediate_replies_leave_in_request_order(
        tmp_path: Path, backend: Server, plane: fastpath.Dataplane) -> None:
    names = [f"k{i:02d}".encode() for i in range(40)]
    # Only the back end has these keys, so each get through the appliance is a
    # miss forwarded to it: a reply owed by a slot.
    with socket.create_connection((backend.host, backend.port), timeout=5) as b:
        for k in names:
            assert _ask(b, b"set " + k + b" 0 0 3\r\n" + k + b"\r\n") == b"STORED\r\n"
    plane.set_routing(_table(tmp_path, backend))
    port = plane.bound_port(False)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
        # A set that passes through keeps its value locally: `hot` is a local hit.
        _wait_for(lambda: _ask(c, b"set hot 0 0 3\r\nHOT\r\n") == b"STORED\r\n"
                  and _backend_get(backend, b"hot") != b"END\r\n",
                  "the appliance never forwarded to the back end")
        # Pipelined in one send: forwarded gets between commands answered at
        # once (version, mn, an unknown command, a local hit).
        request = b""
        expected = b""
        for i, k in enumerate(names):
            request += b"get " + k + b"\r\nversion\r\nmn\r\nbogus\r\n"
            expected += (b"VALUE " + k + b" 0 3\r\n" + k + b"\r\nEND\r\n"
                         b"VERSION 1.6.18\r\nMN\r\nERROR\r\n")
            if i % 8 == 0:
                request += b"mg hot v\r\n"
                expected += b"VA 3\r\nHOT\r\n"
        request += b"mn\r\n"
        expected += b"MN\r\n"
        assert _ask(c, request, expected[-40:]) == expected
