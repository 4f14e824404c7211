"""Cached buckets (kind: http) in front of a real nginx origin: a miss is fetched once
and then served from the appliance's store, 100 concurrent misses make one origin
fetch, a stale copy is revalidated (304 in nginx's log), what may not be stored is
not, and an origin that is down or hung gives 502/504, or the stale copy when its
Cache-Control allows it."""

from __future__ import annotations

import concurrent.futures
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .helpers.objects import objects_config, request, start_objects
from .helpers.origin import Origin, PausingOrigin, SilentOrigin
from .helpers.procs import Server


def start(tmp_path: Path, origin_url: str, **bucket: object) -> tuple[Server, int]:
    spec = {"name": "web", "kind": "http", "origin": origin_url, "origin_timeout": "2s",
            **bucket}
    return start_objects(objects_config(tmp_path, buckets=("default", spec)))


@pytest.fixture
def origin(tmp_path: Path) -> Iterator[Origin]:
    o = Origin(tmp_path / "origin")
    try:
        yield o
    finally:
        o.stop()


def test_a_miss_is_fetched_once_then_served_from_the_store(tmp_path: Path,
                                                          origin: Origin) -> None:
    body = os.urandom(2_500_000)  # several chunks: streamed while stored
    (origin.www / "big.bin").write_bytes(body)
    srv, port = start(tmp_path, origin.url)
    try:
        status, h, got = request(port, "GET", "/web/big.bin")
        assert (status, got) == (200, body)
        assert h["etag"].startswith('"') and "age" in h
        for _ in range(3):
            assert request(port, "GET", "/web/big.bin")[2] == body
        status, h, got = request(port, "GET", "/web/big.bin", headers={"Range": "bytes=10-19"})
        assert (status, got) == (206, body[10:20])
        assert request(port, "GET", "/web/big.bin", headers={"If-None-Match": h["etag"]}
                       )[0] == 304
        assert len(origin.fetches("big.bin")) == 1, origin.log.read_text()
        status, _, data = request(port, "GET", "/web/nothing-here")
        assert status == 404 and b"NoSuchKey" in data
    finally:
        srv.terminate()


def test_100_concurrent_misses_make_one_origin_fetch(tmp_path: Path, origin: Origin) -> None:
    body = os.urandom(3_000_000)
    (origin.www / "hot.bin").write_bytes(body)
    srv, port = start(tmp_path, origin.url)
    try:
        with concurrent.futures.ThreadPoolExecutor(100) as pool:
            results = list(pool.map(lambda _: request(port, "GET", "/web/hot.bin"), range(100)))
        assert all(r[0] == 200 and r[2] == body for r in results)
        assert len(origin.fetches("hot.bin")) == 1, origin.log.read_text()
    finally:
        srv.terminate()


def test_a_stale_copy_is_revalidated(tmp_path: Path) -> None:
    o = Origin(tmp_path / "origin", cache_control="max-age=1")
    (o.www / "page.html").write_bytes(b"<p>v1</p>")
    srv, port = start(tmp_path, o.url)
    try:
        assert request(port, "GET", "/web/page.html")[2] == b"<p>v1</p>"
        time.sleep(1.5)
        assert request(port, "GET", "/web/page.html")[2] == b"<p>v1</p>"
        lines = o.wait_fetches("page.html", 2)
        assert len(lines) == 2 and '" 304 ' in lines[1], lines
        # Changed at the origin: the next revalidation brings the new copy.
        time.sleep(1.5)
        (o.www / "page.html").write_bytes(b"<p>version two</p>")
        assert request(port, "GET", "/web/page.html")[2] == b"<p>version two</p>"
    finally:
        srv.terminate()
        o.stop()


