"""Config validation: every bad input gives one error naming file, line and path."""

import dataclasses
import textwrap
from decimal import Decimal
from pathlib import Path

import pytest

from appliance.runtime.settings import dataplane_settings
from appliance.config import ConfigError, load_config, parse_config, summary

REPO = Path(__file__).resolve().parents[2]
DEFAULT_YAML = REPO / "configs" / "default.yaml"

# A storage section the error cases below edit; line numbers in the expected
# messages count from the first line of each snippet.
STORAGE = """\
storage:
  devices:
    - name: disk
      path: ./store.dat
      size: 1GiB
  pools:
    - name: items
      device: disk
      size: {size}
      segment_size: {segment}
"""


def storage(size: str = "50%", segment: str = "8MiB") -> str:
    return STORAGE.format(size=size, segment=segment)


BAD = [
    pytest.param(
        "memcached:\n  tcpport: 11211\n",
        "configs/x.yaml:2: memcached.tcpport: unknown key; did you mean tcp_port? expected one of "
        "listen, tcp_port, udp_port, workers, max_connections, idle_timeout, item_size_max, "
        "udp_reply_rate, udp_reply_burst",
        id="unknown-key"),
    pytest.param(
        "logging:\n  level: info\nbackend: []\n",
        "configs/x.yaml:3: backend: unknown key; did you mean backends? expected one of "
        "memcached, storage, logging, backends, backend_defaults, spare_pools, routing, dataplane, console, objects",
        id="unknown-section"),
    pytest.param(
        "memcached:\n  max_connections: many\n",
        "configs/x.yaml:2: memcached.max_connections: expected a number of connections from 1 "
        "to 1000000, got 'many'",
        id="wrong-type"),
    pytest.param(
        "memcached:\n  tcp_port: '11211'\n",
        "configs/x.yaml:2: memcached.tcp_port: expected a port number from 0 to 65535, "
        "got '11211'",
        id="port-as-string"),
    pytest.param(
        "memcached:\n  listen: 127.0.0.1\n  tcp_port: 65536\n",
        "configs/x.yaml:3: memcached.tcp_port: expected a port number from 0 to 65535, got 65536",
        id="port-out-of-range"),
    pytest.param(
        "memcached:\n  udp_port: -1\n",
        "configs/x.yaml:2: memcached.udp_port: expected a port number from 0 to 65535, or null "
        "for no UDP listener, got -1",
        id="udp-port-negative"),
    pytest.param(
        "memcached:\n  listen: localhost\n",
        "configs/x.yaml:2: memcached.listen: expected a numeric IPv4 or IPv6 address like "
        "127.0.0.1 or ::1, got 'localhost'",
        id="listen-hostname"),
    pytest.param(
        "memcached:\n  workers: 0\n",
        "configs/x.yaml:2: memcached.workers: expected auto or a number of threads from 1 to "
        "1024, got 0",
        id="workers-zero"),
    pytest.param(
        "memcached:\n  enabled: yes\n  workers: true\n",
        "configs/x.yaml:2: memcached.enabled: unknown key; expected one of listen, tcp_port, "
        "udp_port, workers, max_connections, idle_timeout, item_size_max, udp_reply_rate, "
        "udp_reply_burst",
        id="first-problem-wins"),
    pytest.param(
        "memcached:\n  idle_timeout: 30\n",
        "configs/x.yaml:2: memcached.idle_timeout: expected a duration like 200ms, 5s or 2m "
        "(a unit is required), got 30",
        id="duration-without-unit"),
    pytest.param(
        "memcached:\n  idle_timeout: 1500ms\n",
        "configs/x.yaml:2: memcached.idle_timeout: expected a duration in whole seconds like "
        "30s or 5m, got '1500ms'",
        id="idle-timeout-subsecond"),
    pytest.param(
        "memcached:\n  item_size_max: 512\n",
        "configs/x.yaml:2: memcached.item_size_max: expected a size from 1KiB to 128MiB, got 512",
        id="item-size-too-small"),
    pytest.param(
        "storage:\n  hot_tier: lots\n",
        "configs/x.yaml:2: storage.hot_tier: expected a size like 4GiB, 512KiB or 10MB (plain "
        "integers are bytes), got 'lots'",
        id="bad-unit"),
    pytest.param(
        "storage:\n  flush_interval: 200 msec\n",
        "configs/x.yaml:2: storage.flush_interval: expected a duration like 200ms, 5s or 2m, "
        "got '200 msec'",
        id="bad-duration-unit"),
    pytest.param(
        storage(size="lots"),
        "configs/x.yaml:9: storage.pools[0].size: expected a size like 4GiB or 60%, got 'lots'",
        id="pool-size-bad-unit"),
    pytest.param(
        storage(size="150%"),
        "configs/x.yaml:9: storage.pools[0].size: expected a size like 4GiB or 60% (a "
        "percentage above 0% and at most 100%), got '150%'",
        id="bad-percent"),
    pytest.param(
        storage(size="2GiB"),
        "configs/x.yaml:9: storage.pools[0].size: pools on device 'disk' need 2049MiB (with "
        "its 1MiB label and MiB alignment) but the device has 1GiB; shrink the pool or grow the device",
        id="pool-bigger-than-device"),
    pytest.param(
        storage(size="16MiB"),
        "configs/x.yaml:9: storage.pools[0].size: expected at least 4 segments and the pool's "
        "4KiB superblock (32772KiB with segment_size 8MiB), got 16MiB",
        id="pool-under-four-segments"),
    pytest.param(
        storage(segment="1MiB"),
        "configs/x.yaml:10: storage.pools[0].segment_size: expected at least "
        "memcached.item_size_max + 4KiB (1MiB + 4KiB), got 1MiB; use segment_size: 2MiB or "
        "lower memcached.item_size_max",
        id="segment-too-small"),
    pytest.param(
        storage(segment="3MiB"),
        "configs/x.yaml:10: storage.pools[0].segment_size: expected a power of two from 1MiB "
        "to 256MiB like 8MiB, got '3MiB'",
        id="segment-not-power-of-two"),
    pytest.param(
        "memcached:\n  item_size_max: 8MiB\n",
        "configs/x.yaml:2: memcached.item_size_max: expected at most "
        "storage.pools[0].segment_size - 4KiB (8188KiB), got 8MiB; lower item_size_max or set "
        "storage.pools[0].segment_size: 16MiB",
        id="item-too-big-for-default-segment"),
    pytest.param(
        storage().replace("device: disk", "device: ssd"),
        "configs/x.yaml:8: storage.pools[0].device: expected the name of a device in "
        "storage.devices (disk), got 'ssd'",
        id="missing-device"),
    pytest.param(
        storage() + "    - name: items\n      device: disk\n      size: 10%\n",
        "configs/x.yaml:11: storage.pools[1].name: duplicate name 'items' (also "
        "storage.pools[0])",
        id="duplicate-pool"),
    pytest.param(
        storage() + "    - name: more\n      device: disk\n      size: 10%\n",
        "configs/x.yaml:11: storage.pools[1].role: only one memcached pool is supported for "
        "now; remove this one",
        id="second-memcached-pool"),
    pytest.param(
        storage().replace("  pools:\n", "    - name: disk\n      path: ./b.dat\n"
                          "      size: 1GiB\n  pools:\n"),
        "configs/x.yaml:6: storage.devices[1].name: duplicate name 'disk' (also "
        "storage.devices[0])",
        id="duplicate-device"),
    pytest.param(
        storage().replace("      path:", "      kind: spdk\n      path:"),
        "configs/x.yaml:3: storage.devices[0].transport: missing; a kind: spdk device needs "
        "a transport (pcie, tcp, aio, uring)",
        id="spdk-without-transport"),
    pytest.param(
        storage().replace("      segment_size:", "      role: objects\n      segment_size:"),
        "configs/x.yaml:7: storage.pools: expected exactly one pool with role memcached, "
        "got none",
        id="objects-only"),
    pytest.param(
        storage() + "    - name: more\n      device: disk\n      size: 60%\n      role: objects\n",
        "configs/x.yaml:13: storage.pools[1].size: pools on device 'disk' add up to 110% of "
        "it; percentages on one device must sum to at most 100%",
        id="percent-over-100"),
    pytest.param(
        storage().replace("      size: 1GiB\n", ""),
        "configs/x.yaml:3: storage.devices[0].size: missing; a device of kind file needs a "
        "size (how large the file is made)",
        id="file-without-size"),
    pytest.param(
        storage().replace("      path: ./store.dat\n", ""),
        "configs/x.yaml:3: storage.devices[0].path: missing; a device of kind file needs a path",
        id="device-without-path"),
    pytest.param(
        "storage:\n  devices:\n    - name: disk\n      path: x\n      size: 1GiB\n",
        "configs/x.yaml:2: storage.pools: missing; a storage section that lists its own "
        "devices needs a pools list too",
        id="devices-without-pools"),
    pytest.param(
        "storage:\n  pools: []\n",
        "configs/x.yaml:2: storage.pools: expected exactly one pool with role memcached, got none",
        id="no-pool"),
    pytest.param(
        "memcached: 11211\n",
        "configs/x.yaml:1: memcached: expected a mapping of memcached settings, got 11211",
        id="section-not-mapping"),
    pytest.param(
        "storage:\n  devices: disk\n  pools: []\n",
        "configs/x.yaml:2: storage.devices: expected a list of devices, got 'disk'",
        id="list-not-list"),
    pytest.param(
        "memcached:\n\ttcp_port: 11211\n",
        "configs/x.yaml:2: YAML syntax error: found character '\\t' that cannot start any token "
        "(while scanning for the next token) (YAML indents with spaces; replace the tab "
        "characters)",
        id="tab"),
    pytest.param(
        "memcached:\n  tcp_port: 11211\n   udp_port: 11211\n",
        "configs/x.yaml:3: YAML syntax error: mapping values are not allowed here (check the "
        "indentation of this line and the one above)",
        id="indentation"),
    pytest.param(
        "memcached:\n  tcp_port: 1\n  tcp_port: 2\n",
        "configs/x.yaml:3: duplicate key 'tcp_port' (first written on line 2)",
        id="duplicate-key"),
    pytest.param(
        "- memcached\n",
        "configs/x.yaml:1: expected a mapping of sections (memcached, storage, logging, "
        "backends, backend_defaults, spare_pools, routing, dataplane, console, objects), got a list",
        id="top-level-list"),
    pytest.param(
        "logging:\n  level: loud\n",
        "configs/x.yaml:2: logging.level: expected one of debug, info, warning, error, "
        "got 'loud'",
        id="log-level"),
]


