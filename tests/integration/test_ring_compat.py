"""SmartSwitch picks the same owner as twemproxy and libmemcached, observed on real back ends.

Issue 3's compatibility bullet: 5 real memcached back ends with distinct
weights; keys are set through the reference (nutcracker, i.e. twemproxy, or
pylibmc, i.e. libmemcached with weighted ketama), then every back end is asked
which keys it holds, and appliance.proxy.ring's owner (ss_hash_key + ss_ring_lookup
in C) must equal the observed back end for every key. Each scenario flushes
the back ends first, so what a back end holds is what that reference put there.

Bounded: a fixed number of keys, batched (pipelined sets, multi-gets);
loopback only; every process started here is killed at teardown.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from appliance.proxy.ring import RingMember, build_ring, owner

from .helpers.procs import Server, free_port, start_memcached

pylibmc = pytest.importorskip("pylibmc")

NUTCRACKER = shutil.which("nutcracker") or "/usr/sbin/nutcracker"
WEIGHTS = (1, 2, 3, 1, 5)
BATCH = 1000
IO_TIMEOUT_S = 10.0


def _random_keys(n: int, seed: int) -> list[bytes]:
    """n distinct valid text-protocol keys: printable ASCII, some with UTF-8 bytes >= 0x80."""
    rnd = random.Random(seed)
    printable = bytes(range(0x21, 0x7F))
    keys: set[bytes] = set()
    while len(keys) < n:
        key = bytes(rnd.choice(printable) for _ in range(rnd.randrange(1, 48)))
        if rnd.random() < 0.1:  # high bytes exercise the sign extension of key bytes
            key += "é✓".encode() * rnd.randrange(1, 3)
        keys.add(key)
    return sorted(keys)


@pytest.fixture(scope="module")
def backends(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Server]]:
    """Five real memcached processes on loopback, killed at teardown."""
    log_dir = tmp_path_factory.mktemp("ring-backends")
    servers: list[Server] = []
    try:
        for _ in WEIGHTS:
            servers.append(start_memcached(log_dir))
        yield servers
    finally:
        for srv in servers:
            srv.kill9()


def _flush(servers: Sequence[Server]) -> None:
    for srv in servers:
        with socket.create_connection(srv.addr, timeout=IO_TIMEOUT_S) as s:
            s.sendall(b"flush_all\r\n")
            assert s.recv(100) == b"OK\r\n"


def _held_by(servers: Sequence[Server], keys: Sequence[bytes]) -> list[int]:
    """For each key, the index of the back end holding it (asserting exactly one does)."""
    where = [-1] * len(keys)
    pos = {k: i for i, k in enumerate(keys)}
    for b, srv in enumerate(servers):
        client = pylibmc.Client([f"{srv.host}:{srv.port}"], binary=False)
        try:
            for start in range(0, len(keys), BATCH):
                for key in client.get_multi(list(keys[start:start + BATCH])):
                    i = pos[key]
                    assert where[i] == -1, f"{key!r} is on back ends {where[i]} and {b}"
                    where[i] = b
        finally:
            client.disconnect_all()
    missing = [keys[i] for i, w in enumerate(where) if w == -1]
    assert not missing, f"{len(missing)} keys on no back end, e.g. {missing[:3]}"
    return where


def _members(servers: Sequence[Server], named: bool) -> list[RingMember]:
    return [RingMember(i, f"mc{i + 1}" if named else "", srv.host, srv.port, w)
            for i, (srv, w) in enumerate(zip(servers, WEIGHTS, strict=True))]


def _assert_same_owner(servers: Sequence[Server], keys: Sequence[bytes],
                       members: Sequence[RingMember], distribution: str, compat: str,
                       hash_name: str) -> None:
    ring = build_ring(members, distribution, compat)
    observed = _held_by(servers, keys)
    mismatched = [(k, observed[i]) for i, k in enumerate(keys)
                  if owner(ring, k, hash_name) != observed[i]]
    per_backend = [observed.count(b) for b in range(len(servers))]
    assert not mismatched, (
        f"{compat}/{distribution}/{hash_name}: {len(mismatched)} of {len(keys)} keys differ "
        f"(observed spread {per_backend}), e.g. {mismatched[:3]}")
    # Every back end got keys, so the test did exercise the whole ring.
    assert all(per_backend), per_backend


# ---------------------------------------------------------------- twemproxy


def _wait_listening(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"nutcracker exited:\n{log.read_text(errors='replace')}"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nutcracker never listened:\n{log.read_text(errors='replace')}")


def _start_nutcracker(tmp_path: Path, servers: Sequence[Server], distribution: str,
                      hash_name: str, named: bool) -> tuple[subprocess.Popen[bytes], int, Path]:
    port = free_port()
    lines = [
        "ring:",
        f"  listen: 127.0.0.1:{port}",
        f"  hash: {hash_name}",
        f"  distribution: {distribution}",
        "  auto_eject_hosts: false",
        "  timeout: 5000",
        "  servers:",
    ]
    for i, (srv, w) in enumerate(zip(servers, WEIGHTS, strict=True)):
        name = f" mc{i + 1}" if named else ""
        lines.append(f"    - {srv.host}:{srv.port}:{w}{name}")
    conf = tmp_path / f"nutcracker-{hash_name}.yml"
    conf.write_text("\n".join(lines) + "\n")
    log = tmp_path / f"nutcracker-{hash_name}.log"
    args = [NUTCRACKER, "-c", str(conf), "-o", str(log), "-s", str(free_port()),
            "-a", "127.0.0.1", "-v", "4"]
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_listening(port, proc, log)
    except BaseException:
        proc.kill()
        proc.wait(10)
        raise
    return proc, port, log


def _set_through(port: int, keys: Sequence[bytes]) -> None:
    """Pipelined `set` of every key (value = key) through one connection, batch by batch."""
    with socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT_S) as s:
        for start in range(0, len(keys), BATCH):
            batch = keys[start:start + BATCH]
            s.sendall(b"".join(b"set %s 0 0 %d\r\n%s\r\n" % (k, len(k), k) for k in batch))
            want = b"STORED\r\n" * len(batch)
            got = b""
            while len(got) < len(want):
                chunk = s.recv(65536)
                assert chunk, f"connection closed after {got[-200:]!r}"
                got += chunk
            assert got == want, f"unexpected replies: {got[:200]!r}"


@pytest.mark.skipif(not Path(NUTCRACKER).exists(), reason="nutcracker (twemproxy) not "
                    "installed: `apt-get install nutcracker` (make system-deps does)")
@pytest.mark.parametrize(("distribution", "hash_name", "named", "nkeys"), [
    ("ketama", "md5", True, 100_000),      # the bullet: 100,000 keys, named servers
    ("ketama", "fnv1a_64", False, 20_000),  # a non-md5 hash; points named "host:port"
    ("ketama", "murmur", True, 20_000),
    ("modula", "crc32a", True, 20_000),     # each server weight times in the modula list
])
def test_owner_matches_twemproxy(backends: list[Server], tmp_path: Path, distribution: str,
                                 hash_name: str, named: bool, nkeys: int) -> None:
    keys = _random_keys(nkeys, seed=3)
    _flush(backends)
    proc, port, log = _start_nutcracker(tmp_path, backends, distribution, hash_name, named)
    try:
        _set_through(port, keys)
        assert proc.poll() is None, log.read_text(errors="replace")
    finally:
        proc.kill()
        proc.wait(10)
    _assert_same_owner(backends, keys, _members(backends, named), distribution, "twemproxy",
                       hash_name)


# ------------------------------------------------------------- libmemcached


@pytest.mark.parametrize(("distribution", "pylibmc_hash", "hash_name", "nkeys"), [
    ("ketama", "md5", "md5", 100_000),          # the bullet
    ("ketama", "fnv1a_64", "fnv1a_64", 20_000),
    ("ketama", "jenkins", "jenkins", 20_000),
    # crc32 is 15 bits wide: on a ketama ring every key would sit before the
    # first point, so it is checked with modula (hash % 5, weights unused).
    ("modula", "crc", "crc32", 20_000),         # libmemcached's "crc" is our crc32
    ("modula", "default", "one_at_a_time", 20_000),
])
def test_owner_matches_libmemcached(backends: list[Server], distribution: str, pylibmc_hash: str,
                                    hash_name: str, nkeys: int) -> None:
    keys = _random_keys(nkeys, seed=4)
    _flush(backends)
    client = pylibmc.Client([f"{srv.host}:{srv.port}:{w}"
                             for srv, w in zip(backends, WEIGHTS, strict=True)], binary=False)
    try:
        # ketama_weighted resets the key hash to md5, so the hash is set after it
        # (and ketama_weighted=False would turn plain ketama on, so modula omits it).
        client.behaviors = ({"ketama_weighted": True, "tcp_nodelay": True}
                            if distribution == "ketama" else {"tcp_nodelay": True})
        client.behaviors = {"hash": pylibmc_hash}
        behaviors = client.behaviors
        assert behaviors["hash"] == pylibmc_hash
        assert behaviors["distribution"] == (
            "consistent weighted" if distribution == "ketama" else "modula"), behaviors
        for start in range(0, len(keys), BATCH):
            batch = keys[start:start + BATCH]
            assert client.set_multi({k: k for k in batch}) == []
    finally:
        client.disconnect_all()
    _assert_same_owner(backends, keys, _members(backends, named=True), distribution,
                       "libmemcached", hash_name)
