"""Proxy mode reload: SIGHUP swaps the back ends without dropping a client; a bad file is refused.

Real memcached back ends, the real appliance, one client connection held open
across every reload. Which back end owns a key is computed here with the same
ring and C lookup the appliance uses (appliance.proxy.routing.build_ring,
appliance.proxy.ring.owner), then checked by asking the back ends directly.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from appliance.proxy import ring, routing
from appliance.config import parse_config

from .conftest import ApplianceFactory
from .helpers.mcproto import RawConn
from .helpers.procs import REPO_ROOT, Server, appliance_config, free_port, start_memcached

LOG_WAIT_S = 10.0


def write_proxy_config(tmp_path: Path, tcp_port: int, backends: list[Server],
                       **extra: Any) -> Path:
    """The small test config with these memcached servers as back ends mc1, mc2, ..."""
    cfg = appliance_config(tmp_path, memcached__tcp_port=tcp_port, memcached__udp_port=None)
    cfg["backends"] = [{"name": f"mc{i + 1}", "host": b.host, "port": b.port}
                       for i, b in enumerate(backends)]
    cfg["backend_defaults"] = {"request_timeout": "2s"}
    cfg.update(extra)
    path = tmp_path / "appliance.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def owners(path: Path, keys: list[bytes]) -> dict[bytes, str]:
    """Each key's owning back end name under the config at path."""
    config = parse_config(path.read_text(), str(path), base_dir=path.parent)
    built = routing.build_ring(config, config.backends)
    return {k: config.backends[ring.owner(built, k, config.routing.hash)].name for k in keys}


def wait_log(srv: Server, text: str, count: int = 1) -> str:
    deadline = time.monotonic() + LOG_WAIT_S
    while True:
        log = srv.log()
        if log.count(text) >= count:
            return log
        assert srv.alive(), f"appliance exited. Log:\n{log}"
        assert time.monotonic() < deadline, f"no {text!r} x{count} in the log:\n{log}"
        time.sleep(0.05)


def direct_get(srv: Server, key: bytes) -> bytes | None:
    with RawConn(srv.addr) as c:
        return c.get(key)


def direct_set(srv: Server, key: bytes, value: bytes) -> None:
    with RawConn(srv.addr) as c:
        assert c.set(key, value) == b"STORED\r\n"


