"""Proxy mode failure policies end to end: `failover` sends a dead back end's
keys to a spare pool, `fail` answers SERVER_ERROR at once without waiting."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from .helpers.procs import Server, appliance_config, start_appliance, start_memcached
from .test_proxy import REQUEST_TIMEOUT_MS, Conn

KEYS = [b"fo-%d" % i for i in range(200)]


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[tuple[list[Server], Server]]:
    primary = [start_memcached(tmp_path) for _ in range(2)]
    spare = start_memcached(tmp_path)
    try:
        yield primary, spare
    finally:
        for s in [*primary, spare]:
            s.kill9()


def _appliance(tmp_path: Path, primary: list[Server], spare: Server, policy: str) -> Server:
    cfg = appliance_config(tmp_path)
    cfg["backends"] = [{"name": f"mc{i}", "host": "127.0.0.1", "port": s.port}
                       for i, s in enumerate(primary)]
    cfg["backend_defaults"] = {
        "connect_timeout": "200ms", "request_timeout": f"{REQUEST_TIMEOUT_MS}ms",
        "failure_limit": 2, "retry_after": "500ms", "failure_policy": policy,
        "failover_pool": "spare" if policy == "failover" else None,
    }
    cfg["spare_pools"] = {"spare": [{"name": "spare1", "host": "127.0.0.1", "port": spare.port}]}
    cfg["routing"] = {"local_ttl_max": "1h"}
    path = tmp_path / f"appliance-{policy}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return start_appliance(path, tmp_path / f"appliance-{policy}.log")


def _held_by(srv: Server, keys: list[bytes]) -> set[bytes]:
    c = Conn(srv.addr)
    try:
        return {v[0] for v in c.get_multi(keys)}
    finally:
        c.close()


def _until_down(c: Conn, key: bytes, limit_s: float = 10.0) -> None:
    """Sends sets of key until the failure limit has marked its owner down."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if c.set(key, b"probe") == b"STORED":
            return
    raise AssertionError(f"{key!r} never stored after its owner died")


def test_failover_sends_a_dead_owners_keys_to_the_spare_pool(
        tmp_path: Path, servers: tuple[list[Server], Server]) -> None:
    primary, spare = servers
    app = _appliance(tmp_path, primary, spare, "failover")
    try:
        c = Conn(app.addr)
        for k in KEYS:
            assert c.set(k, b"v1-" + k) == b"STORED"
        dead = primary[0]
        owned = sorted(_held_by(dead, KEYS))
        assert owned and len(owned) < len(KEYS), "both primaries should own some keys"
        dead.kill9()
        _until_down(c, owned[0])
        for k in owned:
            assert c.set(k, b"v2-" + k) == b"STORED"
        # the dead owner's keys now live on the spare, nothing else moved there
        assert _held_by(spare, KEYS) == set(owned)
        c2 = Conn(app.addr)  # a fresh connection reads them back through the spare
        try:
            got = {v[0]: v[2] for v in c2.get_multi(owned)}
        finally:
            c2.close()
        assert got == {k: b"v2-" + k for k in owned}
        c.close()
    finally:
        assert app.terminate() == 0


def test_fail_policy_answers_at_once(tmp_path: Path,
                                     servers: tuple[list[Server], Server]) -> None:
    primary, spare = servers
    app = _appliance(tmp_path, primary, spare, "fail")
    try:
        c = Conn(app.addr)
        for k in KEYS:
            assert c.set(k, b"v") == b"STORED"
        dead = primary[1]
        owned = sorted(_held_by(dead, KEYS))
        dead.kill9()
        # failure_limit requests fail (connection refused), then it is down
        for _ in range(4):
            assert c.set(owned[0], b"x").startswith(b"SERVER_ERROR")
        t0 = time.monotonic()
        for k in owned[:20]:
            reply = c.set(k, b"x")
            assert reply.startswith(b"SERVER_ERROR backend mc1"), reply
        per_request = (time.monotonic() - t0) / 20
        assert per_request < REQUEST_TIMEOUT_MS / 1000 / 4, (
            f"{per_request * 1000:.0f} ms per request: fail should not wait for a timeout")
        # keys of the live back end are unaffected
        alive = sorted(set(KEYS) - set(owned))
        assert c.set(alive[0], b"still") == b"STORED"
        assert _held_by(spare, KEYS) == set()
        c.close()
    finally:
        assert app.terminate() == 0
