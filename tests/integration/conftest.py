"""Fixtures for the integration tests: a real memcached and the appliance.

Both fixtures always stop what they started (by pid), and print the server's
log when the test failed, so a failure shows what the server said.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .helpers import mcproto
from .helpers.procs import Server, start_appliance, start_memcached, write_config


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Keeps each phase's report on the item, so fixtures know if the test failed."""
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


@pytest.fixture(autouse=True)
def close_leftover_conns() -> Iterator[None]:
    """Close the raw connections a test opened and left open (it failed part-way), at its
    own teardown, so their ResourceWarning cannot fail a later test instead."""
    before = mcproto.open_conns()
    yield
    mcproto.close_opened_since(before)


def _failed(request: pytest.FixtureRequest) -> bool:
    rep = getattr(request.node, "rep_call", None)
    return rep is None or rep.failed


def _show(server: Server) -> None:
    print(f"\n----- {server.name} pid {server.pid} log ({server.log_path}) -----")
    print(server.log())


@pytest.fixture
def memcached(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Server]:
    """A real memcached 1.6 on loopback (TCP and UDP), killed at teardown."""
    srv = start_memcached(tmp_path)
    try:
        yield srv
    finally:
        srv.kill9()
        if _failed(request):
            _show(srv)


@pytest.fixture
def memcached2(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Server]:
    """A second, independent real memcached (for self-checks of the harness)."""
    srv = start_memcached(tmp_path)
    try:
        yield srv
    finally:
        srv.kill9()
        if _failed(request):
            _show(srv)


ApplianceFactory = Callable[..., Server]


@pytest.fixture
def appliance_factory(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[ApplianceFactory]:
    """Starts appliances; every one still running at teardown gets SIGTERM.

    Call it as `start(config_path=None, **overrides)`: with no config path it
    writes tmp_path/appliance.yaml from `overrides` (see write_config). A
    process still running at teardown must exit 0 on SIGTERM, as the contract
    says, or the test errors.
    """
    started: list[Server] = []

    def start(config_path: Path | None = None, **overrides: Any) -> Server:
        if config_path is None:
            config_path = write_config(tmp_path, **overrides)
        srv = start_appliance(config_path, tmp_path / "appliance.log")
        started.append(srv)
        return srv

    problems: list[str] = []
    try:
        yield start
    finally:
        for srv in started:
            if srv.alive():
                try:
                    rc = srv.terminate()
                except AssertionError as exc:
                    problems.append(str(exc))
                    continue
                if rc != 0:
                    problems.append(f"appliance pid {srv.pid} exited {rc} on SIGTERM")
        if started and (problems or _failed(request)):
            _show(started[-1])
    if problems:
        pytest.fail("; ".join(problems))


@pytest.fixture
def appliance(appliance_factory: ApplianceFactory) -> Server:
    """The appliance on the default small test config."""
    return appliance_factory()