def route(path: Path, key: str) -> list[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    out = subprocess.run([sys.executable, "-m", "appliance", "route", key, "--config",
                          str(path)], capture_output=True, text=True, timeout=30, env=env,
                         cwd=path.parent, check=False)
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


def test_sighup_adds_a_backend_and_refuses_a_bad_file(
        tmp_path: Path, appliance_factory: ApplianceFactory) -> None:
    mcs = [start_memcached(tmp_path) for _ in range(3)]
    by_name = {f"mc{i + 1}": m for i, m in enumerate(mcs)}
    try:
        port = free_port()
        path = write_proxy_config(tmp_path, port, mcs[:2])
        app = appliance_factory(path)
        keys = [f"reload:{i}".encode() for i in range(60)]
        client = RawConn(app.addr)

        # Two back ends: every write lands on its owner.
        before = owners(path, keys)
        assert set(before.values()) == {"mc1", "mc2"}
        for k in keys[:20]:
            assert client.set(k, b"v1:" + k) == b"STORED\r\n"
        for k in keys[:20]:
            assert direct_get(by_name[before[k]], k) == b"v1:" + k, k

        # Three back ends, same client connection.
        write_proxy_config(tmp_path, port, mcs)
        app.proc.send_signal(signal.SIGHUP)
        wait_log(app, "reloaded ")
        # The reload's change lines are logged after its summary line.
        log = wait_log(app, "back end mc3 ")
        assert "back end mc3 " in log and " added" in log
        after = owners(path, keys)
        moved = [k for k in keys if after[k] == "mc3"]
        assert moved, "no test key maps to the third back end"
        for k in moved:
            assert client.set(k, b"v2:" + k) == b"STORED\r\n"
            assert direct_get(mcs[2], k) == b"v2:" + k, k
        # A key only the third back end holds: a local miss, fetched from it.
        fresh = [f"fresh:{i}".encode() for i in range(60)]
        only = next(k for k, name in owners(path, fresh).items() if name == "mc3")
        direct_set(mcs[2], only, b"from-mc3")
        assert client.get(only) == b"from-mc3"

        # `route` agrees, and the running appliance says what it holds.
        lines = route(path, moved[0].decode())
        assert lines[0] == f"owner: mc3 127.0.0.1:{mcs[2].port}"
        assert lines[1].startswith("local: "), lines
        assert route(path, "never-written-key")[1] == "local: not cached"

        # A file that fails validation: refused, logged, old routing kept.
        good = path.read_text()
        path.write_text(good.replace(f"port: {mcs[2].port}", "port: 0"))
        app.proc.send_signal(signal.SIGHUP)
        log = wait_log(app, "reload refused")
        assert "backends[2].port: expected a port number from 1 to 65535, got 0" in log
        # A setting that can't change live: refused with its name.
        path.write_text(good.replace("workers: 2", "workers: 3"))
        app.proc.send_signal(signal.SIGHUP)
        log = wait_log(app, "reload refused", count=2)
        assert "memcached.workers: can't change while running (2 -> 3)" in log
        # Still three back ends on the same connection.
        for k in moved:
            assert client.set(k, b"v3:" + k) == b"STORED\r\n"
            assert direct_get(mcs[2], k) == b"v3:" + k, k
        for k in keys[:20]:
            assert client.get(k) in (b"v1:" + k, b"v3:" + k), k
        client.close()
        assert app.alive()
    finally:
        for m in mcs:
            m.kill9()


def start_memcached_on(tmp_path: Path, port: int) -> subprocess.Popen[bytes]:
    """memcached on a given port again (after a kill), waited for until it answers."""
    log = open(tmp_path / f"memcached-again-{port}.log", "wb")
    proc = subprocess.Popen(["/usr/bin/memcached", "-l", "127.0.0.1", "-p", str(port), "-U", "0",
                             "-u", "root", "-m", "64"], stdin=subprocess.DEVNULL, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    return proc


def test_dead_backend_is_marked_down_then_restored(
        tmp_path: Path, appliance_factory: ApplianceFactory) -> None:
    mcs = [start_memcached(tmp_path) for _ in range(2)]
    again: subprocess.Popen[bytes] | None = None
    try:
        path = write_proxy_config(tmp_path, free_port(), mcs, backend_defaults={
            "connect_timeout": "100ms", "request_timeout": "300ms", "failure_limit": 2,
            "retry_after": "200ms"})
        app = appliance_factory(path)
        keys = [f"health:{i}".encode() for i in range(40)]
        on_mc2 = [k for k, name in owners(path, keys).items() if name == "mc2"]
        mcs[1].kill9()
        with RawConn(app.addr, timeout=5) as client:
            deadline = time.monotonic() + LOG_WAIT_S
            while "backend mc2" not in app.log():
                assert time.monotonic() < deadline, app.log()
                for k in on_mc2[:3]:
                    started = time.monotonic()
                    # An error or a remapped miss; never a hang.
                    reply = client.call(b"get " + k + b"\r\n", timeout=2.0)
                    assert reply.startswith((b"SERVER_ERROR backend mc2", b"END")), reply
                    assert time.monotonic() - started < 2.0
                time.sleep(0.05)
        wait_log(app, f"backend mc2 127.0.0.1:{mcs[1].port} down after 2 failures")
        again = start_memcached_on(tmp_path, mcs[1].port)
        wait_log(app, f"backend mc2 127.0.0.1:{mcs[1].port} restored")
        with RawConn(app.addr, timeout=5) as client:
            assert client.set(on_mc2[0], b"back") == b"STORED\r\n"
        with RawConn(mcs[1].addr) as direct:
            assert direct.get(on_mc2[0]) == b"back"
    finally:
        for m in mcs:
            m.kill9()
        if again is not None:
            again.kill()
            again.wait(10)
