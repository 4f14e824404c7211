"""SPDK inside the appliance (`storage.spdk.mode: embedded`): no spdk_tgt anywhere.

The appliance loads SPDK's bdev layer itself, serves SPDK's JSON-RPC on the device's
rpc_socket, provisions its aio-backed lvol store and lvol through that socket exactly as
it does against spdk_tgt, and serves the store from the lvol's bdev directly (no NVMe-oF
hop). An operator's own RPC client sees the same target an spdk_tgt would show.

Runs whenever SPDK_DIR points at an SPDK build (build/lib/libspdk_*.so).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pymemcache.client.base import Client

from .helpers.procs import Server, _appliance_env, appliance_config, start_appliance

pytestmark = pytest.mark.spdk

SPDK_DIR = os.environ.get("SPDK_DIR")
if not SPDK_DIR:
    pytest.skip("SPDK_DIR is not set (point it at an SPDK tree with build/lib/libspdk_*.so "
                "to run the SPDK tests)", allow_module_level=True)

MIB = 1024 * 1024
KEYS = 2000


def _config(work: Path, size: str = "50%", segment_size: str = "4MiB") -> Path:
    image = work / "nvme0.img"
    if not image.exists():
        with open(image, "wb") as f:
            f.truncate(160 * MIB)
    cfg: dict[str, Any] = appliance_config(work, hot_tier="1MiB")
    cfg["storage"]["spdk"] = {"mode": "embedded"}  # mem_size: its 1GiB default
    cfg["storage"]["devices"] = [{
        "name": "nvme0", "kind": "spdk", "rpc_socket": str(work / "spdk.sock"),
        "transport": "aio", "path": str(image), "block_size": 4096,
    }]
    cfg["storage"]["pools"] = [{"name": "items", "device": "nvme0", "size": size,
                                "role": "memcached", "segment_size": segment_size}]
    path = work / "appliance.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def _cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = _appliance_env()
    env.pop("LD_LIBRARY_PATH", None)  # the appliance finds SPDK's libraries itself
    return subprocess.run([sys.executable, "-m", "appliance", *args, "--config", str(config)],
                          capture_output=True, text=True, timeout=180, cwd=config.parent,
                          env=env, check=False)


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("embedded")


@pytest.fixture(scope="module")
def appliance(work: Path) -> Iterator[Server]:
    path = _config(work)
    dry = _cli(path, "provision", "--dry-run")
    assert dry.returncode == 0, dry.stderr + dry.stdout
    assert "lvol" in dry.stdout and "nvme0" in dry.stdout, dry.stdout
    srv = start_appliance(path, timeout=120)
    try:
        yield srv
    finally:
        srv.terminate()


def test_the_embedded_rpc_server_answers_as_spdk_tgt(appliance: Server, work: Path) -> None:
    from spdk_bindings import rpc

    client = rpc.connect(str(work / "spdk.sock"), timeout=10)
    try:
        _check_target(client)
    finally:
        client.close()


def _check_target(client: Any) -> None:
    version = client.spdk_get_version()
    assert "SPDK" in version["version"], version
    bdevs = {b["name"]: b for b in client.bdev_get_bdevs()}
    lvols = [b for b in bdevs.values() if "ss_nvme0/items" in b.get("aliases", [])]
    assert len(lvols) == 1, sorted(bdevs)
    # Half of the 160 MiB file, in whole 4 MiB clusters of the lvol store.
    size = lvols[0]["num_blocks"] * lvols[0]["block_size"]
    assert 64 * MIB <= size <= 80 * MIB, size
    base = bdevs["nvme0"]
    assert base["claimed"], base  # by the lvol store


def test_items_served_from_the_lvol_survive_a_restart(appliance: Server, work: Path) -> None:
    client = Client(appliance.addr, connect_timeout=5, timeout=10, default_noreply=False)
    values = {f"emb-{i}": os.urandom(1000 + i % 3000) for i in range(KEYS)}
    try:
        for k, v in values.items():
            assert client.set(k, v, noreply=False)
        # Past two 4 MiB segments, so the items' records are on the lvol, not in the
        # open or sealed segment's buffer.
        for j in range(20):
            assert client.set(f"filler-{j}", b"f" * 500_000, noreply=False)
        before = client.stats()
        for k, v in values.items():  # 1 MiB hot tier: most of these come from the lvol
            assert client.get(k) == v
        after = client.stats()
        grew = {k: int(after[k]) - int(before[k]) for k in
                (b"hits_device", b"device_reads_async", b"device_reads_sync_fallback")}
        assert grew[b"hits_device"] > KEYS // 2, grew
        # Through the worker's own SPDK thread and channel, asynchronously.
        assert grew[b"device_reads_async"] >= grew[b"hits_device"] * 0.9, grew
        assert grew[b"device_reads_sync_fallback"] == 0, grew
    finally:
        client.close()
    appliance.terminate()
    again = start_appliance(work / "appliance.yaml", timeout=120)
    try:
        client = Client(again.addr, connect_timeout=5, timeout=10, default_noreply=False)
        try:
            for k, v in values.items():
                assert client.get(k) == v, k
        finally:
            client.close()
    finally:
        again.terminate()


def test_kill9_then_restart_keeps_every_acknowledged_item(tmp_path: Path) -> None:
    path = _config(tmp_path)
    srv = start_appliance(path, timeout=120)
    values = {f"k9-{i}": os.urandom(2000 + i % 2000) for i in range(KEYS)}
    try:
        client = Client(srv.addr, connect_timeout=5, timeout=10, default_noreply=False)
        try:
            for k, v in values.items():
                assert client.set(k, v, noreply=False)  # acknowledged: STORED
            time.sleep(1.5)  # > flush_interval and the group commit
        finally:
            client.close()
    finally:
        srv.kill9()
    # A new process's SPDK starts empty: planning brings the aio bdev back, and examine
    # the lvol store and lvol on it, so a provisioned device plans as it is.
    dry = _cli(path, "provision", "--dry-run")
    assert dry.returncode == 0, dry.stderr + dry.stdout
    assert "nothing to do" in dry.stdout and "create" not in dry.stdout, dry.stdout
    again = start_appliance(path, timeout=120)
    try:
        client = Client(again.addr, connect_timeout=5, timeout=10, default_noreply=False)
        try:
            lost = [k for k, v in values.items() if client.get(k) != v]
        finally:
            client.close()
        assert not lost, f"{len(lost)} acknowledged items lost or wrong: {lost[:5]}"
    finally:
        again.terminate()


def test_grow_on_reload_and_a_refused_shrink(tmp_path: Path) -> None:
    """Provisioning through the embedded RPC server grows the lvol on SIGHUP while
    serving, and refuses a shrink the pool does not allow, keeping the last good config."""
    path = _config(tmp_path, size="16MiB", segment_size="2MiB")
    srv = start_appliance(path, timeout=120)
    value = os.urandom(100_000)
    try:
        client = Client(srv.addr, connect_timeout=5, timeout=10, default_noreply=False)
        try:
            for i in range(60):  # ~6 MiB
                assert client.set(f"old-{i}", value)
            cfg = yaml.safe_load(path.read_text())
            cfg["storage"]["pools"][0]["size"] = "64MiB"
            path.write_text(yaml.safe_dump(cfg, sort_keys=False))
            _reload(srv, "reloaded ")
            assert "grow spdk lvol ss_nvme0/items: 16.0 MiB -> 64.0 MiB" in srv.log(), srv.log()
            for i in range(400):  # ~40 MiB: far past the old 16 MiB
                assert client.set(f"new-{i}", value)
            assert int(client.stats()[b"evictions"]) == 0
            cfg["storage"]["pools"][0]["size"] = "32MiB"
            path.write_text(yaml.safe_dump(cfg, sort_keys=False))
            _reload(srv, "reload refused")
            assert all(client.get(f"old-{i}") == value for i in range(60))
            assert all(client.get(f"new-{i}") == value for i in range(400))
        finally:
            client.close()
    finally:
        srv.terminate()


def _reload(srv: Server, marker: str) -> None:
    seen = srv.log().count(marker)
    srv.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 60
    while srv.log().count(marker) == seen:
        assert srv.alive() and time.monotonic() < deadline, srv.log()
        time.sleep(0.1)
