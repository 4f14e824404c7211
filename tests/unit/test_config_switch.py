"""dataplane section (switch mode): defaults, bad input named by file, line and path."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.config import ConfigError, parse_config
from appliance.runtime.switch import eal_args, switch_settings

GOOD = """\
memcached:
  listen: 10.0.0.1
dataplane:
  mode: dpdk
  dpdk:
    no_huge: true
    vdevs: ["net_af_packet0,iface=eth1"]
    port: net_af_packet0
    service: {address: 10.0.0.1/24}
    rewrite: l2
    backend_macs: {10.0.0.11: "02:00:00:00:00:0b"}
    rules:
      - name: mc
        match: {protocol: udp, dst_port: 11211, src: 10.0.0.0/8}
        chain: [rate-limit, memcached-cache, memcached-route]
"""


def test_socket_mode_is_the_default(tmp_path: Path) -> None:
    config = parse_config("", "x.yaml", base_dir=tmp_path)
    assert config.dataplane.mode == "socket" and not config.dataplane.switch


def test_switch_config_becomes_settings(tmp_path: Path) -> None:
    config = parse_config(GOOD, "x.yaml", base_dir=tmp_path)
    assert config.dataplane.switch
    s = switch_settings(config)
    assert s.port == "net_af_packet0" and s.service_addr == "10.0.0.1" and s.rewrite == 1
    assert s.udp_port == 11211 and s.exception_port == "net_tap_ss0"
    assert s.rules[0].chain == (2, 0, 1) and s.rules[0].src_prefix_len == 8
    assert s.rules[0].src_addr == 10 << 24 and s.rules[0].protocol == 17
    assert s.reply_cache_bytes == 4 * 1024**2  # the default
    assert s.park_max == 256  # the default
    args = eal_args(config)
    assert "--no-huge" in args and "--no-pci" in args
    assert "--vdev=net_af_packet0,iface=eth1" in args
    assert "--vdev=net_tap_ss0,iface=ssw0" in args


def test_default_rules_send_memcached_udp_through_the_cache(tmp_path: Path) -> None:
    text = GOOD.split("    rules:")[0]
    s = switch_settings(parse_config(text, "x.yaml", base_dir=tmp_path))
    assert [(r.protocol, r.dst_port, r.chain) for r in s.rules] == [(17, 11211, (0, 1))]


BAD = [
    (GOOD.replace("mode: dpdk", "mode: kernel"), "x.yaml:4: dataplane.mode: expected one of "
     "socket, dpdk"),
    (GOOD.replace("    port: net_af_packet0\n", ""), "x.yaml:6: dataplane.dpdk.port: missing"),
    (GOOD.replace("10.0.0.1/24", "10.0.0.1"), "x.yaml:9: dataplane.dpdk.service.address: "
     "expected an IPv4 address with its prefix length"),
    (GOOD.replace("rewrite: l2", "rewrite: l2\n    reply_cache: lots"), "x.yaml:11: "
     "dataplane.dpdk.reply_cache: expected a size"),
    (GOOD.replace("rewrite: l2", "rewrite: l2\n    park: 0"), "x.yaml:11: "
     "dataplane.dpdk.park: expected a number of parked requests"),
    (GOOD.replace("rewrite: l2", "rewrite: l4"), "x.yaml:10: dataplane.dpdk.rewrite: expected "
     "one of l3, l2"),
    (GOOD.replace('"02:00:00:00:00:0b"', '"01:00:00:00:00:0b"'),
     "x.yaml:11: dataplane.dpdk.backend_macs.10.0.0.11: expected a unicast MAC"),
    (GOOD.replace("rate-limit,", "rate-limt,"), "x.yaml:15: dataplane.dpdk.rules[0].chain[0]: "
     "expected one of memcached-cache"),
    (GOOD.replace("src: 10.0.0.0/8", "src: 10.0.0.1/8"), "x.yaml:14: "
     "dataplane.dpdk.rules[0].match.src: expected an IPv4 prefix"),
    (GOOD.replace("listen: 10.0.0.1", "listen: 127.0.0.1"), "x.yaml:2: memcached.listen: in "
     "switch mode"),
    (GOOD.replace('    vdevs: ["net_af_packet0,iface=eth1"]\n', ''),
     "x.yaml:6: dataplane.dpdk.vdevs: expected at least one vdev or PCI address"),
]


@pytest.mark.parametrize(("text", "start"), BAD)
def test_bad_switch_config_names_line_and_path(text: str, start: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "x.yaml", base_dir=tmp_path)
    assert str(info.value).startswith(start), str(info.value)


def test_console_switch_state_groups_the_switch_counters(tmp_path: Path) -> None:
    from appliance.runtime.control import switch_state

    config = parse_config(GOOD, "x.yaml", base_dir=tmp_path)
    counters = {"rx_packets": 9, "port:network:rx_packets": 7, "port:kernel:tx_packets": 2,
                "rule:mc:packets": 5, "function:drop:drop": 1, "function:count:next": 4}
    state = switch_state(config, counters)
    assert state["enabled"] is True and state["mode"] == "dpdk"
    assert state["ports"] == [{"name": "network", "rx_packets": 7},
                              {"name": "kernel", "tx_packets": 2}]
    assert state["rules"] == [{"name": "mc", "packets": 5}]
    assert {f["name"]: f for f in state["functions"]} == {
        "drop": {"name": "drop", "drop": 1}, "count": {"name": "count", "next": 4}}
    assert state["totals"] == {"rx_packets": 9}
    off = switch_state(parse_config("", "x.yaml", base_dir=tmp_path), None)
    assert off["enabled"] is False and "switch mode is off" in off["message"]


def test_switch_example_is_valid(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[2] / "configs" / "switch-example.yaml"
    config = parse_config(example.read_text(), str(example), base_dir=tmp_path)
    s = switch_settings(config)
    assert config.dataplane.switch and s.port == "0000:03:00.0"
    assert s.reply_cache_bytes == 16 * 1024**2 and s.park_max == 256
    assert [r.name for r in config.dataplane.dpdk.rules] == ["memcached", "everything-else"]
    assert "-a" in eal_args(config) and "0000:03:00.0" in eal_args(config)
