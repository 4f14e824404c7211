"""memcached replies of large values go from their DRAM item to the socket
without a copy (ss_conn_out_ref), seen from clients.

A get of a value of 1 KiB or more that lies in the DRAM tier queues the
item itself behind the VALUE line (counted in `bytes_written_by_ref`); the
item is held until its bytes are sent. So: the bytes are exact, small values
are still copied, a value being sent to a slow reader survives its key being
replaced or deleted, and a reply taken back (a multi-get ended by an
over-long key) loses its held values the way memcached loses its queued ones.
"""

from __future__ import annotations

import os
import random
import socket
import time
from pathlib import Path

from .conftest import ApplianceFactory
from .helpers.mcproto import RawConn
from .helpers.procs import Server
from .test_direct_io import _config as direct_config
from .test_direct_io import device_dir  # noqa: F401  (a fixture: a directory taking O_DIRECT)

KIB = 1024


def _by_ref(c: RawConn) -> int:
    return c.counters()["bytes_written_by_ref"]


def _read_values(f, keys: list[bytes]) -> list[bytes]:
    """One get's reply for keys that all hit: their values, in order."""
    out = []
    for key in keys:
        head = f.readline().split()
        assert head[:2] == [b"VALUE", key], head
        out.append(f.read(int(head[3]) + 2)[:-2])
    assert f.readline() == b"END\r\n"
    return out


def test_large_values_are_sent_from_dram_and_small_ones_copied(
        appliance_factory: ApplianceFactory) -> None:
    srv = appliance_factory(memcached__item_size_max="1MiB", storage__hot_tier="64MiB")
    sizes = [100, 1000, 1024, 4096, 100 * KIB, 1024 * KIB - 512]
    values = {b"z%d" % n: os.urandom(n) for n in sizes}
    with RawConn(srv.addr, timeout=30) as c:
        for key, v in values.items():
            assert c.call(b"set %s 5 0 %d\r\n%s\r\n" % (key, len(v), v)) == b"STORED\r\n"
        for key in (b"z100", b"z1000"):
            before = _by_ref(c)
            c.send(b"get %s\r\n" % key)
            assert c.read_line() == b"VALUE %s 5 %d\r\n" % (key, len(values[key]))
            assert c.read_exact(len(values[key]) + 2) == values[key] + b"\r\n"
            assert c.read_line() == b"END\r\n"
            assert _by_ref(c) == before, f"{key!r} (under 1 KiB) went by reference"
        large = [k for k in values if len(values[k]) >= 1024]
        before = _by_ref(c)
        # get, gets and a pipelined multi-get: every large hit by reference
        c.send(b"get " + b" ".join(large) + b"\r\n" + b"".join(b"gets %s\r\n" % k for k in large))
        for key in large:
            head = c.read_line().split()
            assert head[:2] == [b"VALUE", key], head
            assert c.read_exact(int(head[3]) + 2) == values[key] + b"\r\n"
        assert c.read_line() == b"END\r\n"
        for key in large:
            head = c.read_line().split()
            assert head[:2] == [b"VALUE", key] and len(head) == 5, head  # with its cas
            assert c.read_exact(len(values[key]) + 2) == values[key] + b"\r\n"
            assert c.read_line() == b"END\r\n"
        sent = _by_ref(c) - before
    assert sent == 2 * sum(len(values[k]) for k in large)


def test_a_value_being_sent_survives_its_key_changing(appliance_factory: ApplianceFactory) -> None:
    srv = appliance_factory(memcached__item_size_max="1MiB", storage__hot_tier="64MiB")
    old, new = os.urandom(900 * KIB), os.urandom(900 * KIB)
    with RawConn(srv.addr, timeout=30) as c:
        assert c.call(b"set moving 0 0 %d\r\n%s\r\n" % (len(old), old)) == b"STORED\r\n"
        before = _by_ref(c)
    with socket.create_connection(srv.addr, timeout=30) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        s.sendall(b"get moving\r\n")
        time.sleep(0.3)  # the appliance now waits on our receive window, the value queued
        with RawConn(srv.addr, timeout=30) as c:
            # replaced, deleted, and its memory likely reused by other values
            assert c.call(b"set moving 0 0 %d\r\n%s\r\n" % (len(new), new)) == b"STORED\r\n"
            assert c.cmd(b"delete moving") == b"DELETED\r\n"
            for i in range(8):
                assert c.call(b"set other%d 0 0 %d\r\n%s\r\n" % (i, len(new), new)) \
                    == b"STORED\r\n"
        with s.makefile("rb") as f:
            assert _read_values(f, [b"moving"]) == [old]
    with RawConn(srv.addr, timeout=30) as c:
        assert c.cmd(b"get moving") == b"END\r\n"
        assert _by_ref(c) - before >= len(old), "the value was copied, not sent from DRAM"


