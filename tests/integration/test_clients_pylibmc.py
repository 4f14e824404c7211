"""Every text command through pylibmc (libmemcached, text protocol), against
memcached and the appliance."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pylibmc
import pytest

from .helpers.mcproto import RawConn, round_trip
from .helpers.procs import Server
from .helpers.servers import BIG_VALUE, SERVER_KINDS, TOO_LARGE, server_of


@pytest.fixture(params=SERVER_KINDS)
def server(request: pytest.FixtureRequest) -> Server:
    return server_of(request)


@pytest.fixture
def mc(server: Server) -> Iterator[pylibmc.Client]:
    c = pylibmc.Client([f"{server.host}:{server.port}"], binary=False,
                       behaviors={"cas": True, "connect_timeout": 5000,
                                  "receive_timeout": 10_000_000, "send_timeout": 10_000_000})
    try:
        c.flush_all()
        yield c
    finally:
        c.disconnect_all()


def _raw_get(server: Server, key: bytes) -> bytes:
    with RawConn(server.addr) as c:
        return c.call(b"get " + key + b"\r\n")


def test_get_set_multi_and_flags(server: Server, mc: pylibmc.Client) -> None:
    assert mc.get("missing") is None
    assert mc.set("a", b"1")
    assert mc.get("a") == b"1"
    assert mc.set_multi({"b": b"2", "c": b"3"}) == []
    assert mc.get_multi(["a", "b", "c", "zz"]) == {"a": b"1", "b": b"2", "c": b"3"}
    # pylibmc marks Python types with client flags; they must round-trip.
    assert mc.set("int", 42)
    assert mc.get("int") == 42
    assert mc.set("obj", {"x": [1, 2]})
    assert mc.get("obj") == {"x": [1, 2]}
    assert mc.set("text", "hé")
    assert mc.get("text") == "hé"
    flags_int = _raw_get(server, b"int").split(b"\r\n")[0].split()[2]
    assert flags_int != b"0", "pylibmc's type flag was not stored"


def test_multiget_hundreds_of_keys(mc: pylibmc.Client) -> None:
    items = {f"mk{i}": f"v{i}".encode() for i in range(500)}
    assert mc.set_multi(items) == []
    assert mc.get_multi(list(items) + ["nope"]) == items


def test_binary_safe_and_large_values(mc: pylibmc.Client) -> None:
    blob = bytes(range(256)) * 3 + b"\r\nEND\r\n"
    assert mc.set("bin", blob)
    assert mc.get("bin") == blob
    big = bytes((i * 13) % 256 for i in range(BIG_VALUE))
    assert mc.set("big", big, min_compress_len=0)
    assert mc.get("big") == big


def test_too_large_and_key_limits(server: Server, mc: pylibmc.Client) -> None:
    with pytest.raises(pylibmc.Error):
        mc.set("tl", b"x" * TOO_LARGE)
    assert mc.set("k" * 250, b"v")
    assert mc.get("k" * 250) == b"v"
    with pytest.raises((pylibmc.Error, ValueError)):
        mc.set("k" * 251, b"v")  # libmemcached refuses before sending
    with RawConn(server.addr) as c:  # and the server refuses too
        assert c.cmd(b"get " + b"k" * 251) == b"CLIENT_ERROR bad command line format\r\n"
    assert mc.set("after", b"ok") and mc.get("after") == b"ok"
    round_trip(server.addr, "pylibmc-limits")


def test_gets_cas(mc: pylibmc.Client) -> None:
    mc.set("c", b"v1")
    value, token = mc.gets("c")
    assert value == b"v1"
    assert mc.cas("c", b"v2", token)
    assert not mc.cas("c", b"v3", token)
    assert mc.get("c") == b"v2"
    assert mc.gets("nope") == (None, None)


def test_add_replace_append_prepend(mc: pylibmc.Client) -> None:
    assert mc.add("k", b"a")
    assert not mc.add("k", b"b")
    assert mc.replace("k", b"c")
    assert not mc.replace("nope", b"c")
    assert mc.append("k", b"de")
    assert mc.prepend("k", b"__")
    assert mc.get("k") == b"__cde"
    assert not mc.append("nope", b"x")
    assert not mc.prepend("nope", b"x")
    assert mc.add_multi({"m1": b"1", "k": b"no"}) == ["k"]


def test_delete(mc: pylibmc.Client) -> None:
    mc.set("d", b"1")
    assert mc.delete("d")
    assert not mc.delete("d")
    mc.set_multi({"d1": b"1", "d2": b"2"})
    assert mc.delete_multi(["d1", "d2"])
    assert mc.get_multi(["d1", "d2"]) == {}


def test_incr_decr(mc: pylibmc.Client) -> None:
    with pytest.raises(pylibmc.NotFound):
        mc.incr("n")
    mc.set("n", b"10")
    assert mc.incr("n", 5) == 15
    assert mc.decr("n", 20) == 0
    mc.set("n", b"18446744073709551615")
    assert mc.incr("n", 2) == 1
    mc.set("s", b"abc")
    with pytest.raises(pylibmc.Error):
        mc.incr("s")
    mc.set_multi({"i1": b"1", "i2": b"2"})
    mc.incr_multi(["i1", "i2"], delta=10)
    assert mc.get_multi(["i1", "i2"]) == {"i1": b"11", "i2": b"12"}


def test_touch_and_expiry(mc: pylibmc.Client) -> None:
    assert not mc.touch("nope", 10)
    mc.set("t", b"v", time=1000)
    assert mc.touch("t", 0)
    assert mc.get("t") == b"v"
    mc.set("short", b"v", time=1)
    deadline = time.monotonic() + 5
    while mc.get("short") is not None:
        assert time.monotonic() < deadline, "an item with a 1 s TTL still served after 5 s"
        time.sleep(0.2)


def test_flush_all(mc: pylibmc.Client) -> None:
    mc.set("f1", b"1")
    assert mc.flush_all()
    assert mc.get("f1") is None
    mc.set("f2", b"2")
    assert mc.get("f2") == b"2"
    assert mc.flush_all(time=2)
    assert mc.get("f2") == b"2"
    deadline = time.monotonic() + 6
    while mc.get("f2") is not None:
        assert time.monotonic() < deadline, "flush_all 2 never took effect"
        time.sleep(0.2)


def test_stats(mc: pylibmc.Client) -> None:
    mc.set("s", b"1")
    mc.get("s")
    ((_, general),) = mc.get_stats()
    for name in ("curr_connections", "cmd_get", "cmd_set", "get_hits", "get_misses",
                 "curr_items", "evictions"):
        assert name in general, f"stats lacks {name}"
    assert int(general["cmd_set"]) >= 1 and int(general["get_hits"]) >= 1
