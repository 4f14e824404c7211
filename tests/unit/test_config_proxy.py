"""Proxy-mode config: back ends, defaults, spare pools, routing; names agree with C."""

import dataclasses
import hashlib
import textwrap
import zlib
from pathlib import Path

import pytest

from appliance.config import proxy as config_proxy
from appliance.config import ConfigError, parse_config, summary
from dataplane import fastpath

TWO = """\
backends:
  - {name: mc1, host: 127.0.0.1, port: 11212}
  - name: mc2
    host: 127.0.0.1
    port: 11213
    weight: 2
"""

SPARE = """\
spare_pools:
  spare:
    - {name: s1, host: 127.0.0.1, port: 11300}
"""

BAD = [
    pytest.param(
        "backends:\n  - name: mc1\n    host: 127.0.0.1\n    port: 0\n",
        "p.yaml:4: backends[0].port: expected a port number from 1 to 65535, got 0",
        id="port-zero"),
    pytest.param(
        TWO + "  - {name: mc3, host: 127.0.0.1, port: 70000}\n",
        "p.yaml:7: backends[2].port: expected a port number from 1 to 65535, got 70000",
        id="port-out-of-range"),
    pytest.param(
        "backends:\n  - {name: mc1, host: mc1.example.com, port: 11212}\n",
        "p.yaml:2: backends[0].host: expected a numeric IPv4 or IPv6 address like 127.0.0.1 "
        "or ::1, got 'mc1.example.com'",
        id="host-name"),
    pytest.param(
        "backends:\n  - {name: mc1, port: 11212}\n",
        "p.yaml:2: backends[0].host: missing; every back end needs a host",
        id="host-missing"),
    pytest.param(
        "backends:\n  - {name: mc1, host: 127.0.0.1, port: 11212, weight: 0}\n",
        "p.yaml:2: backends[0].weight: expected a weight from 1 to 1000000, got 0",
        id="weight-zero"),
    pytest.param(
        "backends:\n  - {name: mc1, host: 127.0.0.1, port: 11212, wieght: 2}\n",
        "p.yaml:2: backends[0].wieght: unknown key; did you mean weight? expected one of name, "
        "host, port, weight, connect_timeout, request_timeout, failure_limit, retry_after, "
        "failure_policy, failover_pool",
        id="unknown-backend-key"),
    pytest.param(
        "backends: mc1\n",
        "p.yaml:1: backends: expected a list of back ends, got 'mc1'",
        id="backends-not-list"),
    pytest.param(
        TWO + "  - {name: mc1, host: 127.0.0.1, port: 11214}\n",
        "p.yaml:7: backends[2].name: duplicate name 'mc1' (also backends[0])",
        id="duplicate-name"),
    pytest.param(
        TWO + "spare_pools:\n  spare:\n    - {name: mc2, host: 127.0.0.1, port: 11300}\n",
        "p.yaml:9: spare_pools.spare[0].name: duplicate name 'mc2' (also backends[1])",
        id="duplicate-name-across-pools"),
    pytest.param(
        TWO + "  - {name: mc3, host: 127.0.0.1, port: 11212}\n",
        "p.yaml:7: backends[2].port: duplicate address 127.0.0.1:11212 (also backends[0])",
        id="duplicate-address"),
    pytest.param(
        "backends:\n  - {name: me, host: 127.0.0.1, port: 11211}\n",
        "p.yaml:2: backends[0].port: 127.0.0.1:11211 is this appliance's own memcached.listen "
        "and tcp_port; a back end must be another server",
        id="self-as-backend"),
    pytest.param(
        TWO + "backend_defaults:\n  failure_policy: failover\n",
        "p.yaml:8: backend_defaults.failure_policy: failure_policy failover needs "
        "failover_pool, the name of a pool in spare_pools (none are defined)",
        id="failover-without-pool-default"),
    pytest.param(
        TWO + "  - {name: mc3, host: 127.0.0.1, port: 11214, failure_policy: failover}\n" + SPARE,
        "p.yaml:7: backends[2].failure_policy: failure_policy failover needs failover_pool, "
        "the name of a pool in spare_pools (spare)",
        id="failover-without-pool"),
    pytest.param(
        TWO + "  - {name: mc3, host: 127.0.0.1, port: 11214, failure_policy: failover,\n"
        "     failover_pool: spares}\n" + SPARE,
        "p.yaml:8: backends[2].failover_pool: expected the name of a pool in spare_pools "
        "(spare), got 'spares'",
        id="failover-unknown-pool"),
    pytest.param(
        TWO + "backend_defaults:\n  failover_pool: nowhere\n" + SPARE,
        "p.yaml:8: backend_defaults.failover_pool: expected the name of a pool in spare_pools "
        "(spare), got 'nowhere'",
        id="default-unknown-pool"),
    pytest.param(
        TWO + "  - {name: mc3, host: 127.0.0.1, port: 11214, failover_pool: spare}\n" + SPARE,
        "p.yaml:7: backends[2].failover_pool: failover_pool is used only with failure_policy "
        "failover (this back end's is eject)",
        id="pool-without-failover"),
    pytest.param(
        TWO + "spare_pools:\n  spare:\n    - {name: s1, host: 127.0.0.1, port: 11300,\n"
        "       failure_policy: failover, failover_pool: spare}\n",
        "p.yaml:10: spare_pools.spare[0].failure_policy: a back end in a spare pool can't "
        "fail over further; use eject or fail",
        id="spare-fails-over"),
    pytest.param(
        SPARE,
        "p.yaml:2: spare_pools: spare pools serve proxy mode only; add a backends list or "
        "remove spare_pools",
        id="spare-without-backends"),
    pytest.param(
        TWO + "spare_pools:\n  spare: []\n",
        "p.yaml:8: spare_pools.spare: expected a list of at least one back end, got an empty "
        "list",
        id="spare-empty"),
    pytest.param(
        TWO + "spare_pools:\n  - {name: s1, host: 127.0.0.1, port: 11300}\n",
        "p.yaml:8: spare_pools: expected a mapping of spare pool name to a list of back ends, "
        "got a list",
        id="spare-not-mapping"),
    pytest.param(
        TWO + "spare_pools:\n  'bad name':\n    - {name: s1, host: 127.0.0.1, port: 11300}\n",
        "p.yaml:8: spare_pools.bad name: expected a name of letters, digits, '.', '-' or '_' "
        "(at most 63) as a spare pool name, got 'bad name'",
        id="spare-bad-name"),
    pytest.param(
        "routing:\n  hash: sha1\n",
        "p.yaml:2: routing.hash: expected one of md5, crc32, crc32a, fnv1_64, fnv1a_64, "
        "fnv1_32, fnv1a_32, one_at_a_time, murmur, jenkins, hsieh, got 'sha1'",
        id="unknown-hash"),
    pytest.param(
        "routing:\n  distribution: consistent\n",
        "p.yaml:2: routing.distribution: expected one of ketama, modula, got 'consistent'",
        id="unknown-distribution"),
    pytest.param(
        "routing:\n  compat: nutcracker\n",
        "p.yaml:2: routing.compat: expected one of libmemcached, twemproxy, got 'nutcracker'",
        id="unknown-compat"),
    pytest.param(
        "routing:\n  admission: sometimes\n",
        "p.yaml:2: routing.admission: expected one of always, second_hit, never, "
        "got 'sometimes'",
        id="unknown-admission"),
    pytest.param(
        "routing:\n  admission_max_size: big\n",
        "p.yaml:2: routing.admission_max_size: expected a size like 4GiB, 512KiB or 10MB "
        "(plain integers are bytes), got 'big'",
        id="bad-size"),
    pytest.param(
        "routing:\n  local_ttl_max: 1500ms\n",
        "p.yaml:2: routing.local_ttl_max: expected a duration in whole seconds like 30s or 5m, "
        "got '1500ms'",
        id="ttl-subsecond"),
    pytest.param(
        "routing:\n  allow_flush_all: 'yes'\n",
        "p.yaml:2: routing.allow_flush_all: expected true or false, got 'yes'",
        id="flush-not-bool"),
    pytest.param(
        "routing:\n  connections_per_backend: 0\n",
        "p.yaml:2: routing.connections_per_backend: expected a number of connections from 1 "
        "to 64, got 0",
        id="no-connections"),
    pytest.param(
        "backends:\n  - {name: mc1, host: 127.0.0.1, port: 11212, connect_timeout: 5}\n",
        "p.yaml:2: backends[0].connect_timeout: expected a duration like 200ms, 5s or 2m (a "
        "unit is required), or null for the backend_defaults value, got 5",
        id="duration-without-unit"),
    pytest.param(
        "backend_defaults:\n  retry_after: 1ms\n",
        "p.yaml:2: backend_defaults.retry_after: expected a duration from 10ms to 1h, "
        "got '1ms'",
        id="retry-too-often"),
    pytest.param(
        "backend_defaults:\n  failure_policy: retry\n",
        "p.yaml:2: backend_defaults.failure_policy: expected one of eject, fail, failover, "
        "got 'retry'",
        id="unknown-policy"),
]


