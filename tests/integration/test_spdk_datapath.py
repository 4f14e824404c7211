"""The store on an SPDK lvol, in both `storage.spdk.mode`s, driven without the appliance.

Runs whenever SPDK_DIR points at an SPDK tree with build/lib/libspdk_*.so and
build/bin/spdk_tgt. Each test runs a data plane (dataplane.fastpath, real sockets on
127.0.0.1:0) whose store is on an aio-backed lvol, in a child process
(helpers/spdk_dataplane.py: SPDK's libraries need LD_LIBRARY_PATH at process start), and
talks to it with pymemcache. The lvol store and lvols are made by
spdk_bindings.provision (the appliance's own provisioning), in one of two ways:

- external: a module fixture starts spdk_tgt (--no-huge), provisions it and exports
  the lvols over NVMe/TCP on 127.0.0.1; the child is an NVMe-oF initiator.
- embedded: no spdk_tgt; each child starts SPDK itself, provisions the same image file
  through its own RPC server (as the appliance does at each start) and opens the pool's
  lvol bdev directly.

The general data-path tests run in both modes; the NVMe-oF ones only where they mean
something (each says why).
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pymemcache.client.base import Client

from spdk_bindings import provision
from spdk_bindings.datapath import transport_id

from . import test_clients_pymemcache as core
from .helpers.procs import REPO_ROOT, free_port
from .helpers.spdk_target import spdk_env, start_spdk_tgt

pytestmark = pytest.mark.spdk

SPDK_DIR = os.environ.get("SPDK_DIR")
if not SPDK_DIR:
    pytest.skip("SPDK_DIR is not set (point it at an SPDK tree with build/lib/libspdk_*.so "
                "and build/bin/spdk_tgt to run the SPDK data path tests)",
                allow_module_level=True)

MIB = 1024 * 1024
LVOL_MIB = 256
WRAP_MIB = 32  # a second, small pool for the test that wraps the log
POOL_MIB = {"items": LVOL_MIB, "wrap": WRAP_MIB}
NSIDS = {"items": 1, "wrap": 2}  # external: each pool's namespace in the subsystem
NQN = "nqn.2016-06.io.spdk:smartswitch-test"
START_TIMEOUT_S = 60.0
TIME_LIMIT_S = 120.0


@dataclass
class Target:
    """Where the children find the pools: spdk_tgt's subsystem, or an image file that
    each child provisions in its own SPDK."""

    mode: str
    lvol_bytes: int   # pool "items"
    wrap_bytes: int   # pool "wrap"
    trid: str = ""    # external
    image: Path | None = None       # embedded
    rpc_socket: Path | None = None  # embedded: each child's own RPC server

    def device_args(self, pool: str) -> list[str]:
        """The child's arguments that name pool's lvol."""
        if self.mode == "external":
            return ["--trid", self.trid, "--nsid", str(NSIDS[pool])]
        return ["--rpc-socket", str(self.rpc_socket), "--image", str(self.image),
                *[a for name, mib in POOL_MIB.items() for a in ("--pool-mib", f"{name}={mib}")],
                "--pool", pool]

    def pool_bytes(self, pool: str) -> int:
        return self.wrap_bytes if pool == "wrap" else self.lvol_bytes


def _image(work: Path) -> Path:
    image = work / "aio0.img"
    with open(image, "wb") as f:
        f.truncate((LVOL_MIB + WRAP_MIB + 32) * MIB)
    return image


@pytest.fixture(scope="module")
def external_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """spdk_tgt with aio-backed lvols, provisioned by spdk_bindings and exported."""
    assert SPDK_DIR
    work = tmp_path_factory.mktemp("spdk")
    image = _image(work)
    spdk = start_spdk_tgt(SPDK_DIR, work)
    client = spdk.rpc
    try:
        dev = provision.SpdkDevice(name="ss0", transport="aio", rpc_socket=str(spdk.sock),
                                   path=str(image), block_size=4096)
        pools = [provision.SpdkPool(name, mib * MIB) for name, mib in POOL_MIB.items()]
        state = provision.apply_plan(client, provision.plan_device(client, dev, pools))
        port = free_port()
        client.call("nvmf_create_transport", {"trtype": "TCP"})
        client.call("nvmf_create_subsystem", {"nqn": NQN, "allow_any_host": True,
                                              "serial_number": "SS0000000001"})
        for name, nsid in NSIDS.items():
            client.call("nvmf_subsystem_add_ns", {"nqn": NQN, "namespace": {
                "nsid": nsid, "bdev_name": state.pools[name].bdev}})
        client.call("nvmf_subsystem_add_listener", {
            "nqn": NQN, "listen_address": {"trtype": "tcp", "adrfam": "ipv4",
                                           "traddr": "127.0.0.1", "trsvcid": str(port)}})
        yield Target("external", state.pools["items"].size_bytes,
                     state.pools["wrap"].size_bytes, trid=transport_id("127.0.0.1", port, NQN))
    finally:
        spdk.stop()


@pytest.fixture(scope="module")
def embedded_target(tmp_path_factory: pytest.TempPathFactory) -> Target:
    """An image file provisioned once by a child that runs SPDK itself (no spdk_tgt is
    involved); every child after it provisions again and finds the lvols there."""
    work = tmp_path_factory.mktemp("spdk-embedded")
    target = Target("embedded", 0, 0, image=_image(work), rpc_socket=work / "spdk.sock")
    child = Child("provision", target, None, work / "provision.log")
    sizes = {}
    for _ in POOL_MIB:
        name, _bdev, size = child.expect("POOL")
        sizes[name] = int(size)
    child.stop(signal_it=False)  # it exits by itself after provisioning
    target.lvol_bytes, target.wrap_bytes = sizes["items"], sizes["wrap"]
    return target


@pytest.fixture(scope="module", params=["external", "embedded"])
def target(request: pytest.FixtureRequest) -> Target:
    """The general data-path tests run on each; only the external one starts spdk_tgt."""
    return request.getfixturevalue(f"{request.param}_target")


class Child:
    """A data plane on an SPDK lvol, in a child process (helpers/spdk_dataplane.py)."""

    def __init__(self, mode: str, target: Target, index: Path | None, log: Path,
                 pool: str = "items", device: list[str] | None = None, **opts: int) -> None:
        assert SPDK_DIR
        env = spdk_env(SPDK_DIR)
        argv = [sys.executable, "-m", "tests.integration.helpers.spdk_dataplane", mode,
                *(device or target.device_args(pool))]
        if index is not None:
            argv += ["--index", str(index),
                     "--device-bytes", str(opts.pop("device_bytes", target.pool_bytes(pool)))]
        argv += [a for k, v in opts.items() for a in (f"--{k.replace('_', '-')}", str(v))]
        self.log = log
        self._err = open(log, "ab")
        self.proc = subprocess.Popen(argv, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                                     stderr=self._err, start_new_session=True)
        self.lines: list[str] = []

    def expect(self, word: str, timeout: float = START_TIMEOUT_S) -> list[str]:
        """The fields of the first stdout line starting with `word`."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.5)
            if not ready:
                continue
            line = self.proc.stdout.readline().decode()
            if not line:
                break
            self.lines.append(line)
            if line.split()[:1] == [word]:
                return line.split()[1:]
        self.kill()
        raise AssertionError(f"no {word} line from the spdk data plane (exit "
                             f"{self.proc.poll()}); stdout {self.lines}\n{self.log.read_text()}")

    def stop(self, signal_it: bool = True) -> None:
        """SIGTERM (or just wait); the data plane must close its store and exit 0."""
        if signal_it:
            self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout=60)
        self._close()
        assert rc == 0, f"spdk data plane exited {rc}:\n{self.log.read_text()}"

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self._close()

    def _close(self) -> None:
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._err.close()


