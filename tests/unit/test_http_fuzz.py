"""A seeded mutation fuzzer over the http plane, under AddressSanitizer and UBSan.

The plane's sources (dataplane/src/http/*.c) are compiled together with the driver
tests/fuzz/ss_http_fuzz.c, with -fsanitize=address,undefined and no recovery, and run on
the seed corpus below (valid requests, chunked and aws-chunked bodies, ranges, dates,
entity-tag lists, Cache-Control values) with random mutations. Beside "no sanitizer
report" the driver checks, per input: bytes consumed <= bytes given; every slice and data
span inside the buffer it came from; parse(every prefix) is 0 or parse(whole), and the
same head once the head is in; the chunked decoder gives the same data, result, consumed
count and trailers whether the body is fed whole or cut in pieces; ranges satisfy
first <= last < size; dates survive format/parse round trips.

The run is deterministic for a seed and bounded by a count and a time (a few seconds
here). A failure names the seed and iteration and leaves the input in crash-*.bin in the
test's temporary directory. A longer run is one command:

    SS_HTTP_FUZZ_ITERATIONS=5000000 SS_HTTP_FUZZ_SECONDS=600 SS_HTTP_FUZZ_SEED=7 \\
        .venv/bin/python -m pytest tests/unit/test_http_fuzz.py -q -s

(-s shows the driver's closing line: iterations run, seconds, inputs per target.)
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HTTP_SRC = REPO / "dataplane" / "src" / "http"
DRIVER = REPO / "tests" / "fuzz" / "ss_http_fuzz.c"

SEED = int(os.environ.get("SS_HTTP_FUZZ_SEED", "1"))
ITERATIONS = int(os.environ.get("SS_HTTP_FUZZ_ITERATIONS", "60000"))
SECONDS = float(os.environ.get("SS_HTTP_FUZZ_SECONDS", "8"))

SIG = b"ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648"
CORPUS: dict[str, bytes] = {
    "head-get": b"GET /bucket/key?versionId=3 HTTP/1.1\r\nHost: store.example\r\n"
                b"Range: bytes=0-99\r\nIf-None-Match: \"a\", W/\"b\"\r\n\r\n",
    "head-put": b"PUT /b/k HTTP/1.1\r\nHost: h:8080\r\nContent-Length: 11\r\n"
                b"Expect: 100-continue\r\nContent-Type: text/plain\r\n\r\nhello world",
    "head-chunked": b"PUT /b/k HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
                    b"Content-Encoding: aws-chunked\r\nx-amz-decoded-content-length: 5\r\n"
                    b"x-amz-trailer: x-amz-checksum-crc32\r\n\r\n",
    "head-absolute": b"\r\nGET http://h.example/b/k?x HTTP/1.1\r\nHost: h.example\r\n"
                     b"Connection: keep-alive, close\r\n\r\n",
    "head-http10": b"HEAD /b/k HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    "head-options": b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
    "head-purge": b"PURGE /b/k HTTP/1.1\r\nHost: [::1]:80\r\nCache-Control: no-cache\r\n"
                  b"If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n"
                  b"DELETE /b/k HTTP/1.1\r\nHost: h\r\n\r\n",
    "chunked-simple": b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    "chunked-ext": b'a;name=value;q="x;\\"y"\r\n0123456789\r\n0;last\r\n\r\n',
    "chunked-trailer": b"3\r\nabc\r\n0\r\nx-amz-checksum-crc32: NhCmhg==\r\n"
                       b"x-amz-trailer-signature: ff00\r\n\r\n",
    "chunked-aws": b"4;chunk-signature=" + SIG + b"\r\nwxyz\r\n0;chunk-signature=" + SIG
                   + b"\r\n\r\n",
    "chunked-hex": b"00000000000000A\r\n0123456789\r\nF\r\n0123456789abcde\r\n0\r\n\r\n",
    "range-first-last": b"bytes=0-499",
    "range-open": b"bytes=500-",
    "range-suffix": b"bytes=-200",
    "range-multi": b"bytes=0-1,5-6",
    "date-imf": b"Sun, 06 Nov 1994 08:49:37 GMT",
    "date-rfc850": b"Sunday, 06-Nov-94 08:49:37 GMT",
    "date-asctime": b"Sun Nov  6 08:49:37 1994",
    "etag-list": b'"a", W/"b", "c,d"\nW/"b"',
    "etag-star": b'*\n"a"',
    "cc-response": b'max-age=60, s-maxage="120", no-cache="Set-Cookie", public',
    "cc-stale": b"stale-while-revalidate=30, stale-if-error=99999999999, must-revalidate",
}

SANITIZER_ENV = {
    "ASAN_OPTIONS": "halt_on_error=1:abort_on_error=0:detect_leaks=1:exitcode=86",
    "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1:exitcode=87",
}


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The driver and the plane compiled with ASan and UBSan."""
    cc = shutil.which(os.environ.get("CC", "gcc")) or shutil.which("gcc")
    assert cc, "no C compiler: `make deps` installs build-essential"
    out = tmp_path_factory.mktemp("http-fuzz") / "ss_http_fuzz"
    cmd = [cc, "-std=gnu11", "-O1", "-g", "-fsanitize=address,undefined",
           "-fno-sanitize-recover=all", "-fno-omit-frame-pointer", "-Wall", "-Wextra",
           "-Wno-unused-parameter", "-Werror",
           "-I", str(REPO / "dataplane" / "include"), "-I", str(REPO / "dataplane" / "src"),
           *sorted(str(p) for p in HTTP_SRC.glob("*.c")), str(DRIVER), "-o", str(out)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, f"compiling the fuzz driver failed:\n{run.stderr}"
    return out


def _env() -> dict[str, str]:
    return {**os.environ, **SANITIZER_ENV}


def test_the_driver_is_built_with_the_sanitizer(driver: Path) -> None:
    """A read past a heap block must be reported, or a clean run below proves nothing."""
    run = subprocess.run([str(driver), "--selftest"], capture_output=True, text=True,
                         env=_env(), timeout=60)
    assert run.returncode == 86
    assert "AddressSanitizer: heap-buffer-overflow" in run.stderr


def test_fuzz_the_http_plane(driver: Path, tmp_path: Path) -> None:
    corpus = []
    for name, data in CORPUS.items():
        path = tmp_path / name
        path.write_bytes(data)
        corpus.append(str(path))
    run = subprocess.run([str(driver), str(SEED), str(ITERATIONS), str(SECONDS), *corpus],
                         capture_output=True, text=True, env=_env(), cwd=tmp_path,
                         timeout=SECONDS + 120)
    report = (f"seed {SEED} (rerun: SS_HTTP_FUZZ_SEED={SEED} SS_HTTP_FUZZ_ITERATIONS="
              f"{ITERATIONS} .venv/bin/python -m pytest {Path(__file__).relative_to(REPO)})\n"
              f"exit {run.returncode}\n{run.stderr[-6000:]}")
    assert run.returncode == 0, report
    assert "runtime error" not in run.stderr and "Sanitizer" not in run.stderr, report
    print(run.stdout.strip())
    done = re.search(r"iterations=(\d+)", run.stdout)
    assert done, f"the driver did not report its iterations: {run.stdout!r}"
    # The time bound may cut the run short on a loaded machine, but not to nothing.
    assert int(done.group(1)) >= min(ITERATIONS, 2000), run.stdout
    counts = dict(re.findall(r"(\w+)=(\d+)", run.stdout))
    for kind in ("head", "chunked", "range", "date", "etag", "cc"):
        assert int(counts.get(kind, 0)) > 0, f"no {kind} inputs were fuzzed: {run.stdout}"