@pytest.mark.parametrize(("text", "message"), BAD)
def test_bad_proxy_config(text: str, message: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "p.yaml", base_dir=tmp_path)
    assert str(info.value) == message


def test_no_backends_is_standalone(tmp_path: Path) -> None:
    plain = parse_config("", base_dir=tmp_path)
    empty = parse_config("backends: []\nrouting:\n  hash: crc32\n", base_dir=tmp_path)
    assert not plain.proxy and not empty.proxy
    assert plain.all_backends == ()
    assert "proxy" not in summary(empty)


def test_defaults_resolve_into_each_backend(tmp_path: Path) -> None:
    text = TWO + textwrap.dedent("""\
          - {name: mc3, host: '::1', port: 11214, request_timeout: 2s, failure_policy: fail}
        backend_defaults:
          connect_timeout: 50ms
          failure_policy: failover
          failover_pool: spare
        spare_pools:
          spare:
            - {name: s1, host: 127.0.0.1, port: 11300}
          more:
            - {name: s2, host: 127.0.0.1, port: 11301, weight: 3}
        routing:
          distribution: modula
          hash: fnv1a_64
          compat: twemproxy
          admission: second_hit
          local_ttl_max: 0s
        """)
    config = parse_config(text, base_dir=tmp_path)
    assert config.proxy
    mc1, mc2, mc3 = config.backends
    assert (mc1.connect_timeout, mc1.request_timeout, mc1.failure_limit, mc1.retry_after) == (
        50, 500, 3, 1000)
    assert (mc1.failure_policy, mc1.failover_pool) == ("failover", "spare")
    assert mc2.weight == 2
    assert (mc3.host, mc3.address, mc3.request_timeout) == ("::1", "[::1]:11214", 2000)
    # A back end with its own policy drops the inherited pool.
    assert (mc3.failure_policy, mc3.failover_pool) == ("fail", None)
    # An inherited failover means "stay in this pool" for a spare.
    s1 = config.spare_pools[0].backends[0]
    assert (s1.failure_policy, s1.failover_pool, s1.connect_timeout) == ("eject", None, 50)
    assert [p.name for p in config.spare_pools] == ["spare", "more"]
    assert [b.name for b in config.all_backends] == ["mc1", "mc2", "mc3", "s1", "s2"]
    r = config.routing
    assert (r.distribution, r.hash, r.compat, r.admission) == (
        "modula", "fnv1a_64", "twemproxy", "second_hit")
    assert (r.admission_window, r.admission_max_size, r.local_ttl_max) == (10_000, 256 * 1024, 0)
    assert (r.connections_per_backend, r.allow_flush_all) == (2, False)
    assert summary(config).endswith(
        "; proxy to 3 back ends (modula fnv1a_64 twemproxy, spare pool spare: 1, "
        "spare pool more: 1)")


