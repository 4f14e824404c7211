"""The appliance end to end on a `kind: spdk` device, in both `storage.spdk.mode`s.

The config names an aio-backed SPDK device and `smartswitch provision` and start-up
create the lvol store and the lvol; `smartswitch run` restarts itself once with
LD_LIBRARY_PATH naming SPDK's libraries. Every test runs twice:

- external: a real spdk_tgt owns the device and also exports the lvol over NVMe-oF/TCP;
  the store serves from it through SPDK's user-space NVMe driver.
- embedded: the appliance runs SPDK itself (its RPC server on the device's rpc_socket in
  the test's work dir), with no spdk_tgt and no `export:`; the store opens the lvol's
  bdev directly.

Runs whenever SPDK_DIR points at an SPDK build (build/bin/spdk_tgt, build/lib/libspdk_*.so).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pymemcache.client.base import Client

from . import test_clients_pymemcache as core
from .helpers.procs import (Server, _appliance_env, appliance_config, free_port,
                            start_appliance)
from .helpers.spdk_target import SpdkTarget, start_spdk_tgt

pytestmark = pytest.mark.spdk

SPDK_DIR = os.environ.get("SPDK_DIR")
if not SPDK_DIR:
    pytest.skip("SPDK_DIR is not set (point it at an SPDK tree with build/lib/libspdk_*.so "
                "and build/bin/spdk_tgt to run the SPDK tests)", allow_module_level=True)

MIB = 1024 * 1024
IMAGE_MIB = 192
KEYS = 3000


@pytest.fixture(scope="module", params=["external", "embedded"])
def mode(request: pytest.FixtureRequest) -> str:
    """storage.spdk.mode: every test of this module runs once in each."""
    return str(request.param)


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SpdkTarget]:
    """spdk_tgt, for the external mode only: _spdk_config asks for it by name. (Not bound
    to `mode`: pytest would then stop it before the external appliance it serves.)"""
    assert SPDK_DIR
    tgt = start_spdk_tgt(SPDK_DIR, tmp_path_factory.mktemp("spdk-appliance"))
    try:
        yield tgt
    finally:
        tgt.stop()


def _spdk_config(request: pytest.FixtureRequest, mode: str, work: Path, device: str,
                 image_mib: int, pool_size: str, segment_size: str,
                 **export: str) -> tuple[Path, dict[str, Any]]:
    """An appliance config whose memcached pool is on an aio-backed spdk device.

    external: the device is spdk_tgt's (the module's `target`) and exported over
    NVMe-oF/TCP (export_nqn and the like come in `export`); embedded: the appliance's
    own RPC server on a socket in `work`, nothing exported.
    """
    image = work / f"{device}.img"
    with open(image, "wb") as f:
        f.truncate(image_mib * MIB)
    cfg: dict[str, Any] = appliance_config(work, hot_tier="1MiB", segment_size=segment_size)
    dev: dict[str, Any] = {"name": device, "kind": "spdk", "transport": "aio",
                           "path": str(image), "block_size": 4096}
    # Explicit in both modes: the default mode is changing from external to embedded.
    cfg["storage"]["spdk"] = {"mode": mode}
    if mode == "external":
        # Only external needs spdk_tgt: embedded must run without one.
        target: SpdkTarget = request.getfixturevalue("target")
        dev["rpc_socket"] = str(target.sock)
        dev["export"] = f"127.0.0.1:{free_port()}"
        dev.update(export)
    else:
        dev["rpc_socket"] = str(work / "spdk.sock")
    cfg["storage"]["devices"] = [dev]
    cfg["storage"]["pools"] = [{"name": "items", "device": device, "size": pool_size,
                                "role": "memcached", "segment_size": segment_size}]
    path = work / "appliance.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path, cfg


@pytest.fixture(scope="module")
def config_path(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                mode: str) -> Path:
    """An appliance config with its memcached pool on an aio-backed spdk device."""
    path, _ = _spdk_config(request, mode, tmp_path_factory.mktemp(f"appliance-{mode}"),
                           "nvme0", IMAGE_MIB, "50%", "4MiB")
    return path


def _cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = _appliance_env()
    env.pop("LD_LIBRARY_PATH", None)  # the appliance finds SPDK's libraries itself
    return subprocess.run([sys.executable, "-m", "appliance", *args, "--config", str(config)],
                          capture_output=True, text=True, timeout=180, cwd=config.parent,
                          env=env, check=False)


@pytest.fixture(scope="module")
def appliance(config_path: Path) -> Iterator[Server]:
    dry = _cli(config_path, "provision", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "lvol" in dry.stdout and "nvme0" in dry.stdout, dry.stdout
    srv = start_appliance(config_path, timeout=120)
    try:
        yield srv
    finally:
        srv.terminate()


CORE_CASES = [core.test_get_set_many_and_flags, core.test_multiget_hundreds_of_keys,
              core.test_binary_safe_and_large_values, core.test_gets_cas,
              core.test_add_replace_append_prepend, core.test_delete, core.test_incr_decr]


@pytest.mark.parametrize("case", CORE_CASES, ids=lambda f: f.__name__)
def test_core_memcached_on_an_spdk_pool(appliance: Server,
                                        case: Callable[[Client], None]) -> None:
    client = Client(appliance.addr, connect_timeout=5, timeout=10, default_noreply=False)
    try:
        assert client.flush_all(noreply=False)  # each case starts from an empty cache
        case(client)
    finally:
        client.close()


def _stat(client: Client, name: str) -> int:
    return int(client.stats()[name.encode()])


def test_device_hits_then_restart_keeps_every_key(appliance: Server, config_path: Path,
                                                  mode: str) -> None:
    client = Client(appliance.addr, connect_timeout=5, timeout=10, default_noreply=False)
    values = {f"spdk-{i}": os.urandom(1000 + i % 3000) for i in range(KEYS)}
    try:
        for k, v in values.items():
            assert client.set(k, v, noreply=False)
        before = _stat(client, "hits_device")
        for k, v in values.items():  # 1 MiB hot tier: most of these come from the lvol
            assert client.get(k) == v
        assert _stat(client, "hits_device") - before > KEYS // 2
    finally:
        client.close()
    appliance.terminate()
    again = start_appliance(config_path, timeout=120)
    try:
        second = again.log().rsplit(" stopped\n", 1)[-1]
        assert "creating" not in second and "store=spdk:nvme0/items" in second, second
        client = Client(again.addr, connect_timeout=5, timeout=10, default_noreply=False)
        try:
            for k, v in values.items():
                assert client.get(k) == v, k
        finally:
            client.close()
    finally:
        again.terminate()
    verify = _cli(config_path, "verify-index")
    assert verify.returncode == 0, verify.stderr + verify.stdout
    assert f"checked {KEYS}" in verify.stdout or "consistent" in verify.stdout, verify.stdout


def test_grow_on_reload_while_serving(request: pytest.FixtureRequest, mode: str,
                                      tmp_path_factory: pytest.TempPathFactory) -> None:
    """A bigger pool in the config + SIGHUP: the lvol is resized on the target and the
    store grows into it while serving; what was written before stays and nothing is
    evicted although far more than the old size is written after."""
    path, cfg = _spdk_config(request, mode, tmp_path_factory.mktemp(f"grow-{mode}"), "nvme1",
                             96, "16MiB", "2MiB",
                             export_nqn="nqn.2016-06.io.smartswitch:grow")
    srv = start_appliance(path, timeout=120)
    value = os.urandom(100_000)
    try:
        client = Client(srv.addr, connect_timeout=5, timeout=10, default_noreply=False)
        try:
            for i in range(60):  # ~6 MiB
                assert client.set(f"old-{i}", value)
            cfg["storage"]["pools"][0]["size"] = "64MiB"
            path.write_text(yaml.safe_dump(cfg, sort_keys=False))
            srv.proc.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 60
            while "reloaded " not in srv.log():
                assert srv.alive() and time.monotonic() < deadline, srv.log()
                time.sleep(0.1)
            assert "grow spdk lvol ss_nvme1/items: 16.0 MiB -> 64.0 MiB" in srv.log(), srv.log()
            for i in range(400):  # ~40 MiB: far past the old 16 MiB
                assert client.set(f"new-{i}", value)
            stats = client.stats()
            assert int(stats[b"evictions"]) == 0, stats
            assert all(client.get(f"old-{i}") == value for i in range(60))
            assert all(client.get(f"new-{i}") == value for i in range(400))
        finally:
            client.close()
    finally:
        srv.terminate()
