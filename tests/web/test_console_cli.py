"""The CLI's console subcommands against a real console (they go through /api/v1)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from conftest import TOKEN, Appliance
from integration.helpers.procs import REPO_ROOT

from web.server import ConsoleServer


def cli(*args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SMARTSWITCH_TOKEN"}
    env["PYTHONPATH"] = str(REPO_ROOT)
    if token is not None:
        env["SMARTSWITCH_TOKEN"] = token
    return subprocess.run([sys.executable, "-m", "appliance", *args], capture_output=True,
                          text=True, timeout=60, env=env, check=False)


@pytest.fixture
def proxy_url(proxy_appliance: Appliance) -> Iterator[str]:
    server = ConsoleServer(proxy_appliance.control, proxy_appliance.control.config.console)
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def open_url(open_appliance: Appliance) -> Iterator[str]:
    server = ConsoleServer(open_appliance.control, open_appliance.control.config.console)
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def objects_url(objects_appliance: Appliance) -> Iterator[str]:
    server = ConsoleServer(objects_appliance.control, objects_appliance.control.config.console)
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


def test_objects_lists_shows_and_purges_buckets(objects_url: str,
                                                objects_appliance: Appliance) -> None:
    a = objects_appliance
    for key in ("logs/1", "logs/2", "keep"):
        assert a.http("PUT", f"/default/{key}", b"0123456789")[0] == 200
    assert a.http("GET", "/default/keep")[0] == 200
    assert a.http("GET", "/default/gone")[0] == 404
    r = cli("objects", "--url", objects_url, token=TOKEN)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == f"object requests on http://127.0.0.1:{a.objects_port}/ from pool objects"
    assert lines[1].split() == ["default", "local", "objects=3", "object_bytes=30", "hits=1",
                                "misses=1", "hit_ratio=0.500", "bytes_out=10", "bytes_in=30"]
    assert lines[2].startswith("media ") and "hit_ratio=-" in lines[2]

    r = cli("objects", "default", "--url", objects_url, token=TOKEN)
    assert r.returncode == 0, r.stderr
    shown = dict(line.split(": ", 1) for line in r.stdout.splitlines())
    assert (shown["name"], shown["kind"], shown["objects"], shown["puts"]) == \
        ("default", "local", "3", "3")
    r = cli("objects", "nope", "--url", objects_url, token=TOKEN)
    assert r.returncode == 1
    assert "no bucket named 'nope' (buckets: default, media) (HTTP 404)" in r.stderr

    r = cli("objects", "purge", "default", "--prefix", "logs/", "--url", objects_url,
            token=TOKEN)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "purged 2 objects from bucket default under prefix 'logs/'"
    assert a.http("GET", "/default/logs/1")[0] == 404
    assert a.http("GET", "/default/keep")[0] == 200
    # The whole bucket only with --yes.
    r = cli("objects", "purge", "default", "--url", objects_url, token=TOKEN)
    assert r.returncode == 1 and "pass --yes" in r.stderr
    assert a.http("GET", "/default/keep")[0] == 200
    r = cli("objects", "purge", "default", "--yes", "--url", objects_url, token=TOKEN)
    assert (r.returncode, r.stdout.strip()) == (0, "purged 1 objects from bucket default")
    assert a.http("GET", "/default/keep")[0] == 404
    for args in (("purge",), ("a", "b"), ("default", "--prefix", "x")):
        r = cli("objects", *args, "--url", objects_url, token=TOKEN)
        assert r.returncode == 1 and r.stderr.startswith("smartswitch: "), args


def test_backend_and_key_commands_with_a_token(proxy_url: str,
                                               proxy_appliance: Appliance) -> None:
    r = cli("backend", "drain", "mc2", "--url", proxy_url, token=TOKEN)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("mc2 127.0.0.1:") and r.stdout.rstrip().endswith("draining")
    r = cli("backend", "list", "--url", proxy_url, token=TOKEN)
    assert "mc2" in r.stdout and "draining" in r.stdout
    assert proxy_appliance.control.backend("mc2")["state"] == "draining"
    r = cli("backend", "restore", "mc2", "--url", proxy_url, token=TOKEN)
    assert r.stdout.rstrip().endswith(": up")

    proxy_appliance.mc(b"set cli:key 9 0 3\r\nabc\r\n")
    proxy_appliance.mc(b"get cli:key\r\n", b"END\r\n")  # the read keeps a local copy
    r = cli("key", "get", "cli:key", "--url", proxy_url, token=TOKEN)
    assert r.returncode == 0, r.stderr
    assert "owner: mc" in r.stdout and "size: 3" in r.stdout and "flags: 9" in r.stdout
    r = cli("key", "delete", "cli:key", "--url", proxy_url, token=TOKEN)
    assert (r.returncode, r.stdout.strip()) == (0, "DELETED")

    r = cli("backend", "drain", "nope", "--url", proxy_url, token=TOKEN)
    assert r.returncode == 1 and "no back end named 'nope'" in r.stderr
    r = cli("stats", "--url", proxy_url, token="wrong-token-0000000000000000")
    assert r.returncode == 1 and "invalid API token (HTTP 401)" in r.stderr
    r = cli("stats", "--url", proxy_url)
    assert r.returncode == 1 and "HTTP 401" in r.stderr


def test_without_auth_the_cli_uses_a_session_and_csrf(open_url: str,
                                                      open_appliance: Appliance) -> None:
    open_appliance.mc(b"set gone 0 0 1\r\nx\r\n")
    r = cli("flush", "--url", open_url)
    assert r.returncode == 1 and "--yes" in r.stderr
    r = cli("flush", "--yes", "--url", open_url)
    assert r.returncode == 0, r.stderr
    assert open_appliance.mc(b"get gone\r\n") == b"END\r\n"
    r = cli("events", "--url", open_url)
    assert "operator: flushed the local store" in r.stdout
    r = cli("objects", "--url", open_url)
    assert r.returncode == 0 and r.stdout.startswith("object requests are off: add an objects")
    r = cli("objects", "purge", "default", "--prefix", "x", "--url", open_url)
    assert r.returncode == 1 and "object requests are off" in r.stderr and "(HTTP 409)" in r.stderr


def test_unreachable_console_and_hash_password() -> None:
    r = cli("stats", "--url", "http://127.0.0.1:1")
    assert r.returncode == 2 and "no console answering" in r.stderr
    r = subprocess.run([sys.executable, "-m", "appliance", "hash-password"], input="s3cret\n",
                       capture_output=True, text=True, timeout=60,
                       env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, check=False)
    assert r.returncode == 0 and r.stdout.startswith("scrypt$15$8$1$")
    from appliance.config import passwords
    assert passwords.verify("s3cret", passwords.parse(r.stdout.strip()))