def test_backend_config_is_frozen(tmp_path: Path) -> None:
    config = parse_config(TWO, base_dir=tmp_path)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.backends[0].port = 1  # type: ignore[misc]
    assert config.backends[0].identity == ("mc1", "127.0.0.1", 11212)


def test_proxy_example_is_valid(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[2] / "configs" / "proxy-example.yaml"
    config = parse_config(example.read_text(), str(example), base_dir=tmp_path)
    assert config.proxy


# ------------------------------------------------ names agree with the C side


def _lib() -> object:
    try:
        _, lib = fastpath.load()
    except fastpath.DataplaneError as exc:
        pytest.skip(f"data plane not built: {exc}")
    return lib


def _have_hash(lib: object) -> None:
    # No skip once the C side lands: ss_hash_key is part of the contract.
    assert hasattr(lib, "ss_hash_key"), "the built data plane has no ss_hash_key (ss_proxy.h)"


def test_hash_names_follow_the_c_enum() -> None:
    lib = _lib()
    _have_hash(lib)
    assert lib.SS_HASH__COUNT == len(config_proxy.HASHES)  # type: ignore[attr-defined]
    for i, name in enumerate(config_proxy.HASHES):
        assert getattr(lib, f"SS_HASH_{name.upper()}") == i, name


def _fnv1a_32(data: bytes) -> int:
    h = 0x811C9DC5
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def _fnv1_32(data: bytes) -> int:
    h = 0x811C9DC5
    for b in data:
        h = ((h * 0x01000193) & 0xFFFFFFFF) ^ b
    return h


# Independent references for the kinds whose definition is unambiguous:
# libmemcached's md5 is the first 4 digest bytes little-endian; crc32 is
# libmemcached's (crc >> 16) & 0x7fff, crc32a twemproxy's full crc32.
REFERENCES = {
    "md5": lambda k: int.from_bytes(hashlib.md5(k).digest()[:4], "little"),
    "crc32": lambda k: (zlib.crc32(k) >> 16) & 0x7FFF,
    "crc32a": zlib.crc32,
    "fnv1_32": _fnv1_32,
    "fnv1a_32": _fnv1a_32,
}


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_hash_index_computes_the_named_hash(name: str) -> None:
    lib = _lib()
    _have_hash(lib)
    kind = config_proxy.HASHES.index(name)
    for key in (b"foo", b"user:1234", b"a" * 250):
        assert lib.ss_hash_key(kind, key, len(key)) == REFERENCES[name](key), (  # type: ignore
            name, key)


def test_hash_names_match_the_fastpath_wrapper() -> None:
    assert config_proxy.HASHES == fastpath.HASH_NAMES


# --------------------------------------------------- smartswitch route KEY


class StubAppliance:
    """Answers `me KEY` with a canned line, like the appliance's meta debug."""

    def __init__(self, replies: dict[bytes, bytes]) -> None:
        import socket
        import threading

        self.replies = replies
        self.requests: list[bytes] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        for _ in range(len(self.replies)):
            conn, _ = self.sock.accept()
            with conn:
                line = conn.recv(1000)
                self.requests.append(line)
                key = line.split()[1]
                conn.sendall(self.replies[key])

    def close(self) -> None:
        self.thread.join(5)
        self.sock.close()


def route_config(tmp_path: Path, port: int) -> Path:
    path = tmp_path / "route.yaml"
    path.write_text(f"memcached:\n  tcp_port: {port}\n" + TWO +
                    "  - {name: mc3, host: 127.0.0.1, port: 11214}\n")
    return path


def test_route_prints_owner_and_local_tier(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    from appliance import cli
    from appliance.proxy import ring

    owners = {b"hot": 2, b"cold": 0, b"gone": 1}
    monkeypatch.setattr(ring, "owner", lambda r, key, hash_name: owners[key])
    stub = StubAppliance({
        b"hot": b"ME hot exp=-1 la=3 cas=7 fetch=yes cls=1 size=64 tier=dram\r\n",
        b"cold": b"ME cold exp=-1 la=9 cas=8 fetch=no cls=1 size=70 tier=device\r\n",
        b"gone": b"EN\r\n",
    })
    path = route_config(tmp_path, stub.port)
    try:
        assert cli.main(["route", "hot", "--config", str(path)]) == 0
        assert capsys.readouterr().out == "owner: mc3 127.0.0.1:11214\nlocal: dram\n"
        assert cli.main(["route", "cold", "--config", str(path)]) == 0
        assert capsys.readouterr().out == "owner: mc1 127.0.0.1:11212\nlocal: device\n"
        assert cli.main(["route", "gone", "--config", str(path)]) == 0
        assert capsys.readouterr().out == "owner: mc2 127.0.0.1:11213\nlocal: not cached\n"
    finally:
        stub.close()
    assert stub.requests == [b"me hot\r\n", b"me cold\r\n", b"me gone\r\n"]
    # Nobody listening any more; a key that can't be sent in the text protocol.
    assert cli.main(["route", "hot", "--config", str(path)]) == 0
    assert capsys.readouterr().out.splitlines()[1] == (
        f"local: unknown (no appliance answering on 127.0.0.1:{stub.port})")
    monkeypatch.setitem(owners, b"a b", 0)
    assert cli.main(["route", "a b", "--config", str(path)]) == 0
    assert "not a memcached text key" in capsys.readouterr().out


def test_route_needs_backends(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from appliance import cli

    path = tmp_path / "plain.yaml"
    path.write_text("memcached:\n  tcp_port: 11211\n")
    assert cli.main(["route", "k", "--config", str(path)]) == 2
    assert capsys.readouterr().err == (
        f"{path}: backends: missing; route needs a proxy-mode config (one with back ends)\n")


def test_route_owner_agrees_with_the_ring(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """The real path: C hash + C lookup over the ring built from the config."""
    lib = _lib()
    _have_hash(lib)
    from appliance import cli
    from appliance.proxy import ring, routing

    path = route_config(tmp_path, 0)
    config = parse_config(path.read_text(), str(path), base_dir=tmp_path)
    built = routing.build_ring(config, config.backends)
    seen = set()
    for i in range(200):
        key = f"key:{i}".encode()
        h = int.from_bytes(hashlib.md5(key).digest()[:4], "little")
        # Independent lookup: the first point >= h, wrapping.
        expect = next((b for p, b in built.points if p >= h), built.points[0][1])
        assert ring.owner(built, key, "md5") == expect
        seen.add(expect)
    assert seen == {0, 1, 2}
    assert cli.main(["route", "key:7", "--config", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1] == "local: unknown (memcached.tcp_port is 0: the running port is not in " \
        "the config)"