def test_no_store_answers_are_not_kept(tmp_path: Path) -> None:
    o = Origin(tmp_path / "origin", cache_control="no-store")
    (o.www / "private.txt").write_bytes(b"secret")
    srv, port = start(tmp_path, o.url)
    try:
        for _ in range(2):
            assert request(port, "GET", "/web/private.txt")[2] == b"secret"
        assert len(o.fetches("private.txt")) == 2
    finally:
        srv.terminate()
        o.stop()


def test_origin_down_or_hung(tmp_path: Path) -> None:
    o = Origin(tmp_path / "origin", cache_control="max-age=1, stale-if-error=60")
    (o.www / "kept.txt").write_bytes(b"kept")
    srv, port = start(tmp_path, o.url)
    try:
        assert request(port, "GET", "/web/kept.txt")[2] == b"kept"
        o.stop()
        status, _, data = request(port, "GET", "/web/never-fetched")
        assert status == 502 and b"BadGateway" in data
        time.sleep(1.5)  # stale now; stale-if-error lets it be served
        status, _, got = request(port, "GET", "/web/kept.txt")
        assert (status, got) == (200, b"kept")
    finally:
        srv.terminate()
    hung = SilentOrigin()
    (tmp_path / "hung").mkdir()
    srv, port = start(tmp_path / "hung", hung.url, origin_timeout="1s")
    try:
        t0 = time.monotonic()
        status, _, data = request(port, "GET", "/web/anything")
        assert status == 504 and b"GatewayTimeout" in data
        assert time.monotonic() - t0 < 5  # the timeout, not a hang
        assert request(port, "GET", "/default/x")[0] == 404  # the server serves others
    finally:
        srv.terminate()
        hung.close()


def test_writes_go_through_to_the_origin_first(tmp_path: Path) -> None:
    o = Origin(tmp_path / "origin", dav=True)
    srv, port = start(tmp_path, o.url)
    try:
        body = os.urandom(1_300_000)
        status, h, _ = request(port, "PUT", "/web/up/new.bin", body,
                               headers={"Content-Type": "application/x-test"})
        assert status == 200 and h["etag"]
        assert (o.www / "up" / "new.bin").read_bytes() == body  # at the origin first
        assert request(port, "GET", "/web/up/new.bin")[2] == body
        assert o.fetches("up/new.bin") == []  # the local copy answered
        assert request(port, "DELETE", "/web/up/new.bin")[0] == 204
        assert not (o.www / "up" / "new.bin").exists()
        assert request(port, "GET", "/web/up/new.bin")[0] == 404
    finally:
        srv.terminate()
        o.stop()


def test_a_write_the_origin_refuses_changes_nothing(tmp_path: Path, origin: Origin) -> None:
    (origin.www / "k").write_bytes(b"original")
    srv, port = start(tmp_path, origin.url)  # no WebDAV: nginx answers PUT with 405
    try:
        assert request(port, "GET", "/web/k")[2] == b"original"
        status, _, data = request(port, "PUT", "/web/k", b"replacement")
        assert status == 405 and b"nothing was changed" in data
        assert request(port, "GET", "/web/k")[2] == b"original"
        assert (origin.www / "k").read_bytes() == b"original"
    finally:
        srv.terminate()


def test_an_s3_bucket_caches_an_s3_compatible_endpoint(tmp_path: Path) -> None:
    from .helpers.origin import S3Origin

    s3 = S3Origin(tmp_path)
    srv, port = start(tmp_path, s3.url, kind="s3", origin_bucket=s3.bucket)
    try:
        body = os.urandom(700_000)
        s3.client().put_object(Bucket=s3.bucket, Key="dir/obj.bin", Body=body,
                               ContentType="image/webp", Metadata={"who": "origin"})
        status, h, got = request(port, "GET", "/web/dir/obj.bin")
        assert (status, got) == (200, body)
        assert h["content-type"] == "image/webp" and h["x-amz-meta-who"] == "origin"
        assert request(port, "GET", "/web/dir/obj.bin")[2] == body
        status, _, data = request(port, "GET", "/web/dir/missing")
        assert status == 404 and b"NoSuchKey" in data
        # Written through: in the endpoint's bucket, then served here.
        assert request(port, "PUT", "/web/dir/put.txt", b"through")[0] == 200
        got = s3.client().get_object(Bucket=s3.bucket, Key="dir/put.txt")["Body"].read()
        assert got == b"through"
        assert request(port, "DELETE", "/web/dir/put.txt")[0] == 204
        keys = s3.client().list_objects_v2(Bucket=s3.bucket).get("Contents", [])
        assert [k["Key"] for k in keys] == ["dir/obj.bin"]
    finally:
        srv.terminate()
        s3.stop()


