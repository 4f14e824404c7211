"""Bad input: each case gets memcached's error (compared with a real memcached
where the reply is deterministic) or is closed, and other clients keep being
served meanwhile (a set/get round trip after each case)."""

from __future__ import annotations

import random
import resource
import socket
import time

import pytest

from .helpers.mcproto import Closed, RawConn, ReplyTimeout, round_trip
from .helpers.procs import Server

ERROR_PREFIXES = (b"ERROR", b"CLIENT_ERROR", b"SERVER_ERROR")


def _exchange(srv: Server, payload: bytes, wait: float = 1.0) -> tuple[bytes, bool]:
    """Sends payload, then collects replies for `wait` s. Returns (bytes, closed)."""
    with RawConn(srv.addr, timeout=5) as c:
        try:
            c.send(payload)
        except (BrokenPipeError, ConnectionResetError):
            return b"", True
        deadline = time.monotonic() + wait
        try:
            while True:
                c._fill(deadline)
        except Closed:
            return bytes(c.buf), True
        except ReplyTimeout:
            return bytes(c.buf), False


DETERMINISTIC = {
    "unknown command": b"foo bar\r\n",
    "empty line": b"\r\n",
    "missing arguments": b"set k\r\n",
    "get without key": b"get\r\n",
    "bad delta": b"incr k abc\r\n",
    "bad exptime": b"touch k abc\r\n",
    "bad flags": b"set k abc 0 1\r\nx\r\n",
    "negative length": b"set k 0 0 -1\r\n",
    "length over int32": b"set k 0 0 4294967296\r\n",
    "length near INT_MAX": b"set k 0 0 2147483647\r\n",
    "251-byte key get": b"get " + b"k" * 251 + b"\r\n",
    "251-byte key set": b"set " + b"k" * 251 + b" 0 0 1\r\nx\r\n",
    "251-byte key delete": b"delete " + b"k" * 251 + b"\r\n",
    "bad data chunk": b"set k 0 0 3\r\nabcdef\r\n",
    "value over item_size_max": b"set big 0 0 %d\r\n%s\r\n" % (2**20 + 100, b"v" * (2**20 + 100)),
    "meta bad flag": b"mg k !\r\n",
    "meta 251-byte key": b"mg " + b"k" * 251 + b" v\r\n",
}


@pytest.mark.parametrize("case", sorted(DETERMINISTIC))
def test_deterministic_errors_match_memcached(case: str, memcached: Server,
                                              appliance: Server) -> None:
    payload = DETERMINISTIC[case] + b"mn\r\n"
    want, want_closed = _exchange(memcached, payload)
    got, got_closed = _exchange(appliance, payload)
    assert want.startswith(ERROR_PREFIXES), f"harness: memcached answered {want!r}"
    assert got == want or (got_closed and want.startswith(got)), (
        f"{case}: memcached answered {want!r}; the appliance {got!r} (closed={got_closed})")
    round_trip(appliance.addr, case)


def test_junk_without_newline(memcached: Server, appliance: Server) -> None:
    junk = b"x" * 4096
    for srv in (memcached, appliance):
        got, closed = _exchange(srv, junk, wait=3)
        assert closed or got.startswith(ERROR_PREFIXES), (srv.name, got[:200])
    _, mc_closed = _exchange(memcached, junk, wait=3)
    assert mc_closed, "memcached closes a client that sends 4 KiB without a newline"
    round_trip(appliance.addr, "junk")


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_binary_garbage(seed: int, appliance: Server) -> None:
    garbage = random.Random(seed).randbytes(16 * 1024)
    got, closed = _exchange(appliance, garbage, wait=2)
    for line in got.split(b"\r\n"):
        assert line == b"" or line.startswith(ERROR_PREFIXES), f"unexpected reply {line[:100]!r}"
    _ = closed  # either is fine
    round_trip(appliance.addr, f"garbage{seed}")


def test_huge_length_errors_or_closes(memcached: Server, appliance: Server) -> None:
    payload = b"set huge 0 0 2000000000\r\n"
    want, want_closed = _exchange(memcached, payload)
    got, closed = _exchange(appliance, payload)
    assert got == want or got.startswith(ERROR_PREFIXES) or (closed and got == b""), (
        f"memcached: {want!r} (closed={want_closed}); appliance: {got!r} (closed={closed})")
    round_trip(appliance.addr, "huge")


def test_half_command_then_silence(appliance: Server) -> None:
    halves = [b"set half 0 0 10\r\nabc", b"get hal", b"set half2 0 0 5", b"mg half v"]
    socks = []
    try:
        for h in halves:
            s = socket.create_connection(appliance.addr, timeout=5)
            s.sendall(h)
            socks.append(s)
        for i in range(3):
            round_trip(appliance.addr, f"half{i}")
            time.sleep(0.3)
        with RawConn(appliance.addr) as c:
            assert c.get(b"half") is None, "an incomplete set must not be stored"
    finally:
        for s in socks:
            s.close()
    round_trip(appliance.addr, "half-closed")


def test_thousand_idle_connections(appliance: Server) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2500:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    socks: list[socket.socket] = []
    start = time.monotonic()
    try:
        for _ in range(1000):
            assert time.monotonic() - start < 60, f"only {len(socks)} connections in 60 s"
            socks.append(socket.create_connection(appliance.addr, timeout=10))
        round_trip(appliance.addr, "idle-1000")
        # Connections opened first and last are both still served.
        for s in socks[:5] + socks[-5:]:
            s.sendall(b"version\r\n")
            assert s.recv(200).startswith(b"VERSION ")
    finally:
        for s in socks:
            s.close()
    round_trip(appliance.addr, "idle-closed")
