"""The store on an SPDK lvol, reached over NVMe/TCP with SPDK's user-space NVMe driver.

Runs whenever SPDK_DIR points at an SPDK tree with build/lib/libspdk_*.so and
build/bin/spdk_tgt. A module fixture starts spdk_tgt (--no-huge), provisions an
aio-backed lvol store and lvol through spdk_bindings.provision (the appliance's own
provisioning), and exports the lvol over NVMe/TCP on 127.0.0.1. Each test runs a data
plane in this process (dataplane.fastpath, real sockets on 127.0.0.1:0) whose store is
on that namespace, and talks to it with pymemcache.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from pymemcache.client.base import Client

from dataplane.fastpath import Dataplane, DataplaneSettings, StoreSettings
from spdk_bindings import provision, rpc
from spdk_bindings.datapath import SpdkDataPath, transport_id

from . import test_clients_pymemcache as core

pytestmark = pytest.mark.spdk

SPDK_DIR = os.environ.get("SPDK_DIR")
if not SPDK_DIR:
    pytest.skip("SPDK_DIR is not set (point it at an SPDK tree with build/lib/libspdk_*.so "
                "and build/bin/spdk_tgt to run the SPDK data path tests)",
                allow_module_level=True)

MIB = 1024 * 1024
LVOL_MIB = 256
NQN = "nqn.2016-06.io.spdk:smartswitch-test"
START_TIMEOUT_S = 60.0
TIME_LIMIT_S = 120.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Target:
    """A running spdk_tgt exporting one lvol over NVMe/TCP."""

    proc: subprocess.Popen[bytes]
    rpc: rpc.SpdkRpc
    trid: str
    lvol_bytes: int
    log: Path


def _wait_rpc(sock: Path, proc: subprocess.Popen[bytes], log: Path) -> rpc.SpdkRpc:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"spdk_tgt exited {proc.returncode}:\n{log.read_text()}")
        if sock.exists():
            try:
                client = rpc.connect(str(sock), timeout=30.0)
                client.framework_wait_init()
                return client
            except rpc.SpdkRpcError:
                pass
        if time.monotonic() > deadline:
            raise AssertionError(f"spdk_tgt did not answer on {sock} within "
                                 f"{START_TIMEOUT_S:.0f} s:\n{log.read_text()}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """spdk_tgt with an aio-backed lvol, provisioned by spdk_bindings and exported."""
    assert SPDK_DIR
    tgt = Path(SPDK_DIR) / "build/bin/spdk_tgt"
    assert tgt.exists(), f"SPDK_DIR={SPDK_DIR} has no build/bin/spdk_tgt"
    work = tmp_path_factory.mktemp("spdk")
    sock, log, image = work / "spdk.sock", work / "spdk_tgt.log", work / "aio0.img"
    with open(image, "wb") as f:
        f.truncate((LVOL_MIB + 64) * MIB)
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(tgt), "--no-huge", "-s", "1024", "-m", "0x1",
                                 "-r", str(sock)],
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    client = None
    try:
        client = _wait_rpc(sock, proc, log)
        dev = provision.SpdkDevice(name="ss0", transport="aio", rpc_socket=str(sock),
                                   path=str(image), block_size=4096)
        plan = provision.plan_device(client, dev, [provision.SpdkPool("items", LVOL_MIB * MIB)])
        state = provision.apply_plan(client, plan)
        pool = state.pools["items"]
        port = _free_port()
        client.call("nvmf_create_transport", {"trtype": "TCP"})
        client.call("nvmf_create_subsystem", {"nqn": NQN, "allow_any_host": True,
                                              "serial_number": "SS0000000001"})
        client.call("nvmf_subsystem_add_ns", {"nqn": NQN,
                                              "namespace": {"bdev_name": pool.bdev}})
        client.call("nvmf_subsystem_add_listener", {
            "nqn": NQN, "listen_address": {"trtype": "tcp", "adrfam": "ipv4",
                                           "traddr": "127.0.0.1", "trsvcid": str(port)}})
        yield Target(proc, client, transport_id("127.0.0.1", port, NQN), pool.size_bytes, log)
    finally:
        if client is not None:
            client.close()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)


@pytest.fixture(scope="module")
def spdk(target: Target) -> SpdkDataPath:
    """SPDK's libraries loaded and its environment started in this process (once)."""
    dp = SpdkDataPath.load()
    dp.start_env(mem_mb=256, no_huge=True)
    return dp


