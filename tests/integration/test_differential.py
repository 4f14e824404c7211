"""Differential test: the same seeded command stream to the appliance (standalone)
and to a real memcached 1.6, replies compared byte for byte (cas values by
behaviour). The harness is helpers/diffrun.py. SS_DIFF_SEED and SS_DIFF_COUNT
override the seeds and length.
"""

from __future__ import annotations

import pytest

from .helpers.diffrun import REFERENCE_ARGS, count, coverage_ok, run_differential, seeds
from .helpers.procs import Server, start_memcached

DEFAULT_SEEDS = [1, 2, 3]
DEFAULT_COUNT = 3000


@pytest.fixture
def reference(tmp_path, request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """The reference memcached for the differential test."""
    srv = start_memcached(tmp_path, REFERENCE_ARGS)
    try:
        yield srv
    finally:
        srv.kill9()
        if getattr(request.node, "rep_call", None) is None or request.node.rep_call.failed:
            print(f"----- reference memcached log -----\n{srv.log()}")


@pytest.fixture
def reference2(tmp_path):  # type: ignore[no-untyped-def]
    """A second reference memcached, for the harness self-check."""
    srv = start_memcached(tmp_path, REFERENCE_ARGS)
    try:
        yield srv
    finally:
        srv.kill9()


@pytest.mark.parametrize("seed", seeds(DEFAULT_SEEDS))
def test_differential_against_memcached(reference: Server, appliance: Server, seed: int) -> None:
    stats = run_differential(reference, appliance, seed, count(DEFAULT_COUNT))
    coverage_ok(stats)


def test_differential_harness_is_deterministic(reference: Server, reference2: Server) -> None:
    """Two real memcacheds must agree on the stream; else the harness is at fault."""
    stats = run_differential(reference, reference2, 99, 1500)
    coverage_ok(stats)
