"""Every text command through pymemcache, against memcached and the appliance."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from pymemcache.client.base import Client
from pymemcache.exceptions import (MemcacheClientError, MemcacheServerError,
                                   MemcacheUnknownCommandError)

from .helpers.mcproto import RawConn, round_trip
from .helpers.procs import Server
from .helpers.servers import BIG_VALUE, SERVER_KINDS, TOO_LARGE, server_of


@pytest.fixture(params=SERVER_KINDS)
def server(request: pytest.FixtureRequest) -> Server:
    return server_of(request)


@pytest.fixture
def mc(server: Server) -> Iterator[Client]:
    c = Client(server.addr, connect_timeout=5, timeout=10, default_noreply=False)
    try:
        c.flush_all()
        yield c
    finally:
        c.close()


def test_get_set_many_and_flags(mc: Client) -> None:
    assert mc.get(b"missing") is None
    assert mc.set(b"a", b"1") is True
    assert mc.get(b"a") == b"1"
    assert mc.set_many({b"b": b"2", b"c": b"3"}) == []
    assert mc.get_many([b"a", b"b", b"c", b"zz"]) == {b"a": b"1", b"b": b"2", b"c": b"3"}
    raw = mc.raw_command(b"get a b", b"END\r\n")
    assert raw == b"VALUE a 0 1\r\n1\r\nVALUE b 0 1\r\n2\r\n"
    for flags in (0, 1, 12345, 2**31, 2**32 - 1):
        mc._store_cmd(b"set", {b"f": b"x"}, 0, False, flags=flags)
        assert mc.raw_command(b"get f", b"END\r\n") == b"VALUE f %d 1\r\nx\r\n" % flags


def test_multiget_hundreds_of_keys(mc: Client) -> None:
    items = {b"mk%d" % i: b"v%d" % i for i in range(400)}
    assert mc.set_many(items) == []
    assert mc.get_many(list(items) + [b"nope"]) == items


def test_binary_safe_and_large_values(mc: Client) -> None:
    blob = bytes(range(256)) * 4 + b"\r\nEND\r\n\0VALUE x 0 1\r\n"
    assert mc.set(b"bin", blob)
    assert mc.get(b"bin") == blob
    big = bytes((i * 7) % 251 for i in range(BIG_VALUE))
    assert mc.set(b"big", big)
    assert mc.get(b"big") == big
    assert mc.set(b"empty", b"")
    assert mc.get(b"empty") == b""


def test_value_over_item_size_max_refused(server: Server, mc: Client) -> None:
    assert mc.set(b"tl", b"old")
    with pytest.raises(MemcacheServerError, match="object too large for cache"):
        mc.set(b"tl", b"x" * TOO_LARGE)
    # The refused data was swallowed: the same connection keeps working.
    assert mc.set(b"after", b"ok")
    assert mc.get(b"after") == b"ok"
    round_trip(server.addr, "too-large")


def test_key_length_limits(server: Server, mc: Client) -> None:
    k250 = b"k" * 250
    assert mc.set(k250, b"v")
    assert mc.get(k250) == b"v"
    with pytest.raises(MemcacheClientError):
        mc.set(b"k" * 251, b"v")  # pymemcache refuses before sending
    with RawConn(server.addr) as c:  # and the server refuses too
        assert c.cmd(b"get " + b"k" * 251) == b"CLIENT_ERROR bad command line format\r\n"
        c.send(b"set " + b"k" * 251 + b" 0 0 1\r\n")
        assert c.read_line() == b"CLIENT_ERROR bad command line format\r\n"
        assert c.get(k250) == b"v"


def test_gets_cas(mc: Client) -> None:
    assert mc.cas(b"c", b"v", 12345) is None  # NOT_FOUND
    mc.set(b"c", b"v1")
    value, token = mc.gets(b"c")
    assert value == b"v1" and token
    assert mc.cas(b"c", b"v2", token) is True
    assert mc.cas(b"c", b"v3", token) is False  # EXISTS
    assert mc.get(b"c") == b"v2"
    many = mc.gets_many([b"c", b"nope"])
    assert list(many) == [b"c"] and many[b"c"][0] == b"v2"
    assert many[b"c"][1] != token
    mc.set(b"d", b"x")
    _, t1 = mc.gets(b"d")
    mc.set(b"d", b"x")
    _, t2 = mc.gets(b"d")
    assert t1 != t2, "every store must get a new cas"


def test_gat_gats(mc: Client) -> None:
    assert mc.raw_command(b"gat 100 nope", b"END\r\n") == b""
    mc._store_cmd(b"set", {b"g": b"val"}, 1000, False, flags=5)
    assert mc.raw_command(b"gat 0 g", b"END\r\n") == b"VALUE g 5 3\r\nval\r\n"
    out = mc.raw_command(b"gats -1 g", b"END\r\n")
    assert out.startswith(b"VALUE g 5 3 ") and out.endswith(b"\r\nval\r\n")
    assert mc.get(b"g") is None, "gat with a negative TTL expires the item"


def test_add_replace_append_prepend(mc: Client) -> None:
    assert mc.add(b"k", b"a") is True
    assert mc.add(b"k", b"b") is False
    assert mc.replace(b"k", b"c") is True
    assert mc.replace(b"nope", b"c") is False
    assert mc.append(b"k", b"de") is True
    assert mc.prepend(b"k", b"__") is True
    assert mc.get(b"k") == b"__cde"
    assert mc.append(b"nope", b"x") is False
    assert mc.prepend(b"nope", b"x") is False
    mc._store_cmd(b"set", {b"fl": b"1"}, 0, False, flags=77)
    mc.append(b"fl", b"2")
    assert mc.raw_command(b"get fl", b"END\r\n") == b"VALUE fl 77 2\r\n12\r\n"


def test_delete(mc: Client) -> None:
    mc.set(b"d", b"1")
    assert mc.delete(b"d") is True
    assert mc.delete(b"d") is False
    assert mc.get(b"d") is None
    mc.set_many({b"d1": b"1", b"d2": b"2"})
    assert mc.delete_many([b"d1", b"d2"]) is True
    assert mc.get_many([b"d1", b"d2"]) == {}


def test_incr_decr(mc: Client) -> None:
    assert mc.incr(b"n", 1) is None
    mc.set(b"n", b"10")
    assert mc.incr(b"n", 5) == 15
    assert mc.decr(b"n", 20) == 0
    mc.set(b"n", b"18446744073709551615")
    assert mc.incr(b"n", 2) == 1
    mc.set(b"s", b"abc")
    with pytest.raises(MemcacheClientError, match="non-numeric"):
        mc.incr(b"s", 1)
    mc.set(b"p", b"100")
    assert mc.decr(b"p", 1) == 99
    # memcached keeps the length of the value and pads with spaces.
    assert mc.raw_command(b"get p", b"END\r\n") == b"VALUE p 0 3\r\n99 \r\n"


def test_touch_and_expiry(mc: Client) -> None:
    assert mc.touch(b"nope", 10) is False
    mc.set(b"t", b"v", expire=1000)
    assert mc.touch(b"t", 0) is True
    mc.set(b"neg", b"v", expire=-1)
    assert mc.get(b"neg") is None
    mc.set(b"past", b"v", expire=int(time.time()) - 100)  # absolute, in the past
    assert mc.get(b"past") is None
    mc.set(b"future", b"v", expire=int(time.time()) + 3600)
    assert mc.get(b"future") == b"v"
    mc.set(b"short", b"v", expire=1)
    deadline = time.monotonic() + 5
    while mc.get(b"short") is not None:
        assert time.monotonic() < deadline, "an item with a 1 s TTL still served after 5 s"
        time.sleep(0.2)


def test_flush_all(mc: Client) -> None:
    mc.set(b"f1", b"1")
    assert mc.flush_all() is True
    assert mc.get(b"f1") is None
    mc.set(b"f2", b"2")
    assert mc.get(b"f2") == b"2", "items stored after flush_all are served"
    assert mc.flush_all(delay=2) is True
    assert mc.get(b"f2") == b"2", "a delayed flush_all takes effect later"
    deadline = time.monotonic() + 6
    while mc.get(b"f2") is not None:
        assert time.monotonic() < deadline, "flush_all 2 never took effect"
        time.sleep(0.2)
    time.sleep(1.5)  # memcached's flush is per second: leave the flush's second
    mc.set(b"f3", b"3")
    assert mc.get(b"f3") == b"3"


def test_version_verbosity_stats(mc: Client) -> None:
    assert mc.version()
    assert mc.raw_command(b"verbosity 1") == b"OK"
    with pytest.raises(MemcacheUnknownCommandError):
        mc.raw_command(b"verbosity")  # memcached answers ERROR
    mc.set(b"s", b"1")
    mc.get(b"s")
    mc.get(b"nope")
    stats = mc.stats()
    for name in (b"pid", b"uptime", b"curr_connections", b"total_connections", b"cmd_get",
                 b"cmd_set", b"get_hits", b"get_misses", b"curr_items", b"evictions",
                 b"bytes_read", b"bytes_written"):
        assert name in stats, f"stats lacks {name!r}"
    assert stats[b"get_hits"] >= 1 and stats[b"get_misses"] >= 1 and stats[b"cmd_set"] >= 1
    settings = mc.stats("settings")
    assert settings[b"item_size_max"] == 1024 * 1024
    assert b"maxconns" in settings


def test_noreply_variants(server: Server) -> None:
    with RawConn(server.addr) as c:
        c.send(b"flush_all noreply\r\n"
               b"set a 1 0 1 noreply\r\nx\r\n"
               b"add a 0 0 1 noreply\r\ny\r\n"
               b"add b 0 0 1 noreply\r\ny\r\n"
               b"replace b 2 0 1 noreply\r\nz\r\n"
               b"append a 0 0 1 noreply\r\n+\r\n"
               b"prepend a 0 0 1 noreply\r\n-\r\n"
               b"set n 0 0 1 noreply\r\n5\r\n"
               b"incr n 10 noreply\r\n"
               b"decr n 3 noreply\r\n"
               b"touch n 1000 noreply\r\n"
               b"cas a 0 0 1 1 noreply\r\nq\r\n"
               b"delete b noreply\r\n"
               b"verbosity 0 noreply\r\n"
               b"get a b n\r\n")
        assert c.read_line() == b"VALUE a 1 3\r\n"
        assert c.read_exact(5) == b"-x+\r\n"
        assert c.read_line() == b"VALUE n 0 2\r\n"
        assert c.read_exact(4) == b"12\r\n"
        assert c.read_line() == b"END\r\n"
        c.send(b"gets a\r\n")
        token = c.read_line().split()[4]
        c.read_exact(5)
        assert c.read_line() == b"END\r\n"
        c.send(b"cas a 0 0 1 " + token + b" noreply\r\nZ\r\nget a\r\n")
        assert c.read_line() == b"VALUE a 0 1\r\n"
        assert c.read_exact(3) == b"Z\r\n"
        assert c.read_line() == b"END\r\n"


def test_quit(server: Server, mc: Client) -> None:
    mc.set(b"q", b"1")
    with RawConn(server.addr) as c:
        c.send(b"quit\r\n")
        assert c.wait_closed(5), "quit did not close the connection"
    mc.quit()
    assert mc.get(b"q") == b"1"  # pymemcache reconnects
