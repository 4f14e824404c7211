"""Parametrisation shared by tests that run against memcached and the appliance."""

from __future__ import annotations

import pytest

from .procs import Server

# Every client test runs against the real memcached too: that proves the test
# itself encodes memcached's behaviour before it judges the appliance.
SERVER_KINDS = ["memcached", "appliance"]

ONE_MIB = 1024 * 1024
BIG_VALUE = ONE_MIB - 1024  # near 1 MiB, within memcached -I 1m once its header is added
TOO_LARGE = ONE_MIB + 100   # over item_size_max (1MiB) for both


def server_of(request: pytest.FixtureRequest) -> Server:
    """Resolves the parametrised server kind to its running fixture."""
    srv = request.getfixturevalue(request.param)
    assert isinstance(srv, Server)
    return srv
