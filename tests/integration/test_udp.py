"""memcached over UDP: the 8-byte frame header, replies split into datagrams
of at most 1400 bytes, multi-datagram requests dropped, a per-source reply
byte budget, and TCP served meanwhile."""

from __future__ import annotations

import socket
import struct
import time
from pathlib import Path

import pytest

from .conftest import ApplianceFactory
from .helpers.mcproto import RawConn, round_trip
from .helpers.procs import Server
from .helpers.servers import SERVER_KINDS, server_of

HEADER = struct.Struct("!HHHH")  # request id, sequence, datagram count, reserved
MAX_DATAGRAM = 1400


@pytest.fixture(params=SERVER_KINDS)
def server(request: pytest.FixtureRequest) -> Server:
    return server_of(request)


def _udp(srv: Server) -> socket.socket:
    assert srv.udp_port, f"{srv.name} has no UDP port"
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((srv.host, srv.udp_port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    return s


def _collect(s: socket.socket, req_id: int, timeout: float = 3.0) -> list[bytes]:
    """Returns the datagrams of the reply to req_id, in arrival order."""
    got: list[bytes] = []
    total = None
    deadline = time.monotonic() + timeout
    while total is None or len(got) < total:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        s.settimeout(left)
        try:
            d = s.recv(65536)
        except socket.timeout:
            break
        rid, _, count, _ = HEADER.unpack_from(d)
        if rid == req_id:
            got.append(d)
            total = count
    return got


def _request(s: socket.socket, req_id: int, body: bytes) -> bytes:
    s.send(HEADER.pack(req_id, 0, 1, 0) + body)
    grams = _collect(s, req_id)
    assert grams, f"no UDP reply to request {req_id}"
    return _reassemble(grams, req_id)


def _reassemble(grams: list[bytes], req_id: int) -> bytes:
    heads = [HEADER.unpack_from(d) for d in grams]
    count = heads[0][2]
    assert all(h[0] == req_id and h[2] == count and h[3] == 0 for h in heads), heads
    seqs = sorted(h[1] for h in heads)
    assert seqs == list(range(count)), f"sequence numbers {seqs} for {count} datagrams"
    for d in grams:
        assert len(d) <= MAX_DATAGRAM, f"datagram of {len(d)} bytes"
    by_seq = {HEADER.unpack_from(d)[1]: d[HEADER.size:] for d in grams}
    return b"".join(by_seq[i] for i in range(count))


def test_udp_set_get(server: Server) -> None:
    with _udp(server) as s:
        assert _request(s, 7, b"set u1 5 0 5\r\nhello\r\n") == b"STORED\r\n"
        assert _request(s, 8, b"get u1\r\n") == b"VALUE u1 5 5\r\nhello\r\nEND\r\n"
        assert _request(s, 65535, b"get nope\r\n") == b"END\r\n"
        assert _request(s, 9, b"delete u1\r\n") == b"DELETED\r\n"
    round_trip(server.addr, "udp")


def test_udp_large_reply_split(server: Server) -> None:
    value = bytes(ord("a") + i % 26 for i in range(100_000))
    with RawConn(server.addr) as c:
        assert c.set(b"bigu", value, flags=3) == b"STORED\r\n"
    with _udp(server) as s:
        s.send(HEADER.pack(4242, 0, 1, 0) + b"get bigu\r\n")
        grams = _collect(s, 4242, timeout=5)
        reply = _reassemble(grams, 4242)
    assert reply == b"VALUE bigu 3 100000\r\n" + value + b"\r\nEND\r\n"
    min_count = -(-len(reply) // (MAX_DATAGRAM - HEADER.size))
    assert len(grams) >= min_count
    round_trip(server.addr, "udp-large")


def test_udp_multi_datagram_request_dropped(server: Server) -> None:
    with _udp(server) as s:
        s.send(HEADER.pack(11, 0, 2, 0) + b"get a\r\n")
        s.send(HEADER.pack(11, 1, 2, 0) + b"get b\r\n")
        assert _collect(s, 11, timeout=1.0) == [], "a multi-datagram request was answered"
        assert _request(s, 12, b"get a\r\n") == b"END\r\n"
    round_trip(server.addr, "udp-multi")


@pytest.mark.parametrize("kind", ["appliance"])
def test_udp_reply_budget(kind: str, tmp_path: Path,
                          appliance_factory: ApplianceFactory) -> None:
    rate, burst = 16 * 1024, 32 * 1024
    srv = appliance_factory(memcached__udp_reply_rate="16KiB", memcached__udp_reply_burst="32KiB")
    value = b"b" * 10_000
    with RawConn(srv.addr) as c:
        assert c.set(b"amp", value) == b"STORED\r\n"
    received = 0
    replies = 0
    with _udp(srv) as s:
        start = time.monotonic()
        for rid in range(100):  # asks for ~1 MB of replies at once
            s.send(HEADER.pack(rid + 1, 0, 1, 0) + b"get amp\r\n")
        s.settimeout(0.5)
        while True:
            try:
                d = s.recv(65536)
            except socket.timeout:
                break
            received += len(d)
            replies += HEADER.unpack_from(d)[1] == 0
            assert time.monotonic() - start < 20
        elapsed = time.monotonic() - start
    allowed = burst + rate * elapsed + 2 * MAX_DATAGRAM
    assert replies >= 1, "the budget must let some replies through"
    assert received <= allowed, (
        f"{received} reply bytes in {elapsed:.2f}s from one source; budget allows {allowed:.0f}")
    round_trip(srv.addr, "udp-budget")
