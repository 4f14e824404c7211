"""Objects survive: a restart keeps every object, kill -9 mid-PUT leaves the old object
(never a torn one), and a multi-GiB object streams both ways, ranges included, with
the appliance's memory bounded."""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
import time
from pathlib import Path

from .helpers.objects import objects_config, request, start_objects
from .test_direct_io import device_dir  # noqa: F401  (a fixture: a directory taking O_DIRECT)

MIB = 1024 * 1024


def _vm_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} for pid {pid}")


def test_restart_keeps_every_object(tmp_path: Path) -> None:
    config = objects_config(tmp_path)
    srv, port = start_objects(config)
    objects = {f"/default/k{i}": os.urandom(1000 + 37_000 * i) for i in range(30)}
    try:
        for path, body in objects.items():
            assert request(port, "PUT", path, body)[0] == 200
        assert request(port, "PUT", "/photos/replaced", b"old")[0] == 200
        assert request(port, "PUT", "/photos/replaced", b"new")[0] == 200
        assert request(port, "PUT", "/photos/deleted", b"gone")[0] == 200
        assert request(port, "DELETE", "/photos/deleted")[0] == 204
    finally:
        assert srv.terminate() == 0
    srv, port = start_objects(config)
    try:
        for path, body in objects.items():
            status, h, got = request(port, "GET", path)
            assert (status, got) == (200, body), path
            assert h["etag"] == f'"{hashlib.md5(body).hexdigest()}"'
        assert request(port, "GET", "/photos/replaced")[2] == b"new"
        assert request(port, "GET", "/photos/deleted")[0] == 404
    finally:
        srv.terminate()


def test_kill9_mid_put_leaves_the_old_object_and_every_acknowledged_one(tmp_path: Path) -> None:
    config = objects_config(tmp_path, chunk_size="64KiB")
    srv, port = start_objects(config)
    acked = {f"/default/acked{i}": os.urandom(200_000) for i in range(10)}
    old = os.urandom(500_000)
    try:
        for path, body in acked.items():
            assert request(port, "PUT", path, body)[0] == 200
        assert request(port, "PUT", "/default/victim", old)[0] == 200
        # A replacement and a new object, each half sent when the process dies.
        socks = []
        for path in ("/default/victim", "/default/never"):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(b"PUT %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                      % (path.encode(), 2_000_000) + os.urandom(1_000_000))
            socks.append(s)
        time.sleep(0.5)  # the first chunks reach the store
    finally:
        srv.kill9()
    for s in socks:
        s.close()
    srv, port = start_objects(config)
    try:
        assert request(port, "GET", "/default/victim")[2] == old
        assert request(port, "GET", "/default/never")[0] == 404
        for path, body in acked.items():
            assert request(port, "GET", path)[2] == body, path
        # The orphaned chunks were found and deleted at start.
        assert "chunks no object names" in srv.log(), srv.log()
    finally:
        srv.terminate()


def _block(i: int) -> bytes:
    """Block i of the big object: its own index written all over it."""
    return (i.to_bytes(8, "big") * (MIB // 8))


def test_a_multi_gib_object_streams_with_bounded_memory(tmp_path: Path) -> None:
    blocks = 2200  # 2.15 GiB
    # Local buckets hold at most (segments - 2) x (segment_size - chunk_size): 16MiB
    # segments keep 15/16 of the pool for 1MiB chunks.
    config = objects_config(tmp_path, device_size="2700MiB", items="20MiB",
                            objects_size="2640MiB", segment_size="16MiB", hot_tier="4MiB")
    srv, port = start_objects(config, timeout=120)
    try:
        rss_start = _vm_kib(srv.pid, "VmRSS")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        md5 = hashlib.md5()

        def body():
            for i in range(blocks):
                b = _block(i)
                md5.update(b)
                yield b

        conn.request("PUT", "/default/big", body=body(),
                     headers={"Content-Length": str(blocks * MIB)})
        r = conn.getresponse()
        assert r.status == 200, r.read()
        r.read()
        assert r.getheader("ETag") == f'"{md5.hexdigest()}"'
        for first, n in ((0, 10), (1234 * MIB + 5, 3 * MIB), (blocks * MIB - 7, 7)):
            conn.request("GET", "/default/big",
                         headers={"Range": f"bytes={first}-{first + n - 1}"})
            r = conn.getresponse()
            got = r.read()
            assert r.status == 206 and len(got) == n
            want = b"".join(_block(i) for i in range(first // MIB, (first + n - 1) // MIB + 1))
            assert got == want[first % MIB:first % MIB + n]
        conn.request("GET", "/default/big")
        r = conn.getresponse()
        back = hashlib.md5()
        total = 0
        while chunk := r.read(4 * MIB):
            back.update(chunk)
            total += len(chunk)
        assert (total, back.hexdigest()) == (blocks * MIB, md5.hexdigest())
        conn.close()
        grown = _vm_kib(srv.pid, "VmHWM") - rss_start
        # Chunk buffers, segment buffers and the index's pages: never the object.
        assert grown < 400 * 1024, f"peak RSS grew by {grown // 1024} MiB for a 2 GiB object"
    finally:
        srv.terminate()


def test_chunks_read_from_the_device_asynchronously_under_concurrent_gets(
        tmp_path: Path, device_dir: Path) -> None:
    """O_DIRECT: every chunk of a restarted store is a device read through the worker's
    ring; many GETs at once each get their own object back whole."""
    import concurrent.futures

    config = objects_config(tmp_path, chunk_size="64KiB", hot_tier="0",
                            device=device_dir / "objects.img")
    srv, port = start_objects(config)
    bodies = {f"/default/o{i}": os.urandom(150_000 + 1000 * i) for i in range(24)}
    try:
        for path, body in bodies.items():
            assert request(port, "PUT", path, body)[0] == 200
    finally:
        assert srv.terminate() == 0
    srv, port = start_objects(config)
    try:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            got = dict(zip(bodies, pool.map(lambda p: request(port, "GET", p)[2], bodies)))
        assert got == bodies
    finally:
        srv.terminate()


def test_local_objects_are_never_evicted_and_a_full_pool_refuses(tmp_path: Path) -> None:
    """The log wraps many times under overwrites: every object kept is still whole
    (pinned records are copied forward, not evicted). Past the pool's limit a PUT
    gets 507 and changes nothing."""
    config = objects_config(tmp_path, device_size="128MiB", items="20MiB",
                            objects_size="64MiB", chunk_size="256KiB")
    srv, port = start_objects(config)
    try:
        keep = {f"/default/keep{i}": os.urandom(MIB) for i in range(20)}
        for path, body in keep.items():
            assert request(port, "PUT", path, body)[0] == 200
        churn = os.urandom(MIB)
        for i in range(200):  # 200 MiB through a 64 MiB log
            assert request(port, "PUT", "/default/churn", churn[i:] + churn[:i])[0] == 200
        for path, body in keep.items():
            assert request(port, "GET", path)[2] == body, path
        status = 200
        for i in range(60):
            status, _, data = request(port, "PUT", f"/default/fill{i}", os.urandom(MIB))
            if status != 200:
                break
        assert status == 507 and b"InsufficientStorage" in data
        for path, body in keep.items():
            assert request(port, "GET", path)[2] == body, path
    finally:
        srv.terminate()
