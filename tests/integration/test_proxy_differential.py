"""Proxy transparency: the same seeded stream of text and meta commands (valid, edge
and malformed: long keys, bad numbers, oversized values, bad flags, noreply and q) to
SmartSwitch in proxy mode in front of one real memcached, and to a second memcached
directly; the replies must be equal byte for byte (cas values by behaviour: each
side's tokens are renamed in order of first appearance, so a cas SmartSwitch made up
would show). Batches go to 1-4 connections per side. The harness is
helpers/diffrun.py, the stream helpers/diffgen.py with owner_flags (mg also asks t and
h, which only the owner can answer; TTLs chosen so that t never depends on when a
memcached's clock ticks).

Known nondeterminism in memcached itself, avoided by construction (not by a looser
comparison): incr/decr results written in place or not by reference timing (both
memcacheds run without the LRU maintainer and crawler, and arithmetic keys are not
read earlier in the same batch); incr on values memcached reads past the end of;
replies dropped by a too-long key in a get, sent alone; `l` and clock-bound TTLs.

CI runs SEEDS x COUNT; a longer run is one command, e.g.
  SS_DIFF_SEED=$(seq -s, 100 199) SS_DIFF_COUNT=20000 \\
      .venv/bin/python -m pytest -q tests/integration/test_proxy_differential.py
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from .helpers.diffgen import Generator
from .helpers.diffrun import REFERENCE_ARGS, count, coverage_ok, run_differential, seeds
from .helpers.procs import Server, appliance_config, start_appliance, start_memcached

SEEDS = list(range(1, 21))
COUNT = 5000


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Server, Path]]:
    """(reference memcached, SmartSwitch in proxy mode, its back end's dir)."""
    work = tmp_path_factory.mktemp("proxy-diff")
    reference = start_memcached(work, REFERENCE_ARGS)
    backend = start_memcached(work, REFERENCE_ARGS)
    cfg = appliance_config(work)
    cfg["backends"] = [{"name": "mc0", "host": "127.0.0.1", "port": backend.port}]
    cfg["routing"] = {"allow_flush_all": True, "local_ttl_max": "60s"}
    path = work / "proxy.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    app = start_appliance(path)
    try:
        yield reference, app, work
    finally:
        app.terminate()
        backend.kill9()
        reference.kill9()


@pytest.mark.parametrize("seed", seeds(SEEDS))
def test_proxy_replies_equal_memcached_direct(servers: tuple[Server, Server, Path],
                                              seed: int) -> None:
    reference, app, _ = servers
    assert app.alive(), app.log()
    nconns = 1 + seed % 4
    stats = run_differential(reference, app, seed, count(COUNT), nconns=nconns,
                             gen=Generator(seed, owner_flags=True))
    coverage_ok(stats)
    assert stats["cmd:too_large"] > 0 and stats["cmd:mg"] > 0


def test_the_owner_flags_stream_is_deterministic(tmp_path: Path) -> None:
    """Two real memcacheds agree on the stream; else the harness is at fault."""
    a, b = start_memcached(tmp_path, REFERENCE_ARGS), start_memcached(tmp_path, REFERENCE_ARGS)
    try:
        stats = run_differential(a, b, 7, 3000, nconns=3, gen=Generator(7, owner_flags=True))
        coverage_ok(stats)
    finally:
        a.kill9()
        b.kill9()