def test_an_s3_bucket_signs_its_requests_to_a_private_endpoint(tmp_path: Path) -> None:
    """With origin_credentials every request to the endpoint is signed (AWS Signature
    Version 4), so a private bucket is fetched from, written through (its x-amz-meta-*
    fields signed too, keys with characters a path must encode) and deleted from. moto
    checks each signature: unsigned, or signed with a wrong secret, the endpoint refuses
    the request, and the appliance relays the refusal without keeping anything."""
    from .helpers.origin import S3Origin

    s3 = S3Origin(tmp_path, private=True)
    secret = tmp_path / "s3.secret"
    secret.write_text(s3.secret + "\n")
    secret.chmod(0o600)
    wrong = tmp_path / "wrong.secret"
    wrong.write_text("not-the-secret\n")
    endpoint = {"kind": "s3", "origin": s3.url, "origin_bucket": s3.bucket,
                "origin_timeout": "5s"}
    signed = {"access_key_id": s3.key_id, "secret_access_key_file": str(secret)}
    buckets = ("default",
               {"name": "web", **endpoint, "origin_credentials": signed},
               {"name": "anon", **endpoint},
               {"name": "badkey", **endpoint,
                "origin_credentials": {**signed, "secret_access_key_file": str(wrong)}})
    srv, port = start_objects(objects_config(tmp_path, buckets=buckets))
    try:
        body = os.urandom(300_000)
        key = "dir/a b+c=d(1)!.bin"
        s3.client().put_object(Bucket=s3.bucket, Key=key, Body=body, ContentType="image/png",
                               Metadata={"who": "origin"})
        quoted = "/web/dir/a%20b%2Bc%3Dd%281%29%21.bin"
        status, h, got = request(port, "GET", quoted)
        assert (status, got) == (200, body), got[:300]
        assert h["x-amz-meta-who"] == "origin"
        for name in ("anon", "badkey"):
            status, _, data = request(port, "GET", quoted.replace("/web/", f"/{name}/"))
            assert status == 403, (name, status, data[:300])
        # A write through with metadata (x-amz-meta-* must be in the signature).
        status, _, data = request(port, "PUT", "/web/dir/put.txt", b"through",
                                  headers={"x-amz-meta-colour": "blue",
                                           "Content-Type": "text/plain"})
        assert status == 200, data[:300]
        head = s3.client().head_object(Bucket=s3.bucket, Key="dir/put.txt")
        assert head["Metadata"] == {"colour": "blue"}
        assert s3.client().get_object(Bucket=s3.bucket, Key="dir/put.txt")["Body"].read() \
            == b"through"
        assert request(port, "PUT", "/badkey/dir/refused.txt", b"x")[0] == 403
        assert request(port, "DELETE", "/web/dir/put.txt")[0] == 204
        keys = s3.client().list_objects_v2(Bucket=s3.bucket).get("Contents", [])
        assert [k["Key"] for k in keys] == [key]
        log = srv.log()
        assert s3.secret not in log
    finally:
        srv.terminate()
        s3.stop()


