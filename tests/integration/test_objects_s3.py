"""S3 clients against the objects listener: boto3 and Debian's AWS CLI with unsigned,
path-style requests (put, get with ranges, head, delete; errors as S3's codes), the
aws-chunked uploads with a trailing checksum that S3 SDKs send, and what is refused."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .helpers.objects import objects_config, raw, request, start_objects, statuses
from .helpers.procs import Server

AWS_CLI = "/usr/bin/aws"  # Debian's awscli (make deps installs it)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, int]]:
    work = tmp_path_factory.mktemp("objects-s3")
    srv, port = start_objects(objects_config(work, chunk_size="256KiB"))
    try:
        yield srv, port
    finally:
        srv.terminate()


@pytest.fixture
def s3(served: tuple[Server, int]) -> Any:
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=f"http://127.0.0.1:{served[1]}",
                        region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x",
                        config=Config(signature_version=UNSIGNED, retries={"max_attempts": 1},
                                      s3={"addressing_style": "path"}))


def code(exc: Exception) -> str:
    return exc.response["Error"]["Code"]  # type: ignore[attr-defined]


def test_boto3_put_get_range_head_delete(s3: Any) -> None:
    body = os.urandom(1_500_000)
    put = s3.put_object(Bucket="default", Key="a/b c+d.bin", Body=body, ContentType="app/x",
                        Metadata={"owner": "alice"}, CacheControl="max-age=60")
    assert put["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
    got = s3.get_object(Bucket="default", Key="a/b c+d.bin")
    assert got["Body"].read() == body
    assert (got["ContentType"], got["Metadata"], got["CacheControl"]) == (
        "app/x", {"owner": "alice"}, "max-age=60")
    part = s3.get_object(Bucket="default", Key="a/b c+d.bin", Range="bytes=262140-262150")
    assert part["Body"].read() == body[262140:262151]
    assert part["ContentRange"] == f"bytes 262140-262150/{len(body)}"
    assert s3.head_object(Bucket="default", Key="a/b c+d.bin")["ContentLength"] == len(body)
    s3.delete_object(Bucket="default", Key="a/b c+d.bin")
    with pytest.raises(Exception) as info:
        s3.get_object(Bucket="default", Key="a/b c+d.bin")
    assert code(info.value) == "NoSuchKey"


def test_boto3_errors_are_s3_codes(s3: Any) -> None:
    with pytest.raises(Exception) as info:
        s3.get_object(Bucket="nosuchbucket", Key="k")
    assert code(info.value) == "NoSuchBucket"
    with pytest.raises(Exception) as info:
        s3.list_objects_v2(Bucket="default")
    assert code(info.value) == "NotImplemented"
    with pytest.raises(Exception) as info:
        s3.create_multipart_upload(Bucket="default", Key="big")
    assert code(info.value) == "NotImplemented"
    s3.put_object(Bucket="default", Key="cond", Body=b"v1")
    etag = s3.head_object(Bucket="default", Key="cond")["ETag"]
    with pytest.raises(Exception) as info:
        s3.get_object(Bucket="default", Key="cond", IfMatch='"nope"')
    assert code(info.value) in ("PreconditionFailed", "412")
    assert s3.get_object(Bucket="default", Key="cond", IfMatch=etag)["Body"].read() == b"v1"


def test_boto3_sends_a_checksum_that_is_verified(s3: Any, served: tuple[Server, int]) -> None:
    sent: dict[str, str] = {}
    s3.meta.events.register("before-send.s3.PutObject",
                            lambda request, **_: sent.update(request.headers))
    s3.put_object(Bucket="default", Key="sum", Body=b"checked" * 1000)
    assert "x-amz-checksum-crc32" in {k.lower() for k in sent}, sent
    # The same checksum on other bytes: refused, the stored object unchanged.
    crc = next(v for k, v in sent.items() if k.lower() == "x-amz-checksum-crc32")
    crc = crc.decode() if isinstance(crc, bytes) else crc
    status, _, data = request(served[1], "PUT", "/default/sum", b"tampered",
                              headers={"x-amz-checksum-crc32": crc})
    assert status == 400 and b"BadDigest" in data
    assert s3.get_object(Bucket="default", Key="sum")["Body"].read() == b"checked" * 1000


def _aws_chunked(data: bytes, checksum: str, piece: int = 65536) -> bytes:
    body = b"".join(b"%x\r\n%s\r\n" % (len(data[i:i + piece]), data[i:i + piece])
                    for i in range(0, len(data), piece))
    return body + b"0\r\nx-amz-checksum-crc32:" + checksum.encode() + b"\r\n\r\n"


def test_aws_chunked_upload_with_a_trailing_checksum(served: tuple[Server, int]) -> None:
    """What an S3 SDK sends for a streaming unsigned upload: the body framed in
    aws-chunked inside Content-Length, the CRC32 in the trailer."""
    port = served[1]
    data = os.urandom(700_000)
    crc = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    body = _aws_chunked(data, crc)
    head = (b"PUT /default/streamed HTTP/1.1\r\nHost: x\r\nContent-Encoding: aws-chunked\r\n"
            b"x-amz-content-sha256: STREAMING-UNSIGNED-PAYLOAD-TRAILER\r\n"
            b"x-amz-decoded-content-length: %d\r\nx-amz-trailer: x-amz-checksum-crc32\r\n"
            b"Content-Length: %d\r\n\r\n" % (len(data), len(body)))
    assert statuses(raw(port, head + body)) == [200]
    status, h, got = request(port, "GET", "/default/streamed")
    assert got == data and h["etag"] == f'"{hashlib.md5(data).hexdigest()}"'
    assert "aws-chunked" not in h.get("content-encoding", "")
    # A wrong trailer checksum: 400, and the object stays as it was.
    bad = _aws_chunked(b"y" * len(data), crc)
    reply = raw(port, head + bad)
    assert statuses(reply) == [400] and b"BadDigest" in reply
    assert request(port, "GET", "/default/streamed")[2] == data


def aws(*args: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, AWS_EC2_METADATA_DISABLED="true", AWS_CONFIG_FILE=str(tmp / "cfg"),
               AWS_SHARED_CREDENTIALS_FILE=str(tmp / "creds"), HOME=str(tmp))
    return subprocess.run([AWS_CLI, *args], capture_output=True, text=True, timeout=120,
                          env=env, check=False)


def cli_endpoint(port: int) -> list[str]:
    """The AWS CLI's arguments for the appliance: unsigned, path-style, one region."""
    return ["--no-sign-request", "--endpoint-url", f"http://127.0.0.1:{port}",
            "--region", "us-east-1"]


