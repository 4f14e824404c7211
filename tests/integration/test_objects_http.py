"""Object requests over HTTP/1.1 against a running appliance, with curl and raw sockets:
GET, HEAD, PUT, DELETE, PURGE on /<bucket>/<key>, ranges, preconditions, chunked
bodies, keep-alive and pipelining, and malformed requests answered 400 (and the like)
while the server keeps serving others."""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .helpers.objects import objects_config, raw, request, start_objects, statuses
from .helpers.procs import Server


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, int]]:
    work = tmp_path_factory.mktemp("objects")
    srv, port = start_objects(objects_config(work, chunk_size="64KiB"))
    try:
        yield srv, port
    finally:
        srv.terminate()


@pytest.fixture
def port(served: tuple[Server, int]) -> int:
    assert served[0].alive(), served[0].log()
    return served[1]


def curl(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["curl", "-sS", "--max-time", "30", *args], capture_output=True,
                          timeout=60, check=False)


def test_put_get_head_delete_with_curl(port: int, tmp_path: Path) -> None:
    body = os.urandom(300_000)  # several 64KiB chunks
    src = tmp_path / "in.bin"
    src.write_bytes(body)
    url = f"http://127.0.0.1:{port}/default/dir/file%20one.bin"
    put = curl("-i", "-T", str(src), "-H", "Content-Type: image/png",
               "-H", "x-amz-meta-owner: alice", "-H", "Cache-Control: max-age=60", url)
    assert b"HTTP/1.1 200 OK" in put.stdout, put.stdout + put.stderr
    md5 = hashlib.md5(body).hexdigest()
    assert f'ETag: "{md5}"'.encode() in put.stdout
    out = tmp_path / "out.bin"
    got = curl("-D", "-", "-o", str(out), url)
    assert out.read_bytes() == body
    head = got.stdout.decode()
    assert "Content-Type: image/png" in head and "x-amz-meta-owner: alice" in head
    assert "Cache-Control: max-age=60" in head and "Accept-Ranges: bytes" in head
    status, h, data = request(port, "HEAD", "/default/dir/file%20one.bin")
    assert (status, h["content-length"], data) == (200, str(len(body)), b"")
    assert request(port, "DELETE", "/default/dir/file%20one.bin")[0] == 204
    status, _, data = request(port, "GET", "/default/dir/file%20one.bin")
    assert status == 404 and b"<Code>NoSuchKey</Code>" in data


def test_ranges_read_only_what_they_cover(port: int) -> None:
    body = bytes(range(256)) * 1000
    assert request(port, "PUT", "/default/ranges", body)[0] == 200
    cases = {"bytes=0-0": (0, 1), "bytes=65530-65545": (65530, 65546),
             "bytes=-100": (len(body) - 100, len(body)), "bytes=255000-": (255000, len(body))}
    for rng, (a, b) in cases.items():
        status, h, data = request(port, "GET", "/default/ranges", headers={"Range": rng})
        assert status == 206 and data == body[a:b], rng
        assert h["content-range"] == f"bytes {a}-{b - 1}/{len(body)}"
    status, h, data = request(port, "GET", "/default/ranges", headers={"Range": "bytes=999999-"})
    assert status == 416 and h["content-range"] == f"bytes */{len(body)}"
    assert b"<Code>InvalidRange</Code>" in data
    # Several ranges, or another unit: the whole object (RFC 9110 lets us ignore them).
    status, _, data = request(port, "GET", "/default/ranges", headers={"Range": "bytes=0-1,5-6"})
    assert status == 200 and data == body


def test_preconditions(port: int) -> None:
    assert request(port, "PUT", "/default/cond", b"v1")[0] == 200
    status, h, _ = request(port, "GET", "/default/cond")
    etag, modified = h["etag"], h["last-modified"]
    assert request(port, "GET", "/default/cond", headers={"If-None-Match": etag})[0] == 304
    assert request(port, "GET", "/default/cond", headers={"If-None-Match": '"x", ' + etag}
                   )[0] == 304
    assert request(port, "GET", "/default/cond", headers={"If-None-Match": '"other"'})[0] == 200
    assert request(port, "GET", "/default/cond", headers={"If-Match": '"other"'})[0] == 412
    assert request(port, "GET", "/default/cond", headers={"If-Match": etag})[0] == 200
    assert request(port, "HEAD", "/default/cond", headers={"If-Modified-Since": modified}
                   )[0] == 304
    assert request(port, "GET", "/default/cond", headers={
        "If-Unmodified-Since": "Sun, 06 Nov 1994 08:49:37 GMT"})[0] == 412
    # If-Range with a stale validator: the whole object, not the range.
    status, _, data = request(port, "GET", "/default/cond",
                              headers={"Range": "bytes=0-0", "If-Range": '"stale"'})
    assert (status, data) == (200, b"v1")
    status, _, data = request(port, "GET", "/default/cond",
                              headers={"Range": "bytes=0-0", "If-Range": etag})
    assert (status, data) == (206, b"v")


