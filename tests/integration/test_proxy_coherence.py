"""Proxy mode coherence under racing writers.

Two clients that set the same key at the same time, on different workers,
reach the back end in an order the appliance cannot see. Whatever that order
is, once both are answered the appliance must serve what the back end holds:
a local copy is kept only when no other write to the key was in flight.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .helpers.procs import Server
from .test_proxy import Conn, _start, backend_stat, owner_of, pool  # noqa: F401  (pool is a fixture)

ROUNDS = 60
WRITERS = 4
SETS_PER_WRITER = 20
DEADLINE_S = 60.0


@pytest.fixture
def proxy(tmp_path: Path, pool: list[Server]) -> Iterator[Server]:  # noqa: F811
    # admission always, no local expiry during the test: any stale copy stays visible
    yield from _start(tmp_path, pool, local_ttl_max="1h")


def _writer(addr: tuple[str, int], key: bytes, tag: int, start: threading.Barrier,
            errors: list[str]) -> None:
    c = Conn(addr)
    try:
        start.wait(10)
        batch = b"".join(b"set %s 0 0 8\r\n%04d%04d\r\n" % (key, tag, i)
                         for i in range(SETS_PER_WRITER))
        c.send(batch)
        for _ in range(SETS_PER_WRITER):
            line = c.line()
            if line != b"STORED":
                errors.append(line.decode(errors="replace"))
    except Exception as exc:  # reported by the test thread
        errors.append(repr(exc))
    finally:
        c.close()


def _rounds() -> Iterator[int]:
    """ROUNDS round numbers, failing the test if they take over DEADLINE_S."""
    deadline = time.monotonic() + DEADLINE_S
    for r in range(ROUNDS):
        assert time.monotonic() < deadline, f"only {r} rounds in {DEADLINE_S}s"
        yield r


def test_racing_sets_leave_no_stale_local_copy(pool: list[Server],  # noqa: F811
                                              proxy: Server) -> None:
    reader = Conn(proxy.addr)
    stale = []
    try:
        for r in _rounds():
            key = b"race-%d" % r
            errors: list[str] = []
            start = threading.Barrier(WRITERS)
            threads = [threading.Thread(target=_writer, args=(proxy.addr, key, t, start, errors))
                       for t in range(WRITERS)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(20)
            assert not errors, errors[:3]
            owner = owner_of(pool, key)
            direct = Conn(owner.addr)
            try:
                truth = direct.get(key)
            finally:
                direct.close()
            seen = reader.get(key)
            if seen != truth:
                stale.append((key, seen, truth))
    finally:
        reader.close()
    assert not stale, f"{len(stale)} of {ROUNDS} keys served stale: {stale[:3]}"


def _held_by_some(backends: list[Server], key: bytes, value: bytes) -> bool:
    for srv in backends:
        direct = Conn(srv.addr)
        try:
            if direct.get(key) == value:
                return True
        finally:
            direct.close()
    return False


def test_a_noreply_write_is_done_once_a_later_reply_is_read(pool: list[Server],  # noqa: F811
                                                           proxy: Server) -> None:
    """memcached answers a connection's commands in order, so a client that has
    read the reply of a command sent after a noreply write knows the write is
    applied, and reads it from any connection. The appliance must keep that
    promise too, though it answers `mn` itself: a noreply write holds the replies
    behind it until its owner has answered."""
    writer = Conn(proxy.addr)
    late = []
    try:
        for r in _rounds():
            keys = [b"nr-%d-%d" % (r, i) for i in range(SETS_PER_WRITER)]
            value = b"%04d" % r * 512
            writer.send(b"".join(b"set %s 0 0 %d noreply\r\n%s\r\n" % (k, len(value), value)
                                 for k in keys) + b"mn\r\n")
            assert writer.line() == b"MN"
            for k in (keys[-1], keys[0]):
                if not _held_by_some(pool, k, value):
                    late.append(k)
    finally:
        writer.close()
    assert not late, f"{len(late)} noreply sets not yet at their owner after MN: {late[:3]}"


def test_a_long_pipeline_of_forwarded_writes_is_held_back_not_dropped(
        pool: list[Server], proxy: Server) -> None:  # noqa: F811
    """A client may pipeline far more forwarded writes than the appliance keeps
    replies owed for (256 per connection) and far more bytes than one read
    buffer holds: the appliance stops reading until the owners answer, and
    TCP holds the client back; the connection stays open and every write is
    answered."""
    sets, value = 4000, b"p" * 4000
    c = Conn(proxy.addr, timeout=30)
    errors: list[str] = []

    def send_all() -> None:
        try:
            c.send(b"".join(b"set pipe-%d 0 0 %d\r\n%s\r\n" % (i, len(value), value)
                            for i in range(sets)) + b"mn\r\n")
        except OSError as exc:
            errors.append(repr(exc))

    sender = threading.Thread(target=send_all)
    sender.start()
    try:
        replies = [c.line() for _ in range(sets)]
        assert c.line() == b"MN"
    finally:
        sender.join(30)
        c.close()
    assert not errors, errors
    assert set(replies) == {b"STORED"}, set(replies)
    assert sum(backend_stat(s, "curr_items") for s in pool) == sets


def test_udp_reads_local_copy_and_refuses_writes(pool: list[Server], proxy: Server) -> None:
    """Over UDP, proxy mode answers reads from the local copy only; a write is refused
    (it would reach no back end) and the rest of its datagram is dropped."""
    header = struct.Struct("!HHHH")
    tcp = Conn(proxy.addr)
    try:
        assert tcp.set(b"udp-cached", b"from-tcp") == b"STORED"
        assert tcp.get(b"udp-cached") == b"from-tcp"  # the read keeps a local copy
    finally:
        tcp.close()
    sets_before = sum(backend_stat(s, "cmd_set") for s in pool)
    gets_before = sum(backend_stat(s, "cmd_get") for s in pool)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.connect((proxy.host, proxy.udp_port))
        u.settimeout(5.0)

        def ask(req_id: int, body: bytes) -> bytes:
            u.send(header.pack(req_id, 0, 1, 0) + body)
            while True:
                d = u.recv(65536)
                if header.unpack_from(d)[0] == req_id:
                    return d[header.size:]

        assert ask(1, b"get udp-cached\r\n") == b"VALUE udp-cached 0 8\r\nfrom-tcp\r\nEND\r\n"
        assert ask(2, b"get udp-never-set\r\n") == b"END\r\n"
        refused = ask(3, b"set udp-w 0 0 2\r\nhi\r\n")
        assert refused.startswith(b"SERVER_ERROR") and b"TCP" in refused, refused
        assert ask(4, b"mg udp-cached v T30\r\n").startswith(b"SERVER_ERROR")
        assert ask(5, b"mg udp-cached v\r\n") == b"VA 8\r\nfrom-tcp\r\n"
    assert sum(backend_stat(s, "cmd_set") for s in pool) == sets_before
    assert sum(backend_stat(s, "cmd_get") for s in pool) == gets_before