class Running:
    """One data plane on the SPDK namespace, its workers and housekeeper on threads."""

    def __init__(self, settings: DataplaneSettings) -> None:
        self.dp = Dataplane.create(settings)
        self.stopping = threading.Event()
        self.errors: list[BaseException] = []
        self.threads = [threading.Thread(target=self._guard, args=(self.dp.run_worker, i),
                                         daemon=True) for i in range(settings.workers)]
        self.threads.append(threading.Thread(target=self._housekeeper, daemon=True))
        for t in self.threads:
            t.start()
        self.addr = ("127.0.0.1", self.dp.bound_port(False))

    def _guard(self, fn: Callable[[int], None], arg: int) -> None:
        try:
            fn(arg)
        except BaseException as exc:  # noqa: BLE001 - reported by stop()
            self.errors.append(exc)

    def _housekeeper(self) -> None:
        while not self.stopping.wait(0.1):
            try:
                self.dp.housekeep()
            except BaseException as exc:  # noqa: BLE001 - reported by stop()
                self.errors.append(exc)
                return

    def client(self) -> Client:
        return Client(self.addr, connect_timeout=5, timeout=30, default_noreply=False)

    def stop(self) -> None:
        self.stopping.set()
        self.dp.stop()
        for t in self.threads:
            t.join(timeout=30)
            assert not t.is_alive(), "a data plane thread did not return"
        self.dp.destroy()
        assert not self.errors, f"data plane threads failed: {self.errors!r}"


Factory = Callable[..., Running]


@pytest.fixture
def run_on_spdk(spdk: SpdkDataPath, target: Target, tmp_path: Path) -> Iterator[Factory]:
    """Starts data planes on the lvol (a fresh index per test); stops them at teardown."""
    started: list[Running] = []

    def start(**store: Any) -> Running:
        dev = spdk.open_namespace(target.trid, 1)
        assert spdk.device_size(dev) == target.lvol_bytes
        assert spdk.device_block_size(dev) == 4096
        base = StoreSettings(
            index_dir=str(tmp_path / "index"), device_path="", device=dev,
            device_bytes=target.lvol_bytes, segment_bytes=4 * MIB, hot_bytes=8 * MIB,
            item_size_max=MIB, index_map_bytes=1024 * MIB, flush_interval_ms=200,
            device_offset=0, pool_name="items")
        settings = DataplaneSettings(
            listen_host="127.0.0.1", tcp_port=0, udp_port=-1, workers=2,
            max_connections=1024, idle_timeout_s=0, tcp_backlog=128,
            udp_reply_bytes_per_sec=1 << 22, udp_reply_burst_bytes=1 << 19,
            version="1.6.18 smartswitch-test", store=replace(base, **store))
        r = Running(settings)
        started.append(r)
        return r

    yield start
    for r in started:
        if r.dp._dp is not None:
            r.stop()


