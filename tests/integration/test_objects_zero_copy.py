"""Large object bodies sent straight from the DRAM tier's items, without a copy
(server/ss_conn_out.c, ss_store_value_hold): the bytes are right, the path is taken
(bytes_written_by_ref), a body being sent survives its object being replaced or
deleted, a client that reads slowly or goes away mid-body loses nothing for others,
and the tier stays within its budget while holding 1 MiB chunks."""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import time
import urllib.request
from collections.abc import Iterator

import pytest
import yaml

from .helpers.objects import objects_config, request, start_objects
from .helpers.procs import Server

MIB = 1 << 20
SIZE = 3 * MIB + 123  # three whole 1 MiB chunks and a short one


CONSOLE_RE = re.compile(r"console=(http://\S+?)/?\s")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, int]]:
    work = tmp_path_factory.mktemp("zero-copy")
    config = objects_config(work, chunk_size="1MiB", hot_tier="64MiB")
    cfg = yaml.safe_load(config.read_text())
    cfg["console"] = {"enabled": True, "listen": "127.0.0.1:0"}  # for the store's figures
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    srv, port = start_objects(config)
    try:
        yield srv, port
    finally:
        srv.terminate()


def objects_store(srv: Server) -> dict[str, int]:
    """The objects store's figures from the REST API (GET /api/v1/buckets)."""
    found = CONSOLE_RE.findall(srv.log())
    assert found, srv.log()
    with urllib.request.urlopen(f"{found[-1]}/api/v1/buckets", timeout=10) as r:
        return json.load(r)["store"]


def stats(srv: Server) -> dict[str, int]:
    """The appliance's general memcached `stats`, numbers only."""
    with socket.create_connection(srv.addr, timeout=10) as s:
        s.sendall(b"stats\r\n")
        data = b""
        deadline = time.monotonic() + 10
        while not data.endswith(b"END\r\n") and time.monotonic() < deadline:
            data += s.recv(65536)
    found = re.findall(rb"STAT (\S+) (\d+)\r\n", data)
    return {k.decode(): int(v) for k, v in found}


def read_response(f) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response with a Content-Length from a socket file."""
    status = int(f.readline().split()[1])
    headers = {}
    while (line := f.readline()) not in (b"\r\n", b""):
        k, v = line.decode().split(":", 1)
        headers[k.strip().lower()] = v.strip()
    return status, headers, f.read(int(headers["content-length"]))


def test_large_bodies_are_sent_from_dram_without_a_copy(served: tuple[Server, int]) -> None:
    srv, port = served
    bodies = {f"/default/big{i}": os.urandom(SIZE) for i in range(3)}
    for path, body in bodies.items():
        assert request(port, "PUT", path, body)[0] == 200
    before = stats(srv)["bytes_written_by_ref"]
    for _ in range(2):
        for path, body in bodies.items():
            status, h, data = request(port, "GET", path)
            assert status == 200 and data == body, path
            assert h["etag"] == f'"{hashlib.md5(body).hexdigest()}"'
    # A range inside the second chunk, and one across chunks: the same path.
    body = bodies["/default/big0"]
    for a, b in ((MIB + 10, 2 * MIB - 10), (MIB - 100, 2 * MIB + 100)):
        status, _, data = request(port, "GET", "/default/big0",
                                  headers={"Range": f"bytes={a}-{b - 1}"})
        assert status == 206 and data == body[a:b]
    sent = stats(srv)["bytes_written_by_ref"] - before
    # Every whole chunk of every GET went by reference (the short tail is copied).
    assert sent >= 2 * 3 * 3 * MIB, sent


def test_a_body_in_flight_survives_its_object_being_replaced(served: tuple[Server, int]) -> None:
    srv, port = served
    old, new = os.urandom(SIZE), os.urandom(SIZE)
    assert request(port, "PUT", "/default/moving", old)[0] == 200
    assert request(port, "GET", "/default/moving")[2] == old  # now in DRAM
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        s.sendall(b"GET /default/moving HTTP/1.1\r\nHost: t\r\n\r\n" * 3)
        f = s.makefile("rb")
        assert f.readline().startswith(b"HTTP/1.1 200")
        time.sleep(0.3)  # the server now waits on our full receive window, bodies queued
        assert request(port, "PUT", "/default/moving", new)[0] == 200
        assert request(port, "DELETE", "/default/other-never-there")[0] == 204
        # Each pipelined reply is one whole version, the one its head named.
        rest = f.readline()
        while rest != b"\r\n":
            rest = f.readline()
        assert f.read(SIZE) == old
        for _ in range(2):
            status, h, data = read_response(f)
            assert status == 200
            assert h["etag"] == f'"{hashlib.md5(data).hexdigest()}"'
            assert data in (old, new)
    assert request(port, "GET", "/default/moving")[2] == new


def test_clients_leaving_mid_body_cost_others_nothing(served: tuple[Server, int]) -> None:
    srv, port = served
    body = os.urandom(SIZE)
    assert request(port, "PUT", "/default/leave", body)[0] == 200
    for _ in range(20):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(b"GET /default/leave HTTP/1.1\r\nHost: t\r\n\r\n" * 4)
        s.recv(1000)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()  # a reset with bodies still queued by reference
    assert srv.alive(), srv.log()
    assert request(port, "GET", "/default/leave")[2] == body


def test_the_tier_holds_chunks_within_its_budget(served: tuple[Server, int]) -> None:
    srv, port = served
    body = os.urandom(SIZE)
    for i in range(30):  # 90 MiB through a 64 MiB tier
        assert request(port, "PUT", f"/default/fill{i}", body)[0] == 200
        assert request(port, "GET", f"/default/fill{i}")[2] == body
    store = objects_store(srv)
    assert store["hot_bytes_limit"] == 64 * MIB
    # Full, within budget, and holding whole chunks (not only objects' metadata).
    assert 32 * MIB < store["hot_bytes_used"] <= 64 * MIB, store
    assert store["hot_items"] < 30 * 5, store  # not every chunk and metadata item: evictions