@pytest.mark.parametrize(("text", "message"), BAD)
def test_bad_config_names_file_line_and_path(text: str, message: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "configs/x.yaml", base_dir=tmp_path)
    assert str(info.value) == message
    assert "\n" not in str(info.value)


def test_error_carries_its_parts(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(storage(size="lots"), "configs/x.yaml", base_dir=tmp_path)
    err = info.value
    assert (err.file, err.line, err.path) == ("configs/x.yaml", 9, "storage.pools[0].size")
    assert "expected a size like 4GiB or 60%" in err.message


def test_defaults_match_default_yaml(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The schema's defaults and configs/default.yaml must say the same thing."""
    monkeypatch.chdir(tmp_path)
    from_file = load_config(DEFAULT_YAML)
    built_in = parse_config("")
    assert dataclasses.replace(from_file, source=None) == built_in


def test_default_yaml_values(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config(DEFAULT_YAML)
    mc, st = config.memcached, config.storage
    assert (mc.listen, mc.tcp_port, mc.udp_port, mc.workers) == ("127.0.0.1", 11211, 11211, None)
    assert (mc.idle_timeout, mc.item_size_max) == (0, 1024**2)
    assert (mc.udp_reply_rate, mc.udp_reply_burst) == (4 * 1024**2, 512 * 1024)
    assert st.dir == tmp_path / "var"
    assert st.index_dir == tmp_path / "var" / "index"
    assert (st.hot_tier, st.flush_interval) == (64 * 1024**2, 200)
    pool = st.memcached_pool
    assert (pool.size, pool.size_percent, pool.segment_size, pool.segments) == (
        1023 * 1024**2, Decimal(50), 8 * 1024**2, 127)  # the label takes 1MiB of 2GiB
    o = config.objects
    assert o is not None and (o.host, o.port, o.pool, o.chunk_size) == (
        "127.0.0.1", 8081, "objects", 1024**2)
    assert [(b.name, b.kind) for b in o.buckets] == [("default", "local")]
    assert "objects=http://127.0.0.1:8081/" in summary(config)
    assert st.device(pool.device).path == tmp_path / "var" / "store.dat"
    assert config.logging.level == "info"
    assert "tcp=127.0.0.1:11211 udp=127.0.0.1:11211" in summary(config)


def test_percent_of_device_and_relative_paths(tmp_path: Path) -> None:
    config = parse_config(storage(size="60%"), "x.yaml", base_dir=tmp_path)
    pool = config.storage.memcached_pool
    # percent of the space after the 1MiB label, in whole MiB
    assert pool.size == int(1023 * 1024**2 * 60 / 100) // 1024**2 * 1024**2
    assert pool.size_percent == Decimal(60)
    assert config.storage.device("disk").path == tmp_path / "store.dat"


def test_ipv6_listen_and_udp_off(tmp_path: Path) -> None:
    config = parse_config("memcached:\n  listen: '0:0::1'\n  udp_port: null\n",
                          base_dir=tmp_path)
    assert config.memcached.listen == "::1"
    assert config.memcached.udp_port is None
    assert "tcp=[::1]:11211 udp=off" in summary(config)


def test_empty_sections_take_defaults(tmp_path: Path) -> None:
    config = parse_config("memcached:\nstorage:\nlogging:\n", base_dir=tmp_path)
    assert config == parse_config("", base_dir=tmp_path)


def test_config_is_frozen(tmp_path: Path) -> None:
    config = parse_config("", base_dir=tmp_path)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.memcached.tcp_port = 1  # type: ignore[misc]


def test_missing_file_is_one_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(missing)
    assert str(info.value).startswith(f"{missing}: no such file")


def test_dataplane_settings_translation(tmp_path: Path) -> None:
    text = textwrap.dedent("""\
        memcached:
          listen: ::1
          tcp_port: 0
          udp_port: null
          workers: 3
          idle_timeout: 2m
          item_size_max: 2MiB
        storage:
          dir: state
          flush_interval: 50ms
          devices:
            - {name: disk, path: state/dev.dat, size: 1GiB}
          pools:
            - {name: items, device: disk, size: 25%, segment_size: 4MiB}
        """)
    config = parse_config(text, base_dir=tmp_path)
    s = dataplane_settings(config)
    assert (s.listen_host, s.tcp_port, s.udp_port, s.workers) == ("::1", 0, -1, 3)
    assert s.idle_timeout_s == 120
    assert s.store.index_dir == str(tmp_path / "state" / "index")
    assert s.store.device_path == str(tmp_path / "state" / "dev.dat")
    assert (s.store.device_bytes, s.store.segment_bytes) == (255 * 1024**2, 4 * 1024**2)
    assert s.store.device_offset == 1024**2
    assert (s.store.item_size_max, s.store.flush_interval_ms) == (2 * 1024**2, 50)
    quiet = dataplane_settings(config, listen=False)
    assert (quiet.tcp_port, quiet.udp_port, quiet.workers) == (-1, -1, 1)