def random_file(path: Path, size: int) -> tuple[Path, bytes]:
    data = os.urandom(size)
    path.write_bytes(data)
    return path, data


def cp_both_ways(src: Path, data: bytes, url: str, endpoint: list[str], tmp: Path) -> None:
    """`aws s3 cp` of src up to url and back down: the same bytes."""
    up = aws("s3", "cp", str(src), url, *endpoint, tmp=tmp)
    assert up.returncode == 0, up.stderr
    dst = src.with_suffix(".down")
    down = aws("s3", "cp", url, str(dst), *endpoint, tmp=tmp)
    assert down.returncode == 0, down.stderr
    assert dst.read_bytes() == data


def test_aws_cli_cp_both_ways_and_get_object_range(served: tuple[Server, int],
                                                  tmp_path: Path) -> None:
    assert os.path.exists(AWS_CLI), "Debian's awscli is missing; `make deps` installs it"
    endpoint = cli_endpoint(served[1])
    src, data = random_file(tmp_path / "up.bin", 3_000_000)
    cp_both_ways(src, data, "s3://photos/cli/up.bin", endpoint, tmp_path)
    part = tmp_path / "part.bin"
    got = aws("s3api", "get-object", "--bucket", "photos", "--key", "cli/up.bin",
              "--range", "bytes=100-199", str(part), *endpoint, tmp=tmp_path)
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["ContentRange"] == f"bytes 100-199/{len(data)}"
    assert part.read_bytes() == data[100:200]
    rm = aws("s3", "rm", "s3://photos/cli/up.bin", *endpoint, tmp=tmp_path)
    assert rm.returncode == 0, rm.stderr
    assert request(served[1], "GET", "/photos/cli/up.bin")[0] == 404


def test_aws_cli_cp_of_a_large_file_says_how_and_then_works(served: tuple[Server, int],
                                                            tmp_path: Path) -> None:
    """`aws s3 cp` goes multipart above 8 MB, which is not served: the refusal says how to
    keep it to one PUT, and with the README's multipart_threshold the copy goes both ways
    (the download is the CLI's parallel ranged GETs)."""
    endpoint = cli_endpoint(served[1])
    src, data = random_file(tmp_path / "large.bin", 20_000_000)
    refused = aws("s3", "cp", str(src), "s3://photos/cli/large.bin", *endpoint, tmp=tmp_path)
    assert refused.returncode != 0
    assert "multipart_threshold 5GB" in refused.stderr, refused.stderr
    setting = aws("configure", "set", "default.s3.multipart_threshold", "5GB", tmp=tmp_path)
    assert setting.returncode == 0, setting.stderr
    cp_both_ways(src, data, "s3://photos/cli/large.bin", endpoint, tmp_path)