def _exchange(addr: tuple[str, int], setup: bytes, request: bytes) -> bytes:
    with RawConn(addr, timeout=30) as c:
        c.call(setup)
        return c.call(request)


def test_a_multiget_taken_back_replies_as_memcached_does(
        appliance_factory: ApplianceFactory, memcached: Server) -> None:
    """Large hits queued by reference, then an over-long key: memcached drops
    the queued VALUEs and answers CLIENT_ERROR; so must we, with the held
    items given back (the connection keeps serving)."""
    srv = appliance_factory()
    big = [os.urandom(8 * KIB + i) for i in range(3)]
    setup = b"".join(b"set big%d 0 0 %d noreply\r\n%s\r\n" % (i, len(v), v)
                     for i, v in enumerate(big))
    request = b"get big0 big1 big2 " + b"k" * 251 + b"\r\nget big1\r\n"
    ours = _exchange(srv.addr, setup, request)
    theirs = _exchange(memcached.addr, setup, request)
    assert ours == theirs
    assert ours.startswith(b"CLIENT_ERROR bad command line format\r\nVALUE big1 ")


def test_pipelined_gets_mix_references_and_deferred_reads(
        tmp_path: Path, device_dir: Path, appliance_factory: ApplianceFactory) -> None:
    """Gets of DRAM values (sent by reference) pipelined with gets that wait
    for device reads (deferred replies): every reply whole and in order.
    A reply built while an earlier one is owed goes into a borrowed buffer,
    and the references queued before it must stay where they are."""
    srv = appliance_factory(direct_config(tmp_path, device_dir / "store.dat", hot_tier="2MiB",
                                          segment_size="1MiB",
                                          memcached__item_size_max="512KiB"))
    nkeys, size = 1500, 4096
    values = [(b"<%d>" % i) * (size // 6) for i in range(nkeys)]
    values = [(v + b"." * size)[:size] for v in values]
    rng = random.Random(16)
    with RawConn(srv.addr, timeout=30) as c:
        for i, v in enumerate(values):  # the last few hundred stay in the 2 MiB tier
            c.send(b"set k%d 0 0 %d noreply\r\n%s\r\n" % (i, size, v))
        assert c.cmd(b"mn") == b"MN\r\n"
        time.sleep(0.5)  # > flush_interval: the old ones are on the device only
        before = c.counters()
        for _ in range(20):
            batch = [rng.randrange(nkeys - 300, nkeys) if j % 2 else rng.randrange(nkeys - 300)
                     for j in range(32)]
            c.send(b"".join(b"get k%d\r\n" % i for i in batch)
                   + b"get " + b" ".join(b"k%d" % i for i in batch[:8]) + b"\r\n")
            for i in batch:
                assert c.read_line() == b"VALUE k%d 0 %d\r\n" % (i, size)
                assert c.read_exact(size + 2) == values[i] + b"\r\n", f"k{i} came back wrong"
                assert c.read_line() == b"END\r\n"
            for i in batch[:8]:
                assert c.read_line() == b"VALUE k%d 0 %d\r\n" % (i, size)
                assert c.read_exact(size + 2) == values[i] + b"\r\n", f"k{i} came back wrong"
            assert c.read_line() == b"END\r\n"
        after = c.counters()
    assert after["hits_device"] > before["hits_device"], "no get waited for the device"
    assert after["bytes_written_by_ref"] > before["bytes_written_by_ref"], "nothing by reference"
