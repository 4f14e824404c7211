"""libmemcached-tools' memccapable, ASCII tests only, must pass every test."""

from __future__ import annotations

import re
import subprocess

import pytest

from .helpers.procs import Server
from .helpers.servers import SERVER_KINDS, server_of

MEMCCAPABLE = "/usr/bin/memccapable"
RESULT_RE = re.compile(r"^(ascii [\w ]+?)\s+\[(\w+)\]", re.M)


@pytest.fixture(params=SERVER_KINDS)
def server(request: pytest.FixtureRequest) -> Server:
    return server_of(request)


def test_memccapable_ascii(server: Server) -> None:
    # memccapable writes test names to stdout and failures to stderr: one
    # unbuffered stream keeps each verdict on its test's line.
    proc = subprocess.run(
        ["stdbuf", "-o0", "-e0", MEMCCAPABLE, "-h", server.host, "-p", str(server.port),
         "-a", "-t", "10"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120, check=False)
    out = proc.stdout
    results = dict(RESULT_RE.findall(out))
    assert len(results) >= 25, f"memccapable ran too few tests:\n{out}"
    failed = {name: verdict for name, verdict in results.items() if verdict != "pass"}
    assert not failed, f"memccapable failures {failed}:\n{out}"
    assert "All tests passed" in out, out
    assert proc.returncode == 0, f"memccapable exited {proc.returncode}:\n{out}"