def test_an_https_origin_is_fetched_over_verified_tls(tmp_path: Path) -> None:
    """An https origin (nginx with a certificate from a CA of the test's own): fetched,
    ranged and written through over TLS when origin_ca_file names that CA; refused (502)
    by a bucket that trusts only the system's store, or another CA, so an origin whose
    certificate does not check out is never cached."""
    from .helpers.origin import make_ca

    origin = Origin(tmp_path / "origin", dav=True, tls=True)
    other_ca, _ = make_ca(tmp_path, "other-ca")
    base = {"kind": "http", "origin": origin.url, "origin_timeout": "5s"}
    buckets = ("default", {"name": "web", **base, "origin_ca_file": str(origin.ca_file)},
               {"name": "system", **base},
               {"name": "wrongca", **base, "origin_ca_file": str(other_ca)})
    srv, port = start_objects(objects_config(tmp_path, buckets=buckets))
    try:
        body = os.urandom(2_500_000)
        (origin.www / "big.bin").write_bytes(body)
        status, _, got = request(port, "GET", "/web/big.bin")
        assert (status, got) == (200, body)
        status, _, got = request(port, "GET", "/web/big.bin", headers={"Range": "bytes=5-9"})
        assert (status, got) == (206, body[5:10])
        assert len(origin.fetches("big.bin")) == 1
        (origin.www / "other.bin").write_bytes(b"x" * 70_000)
        status, _, got = request(port, "GET", "/web/other.bin")  # a kept-alive TLS session
        assert (status, got) == (200, b"x" * 70_000)
        assert request(port, "PUT", "/web/up.txt", b"over tls")[0] == 200
        assert (origin.www / "up.txt").read_bytes() == b"over tls"
        for name in ("system", "wrongca"):
            status, _, data = request(port, "GET", f"/{name}/big.bin")
            assert status == 502, (name, status, data[:200])
        assert len(origin.fetches("big.bin")) == 1  # the handshakes failed: no request
    finally:
        srv.terminate()
        origin.stop()


def test_a_copy_whose_chunks_were_evicted_is_fetched_again(tmp_path: Path,
                                                           origin: Origin) -> None:
    """Cached copies are evicted oldest first, chunks before their metadata: a copy
    that lost its chunks is a miss again, never a 200 without its body."""
    bodies = {f"e{i}.bin": os.urandom(512 * 1024) for i in range(16)}
    for name, body in bodies.items():
        (origin.www / name).write_bytes(body)
    (origin.www / "churn").mkdir()
    for i in range(150):
        (origin.www / "churn" / f"{i}.bin").write_bytes(os.urandom(512 * 1024))
    spec = {"name": "web", "kind": "http", "origin": origin.url, "default_ttl": "3600s"}
    srv, port = start_objects(objects_config(tmp_path, objects_size="48MiB",
                                             chunk_size="256KiB",
                                             buckets=("default", spec)))
    try:
        for name, body in bodies.items():
            assert request(port, "GET", f"/web/{name}")[2] == body
        for i in range(150):  # 75 MiB of other misses through a 48 MiB pool
            assert request(port, "GET", f"/web/churn/{i}.bin")[0] == 200
        for name, body in bodies.items():
            status, _, got = request(port, "GET", f"/web/{name}")
            assert (status, got) == (200, body), name
        assert len(origin.fetches("e0.bin")) == 2  # fetched again, once
    finally:
        srv.terminate()