class Served:
    """A serving child and its address."""

    def __init__(self, child: Child) -> None:
        self.child = child
        size, block = child.expect("DEVICE")
        self.device_bytes, self.block_size = int(size), int(block)
        self.addr = ("127.0.0.1", int(child.expect("READY")[0]))

    def client(self) -> Client:
        return Client(self.addr, connect_timeout=5, timeout=30, default_noreply=False)

    def counters(self) -> dict[str, int]:
        c = self.client()
        out: dict[str, int] = {}
        try:
            for k, v in c.stats().items():
                if isinstance(v, (int, bytes)) and str(int(v) if isinstance(v, int)
                                                       else v.decode()).isdigit():
                    out[k.decode()] = int(v)
        finally:
            c.close()
        return out

    def stop(self) -> None:
        self.child.stop()


Factory = Callable[..., Served]


def _starter(target: Target, tmp_path: Path) -> Iterator[Factory]:
    """Starts data planes on target's lvols (a fresh index per test); kills leftovers."""
    children: list[Child] = []

    def start(pool: str = "items", **opts: int) -> Served:
        child = Child("serve", target, tmp_path / "index", tmp_path / "dataplane.log",
                      pool=pool, **opts)
        children.append(child)
        served = Served(child)
        assert served.device_bytes == target.pool_bytes(pool) and served.block_size == 4096
        return served

    yield start
    for child in children:
        child.kill()


@pytest.fixture
def run_on_spdk(target: Target, tmp_path: Path) -> Iterator[Factory]:
    """Data planes on the lvols, in each mode."""
    yield from _starter(target, tmp_path)


@pytest.fixture
def run_on_external(external_target: Target, tmp_path: Path) -> Iterator[Factory]:
    """Data planes on spdk_tgt's namespaces only, for the NVMe-oF tests."""
    yield from _starter(external_target, tmp_path)