def _value(i: int, size: int) -> bytes:
    head = b"<%d:%d>" % (i, size)
    return (head * (size // len(head) + 1))[:size]


CORE_CASES = [core.test_get_set_many_and_flags, core.test_multiget_hundreds_of_keys,
              core.test_binary_safe_and_large_values, core.test_gets_cas, core.test_gat_gats,
              core.test_add_replace_append_prepend, core.test_delete, core.test_incr_decr,
              core.test_touch_and_expiry, core.test_flush_all]


@pytest.mark.parametrize("case", CORE_CASES, ids=lambda f: f.__name__.removeprefix("test_"))
def test_core_memcached_on_spdk(run_on_spdk: Factory, case: Callable[[Client], None]) -> None:
    """The core pymemcache tests, with no DRAM tier: every read is the log's."""
    r = run_on_spdk(hot_bytes=0)
    c = r.client()
    try:
        case(c)
    finally:
        c.close()
    r.stop()


def test_values_1b_to_1mib_read_back_from_the_device(run_on_spdk: Factory) -> None:
    """Values of 1 B .. 1 MiB, well past one segment, read back through SPDK."""
    r = run_on_spdk(hot_bytes=1 * MIB)
    c = r.client()
    sizes = [1, 2, 100, 511, 512, 513, 4095, 4096, 4097, 65536, 131073, 500_000,
             MIB - 1024]
    keys = {}
    start = time.monotonic()
    for rnd in range(6):  # ~10 MiB: the first rounds leave the open segment
        for size in sizes:
            k = b"v%d-%d" % (rnd, size)
            keys[k] = _value(rnd, size)
            assert c.set(k, keys[k]), f"set {k!r}"
    before = r.dp.counters()
    for k, v in keys.items():
        assert time.monotonic() - start < TIME_LIMIT_S
        assert c.get(k) == v, f"{k!r} ({len(v)} bytes) read back wrong"
    after = r.dp.counters()
    c.close()
    assert after["hits_device"] - before["hits_device"] >= len(sizes) * 3, (
        f"hits_device {before['hits_device']} -> {after['hits_device']}: the reads did not "
        "reach the SPDK device")
    assert after["device_reads"] > before["device_reads"]
    assert after["errors_device"] == 0
    r.stop()


def test_many_keys_evicted_from_dram_then_read_from_the_device(run_on_spdk: Factory) -> None:
    """20,000 keys through a 1 MiB DRAM tier: reads come from the lvol."""
    r = run_on_spdk(hot_bytes=1 * MIB)
    c = r.client()
    n = 20_000
    start = time.monotonic()
    for lo in range(0, n, 500):
        batch = {b"k%d" % i: _value(i, 16 + i % 900) for i in range(lo, lo + 500)}
        assert c.set_many(batch) == []
        assert time.monotonic() - start < TIME_LIMIT_S
    before = r.dp.counters()["hits_device"]
    for lo in range(0, n, 200):
        keys = [b"k%d" % i for i in range(lo, lo + 200)]
        got = c.get_many(keys)
        for i in range(lo, lo + 200):
            assert got.get(b"k%d" % i) == _value(i, 16 + i % 900), f"key k{i}"
        assert time.monotonic() - start < TIME_LIMIT_S
    grew = r.dp.counters()["hits_device"] - before
    c.close()
    assert grew > n // 2, f"only {grew} of {n} reads were device hits"
    r.stop()


def test_log_wraps_around_on_spdk(run_on_spdk: Factory) -> None:
    """A 32 MiB pool written 2.5 times over: old items evicted, new ones served, index true."""
    r = run_on_spdk(hot_bytes=0, device_bytes=32 * MIB + 4096)
    c = r.client()
    value = 64 * 1024
    n = (80 * MIB) // value
    for i in range(n):
        assert c.set(b"w%d" % i, _value(i, value))
    last = [i for i in range(n - 100, n)]
    for i in last:
        assert c.get(b"w%d" % i) == _value(i, value), f"recent item w{i} lost"
    assert c.get(b"w0") is None, "the oldest item survived 2.5 pool sizes of writes"
    c.close()
    checked, failed = r.dp.verify_index()
    assert failed == 0 and checked > 0, f"verify_index: {failed} of {checked} failed"
    r.stop()


def test_restart_on_the_same_lvol_keeps_every_key(run_on_spdk: Factory) -> None:
    """Destroy the data plane, create it again on the same lvol and index: all keys there."""
    r = run_on_spdk(hot_bytes=1 * MIB)
    c = r.client()
    n = 5_000
    items = {b"r%d" % i: _value(i, 16 + (i * 7919) % 3000) for i in range(n)}
    items[b"big"] = _value(7, MIB - 1024)
    keys = list(items)
    for lo in range(0, len(keys), 250):
        assert c.set_many({k: items[k] for k in keys[lo:lo + 250]}) == []
    c.close()
    r.stop()

    r2 = run_on_spdk(hot_bytes=1 * MIB)
    checked, failed = r2.dp.verify_index()
    assert failed == 0 and checked == len(items), (
        f"verify_index after a clean restart: {failed} failed of {checked} "
        f"(expected {len(items)} entries)")
    c = r2.client()
    missing: list[bytes] = []
    for lo in range(0, len(keys), 200):
        got = c.get_many(keys[lo:lo + 200])
        missing += [k for k in keys[lo:lo + 200] if got.get(k) != items[k]]
    c.close()
    assert not missing, f"{len(missing)} keys lost or wrong after restart: {missing[:5]}"
    assert r2.dp.counters()["hits_device"] > 0
    r2.stop()


def test_bad_namespace_is_refused_with_its_name(spdk: SpdkDataPath, target: Target) -> None:
    """A namespace the subsystem lacks, and a transport we refuse, are named in the error."""
    from spdk_bindings.datapath import SpdkDataPathError

    with pytest.raises(SpdkDataPathError, match=r"no active namespace 7"):
        spdk.open_namespace(target.trid, 7)
    with pytest.raises(SpdkDataPathError, match=r"only trtype:TCP"):
        spdk.open_namespace("trtype:PCIe traddr:0000:00:04.0", 1)