def test_a_copy_goes_to_flash_on_its_second_request(tmp_path: Path, origin: Origin) -> None:
    """flash_admission: second_request (the default): a small object requested once
    lives in DRAM only, so a restart forgets it (fetched again); once requested a
    second time it is on flash and outlives a restart. Large objects, and every
    object of a `miss` bucket, are on flash from their first request."""
    small = {f"s{i}.bin": os.urandom(20_000 + i) for i in range(3)}  # under 64MiB/256
    large = os.urandom(300_000)
    for name, body in {**small, "large.bin": large}.items():
        (origin.www / name).write_bytes(body)
    buckets = ("default", {"name": "web", "kind": "http", "origin": origin.url,
                           "default_ttl": "3600s"},
               {"name": "eager", "kind": "http", "origin": origin.url,
                "default_ttl": "3600s", "flash_admission": "miss"})
    config = objects_config(tmp_path, buckets=buckets)

    def get(port: int, path: str, body: bytes) -> None:
        status, _, got = request(port, "GET", path)
        assert (status, got) == (200, body), path

    srv, port = start_objects(config)
    try:
        for name, body in small.items():
            get(port, f"/web/{name}", body)
        get(port, "/web/s1.bin", small["s1.bin"])  # s1 only: a second request
        get(port, "/web/large.bin", large)
        get(port, "/eager/s2.bin", small["s2.bin"])
    finally:
        assert srv.terminate() == 0
    fetched = {name: len(origin.fetches(name)) for name in (*small, "large.bin")}
    assert fetched == {"s0.bin": 1, "s1.bin": 1, "s2.bin": 2, "large.bin": 1}, fetched
    srv, port = start_objects(config)
    try:
        for name, body in small.items():
            get(port, f"/web/{name}", body)
        get(port, "/web/large.bin", large)
        get(port, "/eager/s2.bin", small["s2.bin"])
    finally:
        srv.terminate()
    refetched = {name: len(origin.fetches(name)) - n for name, n in fetched.items()}
    # s0 and web's s2 were requested once (DRAM only): fetched again; s1 was admitted
    # to flash by its second request, large.bin on its miss, eager's s2 on its miss.
    assert refetched == {"s0.bin": 1, "s1.bin": 0, "s2.bin": 1, "large.bin": 0}, refetched


CHURN = 3000


def test_a_slow_reader_of_a_dram_only_copy_gets_its_whole_body(tmp_path: Path,
                                                             origin: Origin) -> None:
    """A copy kept in DRAM only has no other copy: a client that reads its miss slowly
    while other misses churn the whole DRAM tier still gets every byte (the reply
    holds the chunks it queued), and the evicted copy is then only a miss."""
    body = os.urandom(40_000)  # under 16MiB/256: kept in DRAM only; sent by reference
    (origin.www / "slow.bin").write_bytes(body)
    (origin.www / "churn").mkdir()
    # Each DRAM-tier stripe evicts its own least recent items, so the churn
    # must still reach this copy's stripe once the 16 MiB tier is full: 120 MB
    # of misses put about 10 items in each of 256 stripes after that (with
    # 600, about 1, and 1 run in 5 kept the copy; with 2000, about 6, and 1
    # run in 30 kept it with the CPUs busy).
    for i in range(CHURN):
        (origin.www / "churn" / f"{i}.bin").write_bytes(os.urandom(40_000))
    spec = {"name": "web", "kind": "http", "origin": origin.url, "default_ttl": "3600s"}
    srv, port = start_objects(objects_config(tmp_path, hot_tier="16MiB",
                                             buckets=("default", spec)))
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.sendall(b"GET /web/slow.bin HTTP/1.1\r\nHost: t\r\n\r\n")
            first = s.recv(100)
            assert first.startswith(b"HTTP/1.1 200"), first
            time.sleep(0.3)  # past the tier's 100 ms guard for DRAM-only items
            for i in range(CHURN):
                assert request(port, "GET", f"/web/churn/{i}.bin")[0] == 200
            data = first
            while len(data) < len(body) + 100:
                got = s.recv(65536)
                if not got:
                    break
                data += got
                if data.endswith(body):
                    break
        assert data.split(b"\r\n\r\n", 1)[1] == body
        assert request(port, "GET", "/web/slow.bin")[2] == body
        # The churn did evict it while the slow reply held it: a miss again.
        assert len(origin.fetches("slow.bin")) == 2, origin.log.read_text()[-2000:]
    finally:
        srv.terminate()