def verify(target: Target, tmp_path: Path, pool: str = "items", **opts: int) -> tuple[int, int]:
    """verify_index on the lvol and the test's index, with no data plane serving."""
    child = Child("verify", target, tmp_path / "index", tmp_path / "verify.log", pool=pool,
                  **opts)
    checked, failed = child.expect("VERIFY")
    child.stop(signal_it=False)  # it exits by itself after verifying
    return int(checked), int(failed)


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
    before = r.counters()
    for k, v in keys.items():
        assert time.monotonic() - start < TIME_LIMIT_S
        assert c.get(k) == v, f"{k!r} ({len(v)} bytes) read back wrong"
    after = r.counters()
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
    before = r.counters()["hits_device"]
    for lo in range(0, n, 200):
        keys = [b"k%d" % i for i in range(lo, lo + 200)]
        got = c.get_many(keys)
        for i in range(lo, lo + 200):
            assert got.get(b"k%d" % i) == _value(i, 16 + i % 900), f"key k{i}"
        assert time.monotonic() - start < TIME_LIMIT_S
    grew = r.counters()["hits_device"] - before
    c.close()
    assert grew > n // 2, f"only {grew} of {n} reads were device hits"
    r.stop()


def test_log_wraps_around_on_spdk(run_on_spdk: Factory, target: Target,
                                  tmp_path: Path) -> None:
    """The 32 MiB pool (its own lvol) written 2.5 times over: old items evicted, new ones
    served, the index true to the device."""
    r = run_on_spdk(pool="wrap", hot_bytes=0)
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
    r.stop()
    checked, failed = verify(target, tmp_path, pool="wrap")
    assert failed == 0 and checked > 0, f"verify_index: {failed} of {checked} failed"


def test_restart_on_the_same_lvol_keeps_every_key(run_on_spdk: Factory, target: Target,
                                                  tmp_path: Path) -> None:
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

    checked, failed = verify(target, tmp_path)
    assert failed == 0 and checked == len(items), (
        f"verify_index after a clean stop: {failed} failed of {checked} "
        f"(expected {len(items)} entries)")
    r2 = run_on_spdk(hot_bytes=1 * MIB)
    c = r2.client()
    missing: list[bytes] = []
    for lo in range(0, len(keys), 200):
        got = c.get_many(keys[lo:lo + 200])
        missing += [k for k in keys[lo:lo + 200] if got.get(k) != items[k]]
    c.close()
    assert not missing, f"{len(missing)} keys lost or wrong after restart: {missing[:5]}"
    assert r2.counters()["hits_device"] > 0
    r2.stop()


# External only: namespaces are NVMe-oF's; embedded opens bdevs (the test below).
def test_bad_namespace_is_refused_with_its_name(external_target: Target,
                                                tmp_path: Path) -> None:
    """A namespace the subsystem lacks is refused with a message that names it."""
    device = ["--trid", external_target.trid, "--nsid", "7"]
    child = Child("verify", external_target, tmp_path / "index", tmp_path / "bad.log",
                  device=device)
    rc = child.proc.wait(timeout=60)
    child.kill()
    text = child.log.read_text()
    assert rc != 0 and "no active namespace 7" in text and NQN in text, text


def test_missing_bdev_is_refused_with_its_name(embedded_target: Target,
                                               tmp_path: Path) -> None:
    """Embedded, the counterpart of a bad namespace: a bdev the embedded SPDK lacks (the
    pools provisioned beside it) is refused with a message that names it."""
    name = "ss0-no-such-lvol"
    device = [*embedded_target.device_args("items"), "--bdev", name]
    child = Child("verify", embedded_target, tmp_path / "index", tmp_path / "bad.log",
                  device=device)
    rc = child.proc.wait(timeout=60)
    child.kill()
    text = child.log.read_text()
    assert rc != 0 and f"bdev {name} cannot be opened" in text, text


# External only: keep-alive is NVMe-oF's; an embedded bdev has no controller to lose.
@pytest.mark.slow
def test_idle_past_the_keep_alive_timeout_still_serves_from_the_device(
        run_on_external: Factory) -> None:
    """NVMe-oF drops a host that sends no keep-alive for 10 s (SPDK's default): the
    device's admin poller keeps the controller alive while no I/O happens."""
    r = run_on_external(hot_bytes=0)
    c = r.client()
    for i in range(12):  # three segments: the first ones are read from the device
        assert c.set(b"idle%d" % i, _value(i, 1000 * 1024))
    time.sleep(25)
    before = r.counters()
    for i in range(12):
        assert c.get(b"idle%d" % i) == _value(i, 1000 * 1024), f"idle{i} after 25 s idle"
    after = r.counters()
    c.close()
    assert after["hits_device"] > before["hits_device"]
    assert after["errors_device"] == before["errors_device"] == 0
    r.stop()