def test_chunked_put_keep_alive_and_pipelining(port: int) -> None:
    put = (b"PUT /photos/chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-Trailer: y\r\n\r\n")
    gets = b"GET /photos/chunked HTTP/1.1\r\nHost: x\r\n\r\n" * 3
    reply = raw(port, put + gets + b"HEAD /photos/nope HTTP/1.1\r\nHost: x\r\n\r\n")
    assert statuses(reply) == [200, 200, 200, 200, 404], reply[:600]
    assert reply.count(b"hello, world") == 3


def test_expect_100_continue(port: int) -> None:
    reply = raw(port, b"PUT /default/expect HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                      b"Expect: 100-continue\r\n\r\nabc")
    assert statuses(reply) == [100, 200], reply
    assert request(port, "GET", "/default/expect")[2] == b"abc"


MALFORMED = [
    pytest.param(b"GET /default/a\r\n\r\n", 400, id="no-version"),
    pytest.param(b"GET  /default/a HTTP/1.1\r\nHost: x\r\n\r\n", 400, id="two-spaces"),
    pytest.param(b"GET /default/a HTTP/1.1\nHost: x\n\n", 400, id="bare-lf"),
    pytest.param(b"GET /default/a HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 9000 + b"\r\n\r\n", 431,
                 id="oversized-header"),
    pytest.param(b"GET /default/a HTTP/1.1\r\nHost : x\r\n\r\n", 400, id="space-before-colon"),
    pytest.param(b"GET /default/a HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400, id="obs-fold"),
    pytest.param(b"PUT /default/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"zz\r\nab\r\n0\r\n\r\n", 400, id="bad-chunk-size"),
    pytest.param(b"PUT /default/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"2\r\nabXX0\r\n\r\n", 400, id="chunk-without-crlf"),
    pytest.param(b"POST /default/a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /default/smuggled HTTP/1.1\r\n"
                 b"Host: x\r\n\r\n", 400, id="smuggling-cl-and-te"),
    pytest.param(b"PUT /default/a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                 b"Content-Length: 4\r\n\r\nabcd", 400, id="two-content-lengths"),
    pytest.param(b"PUT /default/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 400,
                 id="te-not-chunked"),
    pytest.param(b"GET /default/a HTTP/1.1\r\n\r\n", 400, id="no-host"),
    pytest.param(b"GET /default/a HTTP/2.0\r\nHost: x\r\n\r\n", 505, id="http2"),
    pytest.param(b"GET /default/%zz HTTP/1.1\r\nHost: x\r\n\r\n", 400, id="bad-escape"),
]


@pytest.mark.parametrize("data,status", MALFORMED)
def test_malformed_requests_are_refused_and_the_server_serves_others(
        port: int, data: bytes, status: int) -> None:
    reply = raw(port, data)
    assert statuses(reply)[:1] == [status], reply[:300]
    # A refused framing ends the connection: nothing after it is taken as a request.
    assert b"smuggled" not in reply
    assert request(port, "PUT", "/default/after", b"ok")[0] == 200
    assert request(port, "GET", "/default/after")[2] == b"ok"


def test_s3_operations_not_served_yet_are_refused_by_name(port: int) -> None:
    status, _, data = request(port, "GET", "/default")
    assert status == 501 and b"listing a bucket is not implemented" in data
    status, _, data = request(port, "POST", "/default/big?uploads")
    assert status == 501 and b"uploads" in data
    status, _, data = request(port, "GET", "/default/k",
                              headers={"Authorization": "AWS4-HMAC-SHA256 Credential=x"})
    assert status == 501 and b"SigV4" in data
    status, _, data = request(port, "GET", "/nobucket/k")
    assert status == 404 and b"<Code>NoSuchBucket</Code>" in data
    assert request(port, "HEAD", "/photos")[0] == 200  # HeadBucket


def test_purge_drops_the_object(port: int) -> None:
    assert request(port, "PUT", "/default/purged", b"x" * 10)[0] == 200
    assert request(port, "PURGE", "/default/purged")[0] == 200
    assert request(port, "GET", "/default/purged")[0] == 404
    assert request(port, "PURGE", "/default/purged")[0] == 404


def test_a_put_over_the_limit_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    srv, port = start_objects(objects_config(tmp_path, max_object_size="100KiB"))
    try:
        assert request(port, "PUT", "/default/k", b"small")[0] == 200
        status, _, data = request(port, "PUT", "/default/k", b"x" * 200_000)
        assert status == 413 and b"EntityTooLarge" in data
        # Chunked: the size is only known as it arrives.
        body = b"".join(b"%x\r\n%s\r\n" % (50_000, b"y" * 50_000) for _ in range(3))
        reply = raw(port, b"PUT /default/k HTTP/1.1\r\nHost: x\r\n"
                          b"Transfer-Encoding: chunked\r\n\r\n" + body + b"0\r\n\r\n")
        assert statuses(reply) == [413], reply[:300]
        assert request(port, "GET", "/default/k")[2] == b"small"
    finally:
        srv.terminate()