def test_a_late_joiner_gets_a_dram_only_chunk_the_tier_evicted(tmp_path: Path) -> None:
    """A request that joins a fetch after the DRAM tier evicted one of its DRAM-only
    chunks (its only copy) is sent the fill's own hold on it: a whole body, one fetch."""
    size = 65536  # 16MiB/256: kept in DRAM only; two 64 KiB chunks
    origin = PausingOrigin(size, "/slow.bin", pause_after=65_500)  # the first chunk only
    spec = {"name": "web", "kind": "http", "origin": origin.url}
    srv, port = start_objects(objects_config(tmp_path, hot_tier="16MiB", chunk_size="64KiB",
                                             buckets=("default", spec)))
    try:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            first = pool.submit(request, port, "GET", "/web/slow.bin")
            assert origin.paused.wait(10), "the fetch never started"
            time.sleep(0.3)  # the first chunk is stored, and past the tier's 100 ms guard
            for i in range(400):  # 26 MB of other misses through the 16 MiB tier
                assert request(port, "GET", f"/web/churn/{i}.bin")[0] == 200
            late = pool.submit(request, port, "GET", "/web/slow.bin")
            time.sleep(0.3)  # it has joined the fetch
            origin.resume.set()
            body = origin.body("/slow.bin")
            for f in (first, late):
                status, _, got = f.result(timeout=30)
                assert (status, len(got)) == (200, len(body))
                assert got == body
        assert origin.fetches["/slow.bin"] == 1
    finally:
        srv.terminate()
        origin.close()


def test_ranges_heads_and_preconditions_are_answered_while_the_object_is_fetched(
        tmp_path: Path) -> None:
    """A Range, a HEAD or a precondition need only the origin's head (length and ETag):
    each is answered while the body is still arriving, a range with the bytes it covers
    as soon as they are stored, so a few bytes of a large object do not wait for the
    rest. A range past what has arrived waits for those bytes, not for the end."""
    size = 3_000_000
    origin = PausingOrigin(size, "/big.bin", pause_after=1_500_000, etag="v1")
    spec = {"name": "web", "kind": "http", "origin": origin.url, "origin_timeout": "30s"}
    srv, port = start_objects(objects_config(tmp_path, chunk_size="256KiB",
                                             buckets=("default", spec)))
    try:
        body = origin.body("/big.bin")
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            first = pool.submit(request, port, "GET", "/web/big.bin",
                                headers={"Range": "bytes=100-199"})
            assert origin.paused.wait(10), "the fetch never started"
            status, h, got = first.result(timeout=10)
            assert (status, got) == (206, body[100:200])
            assert h["content-range"] == f"bytes 100-199/{size}"
            assert h["etag"] == '"v1"' and h["age"] == "0"
            status, h, got = request(port, "HEAD", "/web/big.bin")
            assert (status, h["content-length"], got) == (200, str(size), b"")
            assert request(port, "GET", "/web/big.bin",
                           headers={"If-None-Match": '"v1"'})[0] == 304
            assert request(port, "GET", "/web/big.bin", headers={"If-Match": '"v0"'})[0] == 412
            assert request(port, "GET", "/web/big.bin",
                           headers={"Range": f"bytes={size}-"})[0] == 416
            status, _, got = request(port, "GET", "/web/big.bin",
                                     headers={"Range": "bytes=1000000-1000099",
                                              "If-Range": '"v1"'})
            assert (status, got) == (206, body[1_000_000:1_000_100])
            tail = pool.submit(request, port, "GET", "/web/big.bin",
                               headers={"Range": "bytes=-100"})
            time.sleep(0.5)
            assert not tail.done(), "a range past the bytes fetched was answered early"
            assert origin.fetches["/big.bin"] == 1
            origin.resume.set()
            status, h, got = tail.result(timeout=30)
            assert (status, got) == (206, body[-100:])
            assert h["content-range"] == f"bytes {size - 100}-{size - 1}/{size}"
        status, _, got = request(port, "GET", "/web/big.bin")
        assert (status, got) == (200, body)
        assert origin.fetches["/big.bin"] == 1
    finally:
        srv.terminate()
        origin.close()
