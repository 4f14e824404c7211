"""Device hits through asynchronous reads (io_uring), seen from clients.

The appliance runs with a small or no DRAM tier and 1 MiB segments on a
device opened O_DIRECT (so no read comes from the page cache), so most items
live only on the device and a get waits for a read that completes in the
worker's io_uring. Pipelined gets, multi-gets and mg must still reply in
request order with the right values, the `stats` must show that the reads
went through the ring, and clients that leave with reads in flight must
leave nothing behind (the appliance keeps serving, nothing stays in flight,
and it stops cleanly at teardown).
"""

from __future__ import annotations

import os
import random
import socket
import struct
import subprocess
import time
from pathlib import Path

import yaml

from .conftest import ApplianceFactory
from .helpers.mcproto import RawConn
from .helpers.procs import Server, start_memcached
from .test_direct_io import _config as direct_config
from .test_direct_io import device_dir  # noqa: F401  (a fixture: a directory taking O_DIRECT)

MIB = 1024 * 1024
NKEYS = 600
VALUE_BYTES = 4096
DEPTH = 64


def _value(i: int) -> bytes:
    head = b"<value %d>" % i
    return (head * (VALUE_BYTES // len(head) + 1))[:VALUE_BYTES]


def _start(appliance_factory: ApplianceFactory, tmp_path: Path, device: Path,
           hot_tier: str) -> Server:
    return appliance_factory(direct_config(tmp_path, device, hot_tier=hot_tier,
                                           segment_size="1MiB",
                                           memcached__item_size_max="512KiB"))


def _load(c: RawConn, nkeys: int = NKEYS) -> None:
    """nkeys items, then enough filler that every one of them is in a segment
    already written to the device (not the open segment's buffer)."""
    for i in range(nkeys):
        c.send(b"set k%d 0 0 %d noreply\r\n%s\r\n" % (i, VALUE_BYTES, _value(i)))
    filler = b"f" * (200 * 1024)
    for j in range(12):
        c.send(b"set filler%d 0 0 %d noreply\r\n%s\r\n" % (j, len(filler), filler))
    assert c.cmd(b"mn") == b"MN\r\n"
    time.sleep(0.5)  # > flush_interval: the open segment is on the device too


READ_FAILED = b"SERVER_ERROR device read failed\r\n"


def _read_value(c: RawConn, key: bytes) -> bytes | None:
    """One get's reply: the value, None for a miss, READ_FAILED for a failed read."""
    line = c.read_line()
    if line == b"END\r\n":
        return None
    if line == READ_FAILED:
        return READ_FAILED
    parts = line.split()
    assert parts[:2] == [b"VALUE", key], f"expected {key!r}'s VALUE, got {line!r}"
    value = c.read_exact(int(parts[3]) + 2)[:-2]
    assert c.read_line() == b"END\r\n"
    return value


def _get_all(c: RawConn, failed: list[int] | None = None) -> tuple[int, list[int]]:
    """Every loaded key, DEPTH gets pipelined at a time: (how many were served,
    the keys whose value came back wrong); keys answered READ_FAILED go to
    `failed` (a failed read is a wrong value when no list is given)."""
    served, wrong = 0, []
    for start in range(0, NKEYS, DEPTH):
        batch = range(start, min(start + DEPTH, NKEYS))
        c.send(b"".join(b"get k%d\r\n" % i for i in batch))
        for i in batch:
            value = _read_value(c, b"k%d" % i)
            if value is READ_FAILED and failed is not None:
                failed.append(i)
            elif value is not None:
                served += 1
                if value != _value(i):
                    wrong.append(i)
    return served, wrong


def test_pipelined_gets_reply_in_order_from_the_device(
        tmp_path: Path, device_dir: Path, appliance_factory: ApplianceFactory) -> None:
    srv = _start(appliance_factory, tmp_path, device_dir / "store.dat", hot_tier="0")
    rng = random.Random(11)
    with RawConn(srv.addr, timeout=30) as c:
        _load(c)
        before = c.counters()
        for _ in range(8):
            batch = [rng.randrange(NKEYS) for _ in range(DEPTH)]
            c.send(b"".join(b"get k%d\r\n" % i for i in batch))
            for i in batch:
                assert _read_value(c, b"k%d" % i) == _value(i), f"k{i} came back wrong"
        after = c.counters()
    reads = after["device_reads_async"] - before["device_reads_async"]
    assert reads >= 8 * DEPTH * 0.9, f"only {reads} of {8 * DEPTH} gets read asynchronously"
    assert after["hits_device"] - before["hits_device"] == 8 * DEPTH
    assert after["device_reads_in_flight"] == 0
    grew = {k: after[k] - before.get(k, 0) for k in after}
    assert sum(v for k, v in grew.items() if k.startswith("device_read_us_")) == reads
    deep = sum(v for k, v in grew.items()
               if k.startswith("device_read_depth_") and k != "device_read_depth_le_1")
    assert deep > 0, "a worker never had more than one read in flight"


def test_multiget_and_mg_mix_tiers_in_order(tmp_path: Path, device_dir: Path,
                                            appliance_factory: ApplianceFactory) -> None:
    # 16 MiB of DRAM holds about the 3,500 most recent of 6,000 items: the
    # older ones are on the device only.
    nkeys = 6000
    srv = _start(appliance_factory, tmp_path, device_dir / "store.dat", hot_tier="16MiB")
    rng = random.Random(12)
    with RawConn(srv.addr, timeout=30) as c:
        _load(c, nkeys)
        before = c.counters()
        keys = rng.sample(range(nkeys), 100) + [nkeys + 5]  # and a miss
        rng.shuffle(keys)
        c.send(b"get " + b" ".join(b"k%d" % i for i in keys) + b"\r\n"
               + b"".join(b"mg k%d v k\r\nmn\r\n" % i for i in keys[:30]))
        for i in keys:
            if i >= nkeys:
                continue
            line = c.read_line()
            assert line == b"VALUE k%d 0 %d\r\n" % (i, VALUE_BYTES), line
            assert c.read_exact(VALUE_BYTES + 2)[:-2] == _value(i)
        assert c.read_line() == b"END\r\n"
        for i in keys[:30]:
            if i >= nkeys:
                assert c.read_line() == b"EN\r\n"
            else:
                assert c.read_line() == b"VA %d kk%d\r\n" % (VALUE_BYTES, i)
                assert c.read_exact(VALUE_BYTES + 2)[:-2] == _value(i)
            assert c.read_line() == b"MN\r\n"
        after = c.counters()
    assert after["hits_dram"] > before["hits_dram"], "no key came from DRAM"
    assert after["device_reads_async"] > before["device_reads_async"], "no async read"


def test_clients_leaving_with_reads_in_flight(tmp_path: Path, device_dir: Path,
                                             appliance_factory: ApplianceFactory) -> None:
    srv = _start(appliance_factory, tmp_path, device_dir / "store.dat", hot_tier="0")
    with RawConn(srv.addr, timeout=30) as c:
        _load(c)
    for n in range(30):
        s = socket.create_connection(srv.addr, timeout=5)
        s.sendall(b"".join(b"get k%d\r\nmg k%d v\r\n" % (i, i)
                           for i in range(n * 7, n * 7 + DEPTH // 2)))
        # Reset, not a polite close: the reads are still in flight.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    with RawConn(srv.addr, timeout=30) as c:
        for i in range(0, NKEYS, 37):
            assert c.get(b"k%d" % i) == _value(i)
        deadline = time.monotonic() + 10
        while c.counters()["device_reads_in_flight"] != 0:
            assert time.monotonic() < deadline, "reads stayed in flight after clients left"
            time.sleep(0.05)


def _check_failed_reads(c: RawConn, before: dict[str, int], served: int,
                        failed: list[int]) -> None:
    """After a pass over a damaged device: its failed reads were counted and
    their entries dropped (a second pass misses them and serves the rest
    again), and the appliance keeps serving."""
    after = c.counters()
    assert failed, "no read failed: the damage missed every item"
    assert served, "every read failed: the damage hit every item"
    assert after["errors_device"] + after["errors_checksum"] >= \
        before["errors_device"] + before["errors_checksum"] + len(failed)
    retry: list[int] = []
    again, wrong = _get_all(c, retry)
    assert not wrong and not retry, f"second pass: wrong {wrong[:5]}, failed {retry[:5]}"
    assert again == served, "a failed item was not dropped, or a good one was"
    for i in failed[:20]:
        assert c.cmd(b"mg k%d v" % i) == b"EN\r\n"
    assert c.set(b"after", b"still serving") == b"STORED\r\n"
    assert c.get(b"after") == b"still serving"


def test_a_damaged_device_is_never_served(tmp_path: Path, device_dir: Path,
                                         appliance_factory: ApplianceFactory) -> None:
    """Zeroed and missing bytes under the running appliance: a zeroed record
    fails its checksum and is a miss (as a torn one after a crash is), a read
    past the cut comes back short and answers SERVER_ERROR; both are
    counted and dropped, never a wrong value, and the appliance keeps
    serving."""
    device = device_dir / "store.dat"
    srv = _start(appliance_factory, tmp_path, device, hot_tier="0")
    with RawConn(srv.addr, timeout=30) as c:
        _load(c)
        before = c.counters()
        # The pool starts after the 1 MiB label; its records run from about
        # 1 MiB to 3.5 MiB. Zero the second MiB (reads of it fail their
        # checksum), then cut the file at 3 MiB (reads past it come back short).
        subprocess.run(["fallocate", "--punch-hole", "--offset", str(2 * MIB), "--length",
                        str(MIB), str(device)], check=True, timeout=30)
        os.truncate(device, 3 * MIB)
        # A multi-get with a failed key is one SERVER_ERROR, not a torn list
        # (its failed keys are dropped; the odd keys are left to fail below).
        evens = b" ".join(b"k%d" % i for i in range(0, NKEYS, 2))
        assert c.cmd(b"get " + evens) == READ_FAILED
        failed: list[int] = []
        served, wrong = _get_all(c, failed)
        assert not wrong, f"wrong values served for {wrong[:10]}"
        after = c.counters()
        assert after["errors_checksum"] > before["errors_checksum"], "zeroed records not caught"
        assert after["errors_device"] > before["errors_device"], "short reads not counted"
        _check_failed_reads(c, before, served, failed)


def test_a_detached_loop_device_fails_reads_and_keeps_serving(
        tmp_path: Path, appliance_factory: ApplianceFactory) -> None:
    """A block device (loop, opened O_DIRECT) detached while clients read
    from it. The kernel only defers a detach while the appliance holds the
    device open, so its backing file is cut too, as a pulled disk would be:
    reads past the cut fail with EIO from the block layer."""
    image = tmp_path / "disk.img"
    with open(image, "wb") as f:
        f.truncate(64 * MIB)
    out = subprocess.run(["losetup", "-f", "--show", str(image)], capture_output=True,
                         text=True, timeout=20)
    assert out.returncode == 0, f"losetup refused: {out.stderr} (CI runs as root with loop)"
    loop = out.stdout.strip()
    detached = False
    try:
        cfg = yaml.safe_load(direct_config(tmp_path, image, hot_tier="0", segment_size="1MiB",
                                           memcached__item_size_max="512KiB").read_text())
        cfg["storage"]["devices"] = [{"name": "local", "kind": "block", "path": loop}]
        cfg["storage"]["pools"][0]["size"] = "100%"
        path = tmp_path / "block.yaml"
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        srv = appliance_factory(path)
        with RawConn(srv.addr, timeout=30) as c:
            _load(c)
            before = c.counters()
            # Mid-load: the first reads are in flight when the device goes.
            c.send(b"".join(b"get k%d\r\n" % i for i in range(DEPTH)))
            subprocess.run(["losetup", "-d", loop], check=True, timeout=20)
            detached = True
            os.truncate(image, 3 * MIB)
            for i in range(DEPTH):
                value = _read_value(c, b"k%d" % i)
                assert value in (None, READ_FAILED, _value(i)), f"k{i} came back wrong"
            failed: list[int] = []
            served, wrong = _get_all(c, failed)
            assert not wrong, f"wrong values served for {wrong[:10]}"
            assert c.counters()["errors_device"] > before["errors_device"]
            _check_failed_reads(c, before, served, failed)
        srv.kill9()  # its segment flushes fail too: nothing to stop cleanly for
    finally:
        if not detached:
            subprocess.run(["losetup", "-d", loop], timeout=20, check=False)


def test_kill9_with_reads_in_flight_then_restart(tmp_path: Path, device_dir: Path,
                                                 appliance_factory: ApplianceFactory) -> None:
    """SIGKILL while pipelined device gets are in flight; the restarted appliance
    serves every item whole (or not at all), never a wrong value."""
    device = device_dir / "store.dat"
    config = direct_config(tmp_path, device, hot_tier="0", segment_size="1MiB",
                           memcached__item_size_max="512KiB")
    srv = appliance_factory(config)
    with RawConn(srv.addr, timeout=30) as c:
        _load(c)
        time.sleep(1.0)  # the group commit puts the index entries on disk
    socks = []
    for n in range(8):
        s = socket.create_connection(srv.addr, timeout=5)
        s.sendall(b"".join(b"get k%d\r\n" % ((n * 61 + i) % NKEYS) for i in range(DEPTH)))
        socks.append(s)
    srv.kill9()
    for s in socks:
        s.close()
    srv2 = appliance_factory(config)
    with RawConn(srv2.addr, timeout=30) as c:
        served, wrong = _get_all(c)
        assert not wrong, f"wrong values after the restart for {wrong[:10]}"
        assert served == NKEYS, f"{served} of {NKEYS} items survived a crash of reads only"


def test_proxy_forwards_a_local_copy_that_would_wait_for_the_device(
        tmp_path: Path, device_dir: Path, appliance_factory: ApplianceFactory) -> None:
    """Proxy mode keeps local copies; one that only the (O_DIRECT) device
    holds is not waited for on the request path: the owning back end, which
    has it in RAM, answers instead, and the reply is the same."""
    backend = start_memcached(tmp_path)
    try:
        cfg = yaml.safe_load(direct_config(tmp_path, device_dir / "store.dat", hot_tier="0",
                                           segment_size="1MiB",
                                           memcached__item_size_max="512KiB").read_text())
        cfg["backends"] = [{"name": "mc0", "host": "127.0.0.1", "port": backend.port}]
        path = tmp_path / "proxy.yaml"
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        srv = appliance_factory(path)
        with RawConn(srv.addr, timeout=30) as c, RawConn(backend.addr, timeout=30) as direct:
            _load(c)
            _get_all(c)  # a set of an uncached key keeps nothing: these reads fill copies
            assert c.counters()["total_items"] >= NKEYS, "the proxy kept no local copies"
            before, backend_before = c.counters(), direct.counters()
            served, wrong = _get_all(c)
            assert served == NKEYS and not wrong
            c.send(b"".join(b"mg k%d v\r\n" % i for i in range(DEPTH)))
            for i in range(DEPTH):
                assert c.read_line() == b"VA %d\r\n" % VALUE_BYTES
                assert c.read_exact(VALUE_BYTES + 2)[:-2] == _value(i)
            after, backend_after = c.counters(), direct.counters()
        forwarded = after["device_reads_forwarded"] - before["device_reads_forwarded"]
        assert forwarded >= NKEYS, f"only {forwarded} device-only copies forwarded"
        assert after["device_reads_sync_fallback"] == before["device_reads_sync_fallback"]
        assert backend_after["get_hits"] - backend_before["get_hits"] >= NKEYS
    finally:
        backend.kill9()


def test_udp_gets_wait_for_the_device_without_stalling_the_worker(
        tmp_path: Path, device_dir: Path, appliance_factory: ApplianceFactory) -> None:
    """UDP datagrams whose gets need device reads wait for them (parked), then
    run whole with the reads in hand: right values, no synchronous read."""
    from .test_udp import HEADER, _reassemble, _udp

    srv = _start(appliance_factory, tmp_path, device_dir / "store.dat", hot_tier="0")
    rng = random.Random(13)
    with RawConn(srv.addr, timeout=30) as c:
        _load(c)
        before = c.counters()
        s = _udp(srv)
        try:
            asked: dict[int, list[int]] = {}
            for rid in range(1, 41):
                keys = rng.sample(range(NKEYS), 1 if rid % 4 else 2)
                asked[rid] = keys
                body = (b"get " + b" ".join(b"k%d" % k for k in keys) + b"\r\n" if rid % 5
                        else b"mg k%d v\r\n" % keys[0])
                if rid % 5 == 0:
                    asked[rid] = keys[:1]
                s.send(HEADER.pack(rid, 0, 1, 0) + body)
            grams: dict[int, list[bytes]] = {}
            deadline = time.monotonic() + 10
            while any(len(grams.get(r, [])) != (HEADER.unpack_from(grams[r][0])[2]
                                                if grams.get(r) else -1) for r in asked):
                assert time.monotonic() < deadline, f"replies missing: {sorted(grams)}"
                s.settimeout(max(0.01, deadline - time.monotonic()))
                d = s.recv(65536)
                grams.setdefault(HEADER.unpack_from(d)[0], []).append(d)
            for rid, keys in asked.items():
                reply = _reassemble(grams[rid], rid)
                if rid % 5 == 0:
                    assert reply == b"VA %d\r\n%s\r\n" % (VALUE_BYTES, _value(keys[0])), rid
                else:
                    want = b"".join(b"VALUE k%d 0 %d\r\n%s\r\n" % (k, VALUE_BYTES, _value(k))
                                    for k in keys) + b"END\r\n"
                    assert reply == want, f"request {rid} for {keys}"
        finally:
            s.close()
        after = c.counters()
    assert after["udp_parked"] - before["udp_parked"] >= 35, "datagrams did not wait"
    assert after["device_reads_async"] - before["device_reads_async"] >= 40
    assert after["device_reads_sync_fallback"] == before["device_reads_sync_fallback"]
    assert after["hits_device"] - before["hits_device"] >= 40
