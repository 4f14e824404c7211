"""Config of kind: spdk devices, pool `thin` and storage.spdk: good input and bad input with
file, line and YAML path."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from appliance.config import ConfigError, parse_config, summary

# Line numbers in the expected messages count from the first line of this text.
AIO = """\
storage:
  devices:
    - name: nv0
      kind: spdk
      transport: aio
      path: ./nv0.img
      block_size: 512
  pools:
    - name: items
      device: nv0
      size: 60%
"""


def spdk(extra: str = "", pool_extra: str = "", transport: str = "aio") -> str:
    text = AIO.replace("      block_size: 512\n", f"      block_size: 512\n{extra}")
    text += pool_extra
    if transport != "aio":
        text = text.replace("      transport: aio\n      path: ./nv0.img\n      block_size: 512\n",
                            f"      transport: {transport}\n")
    return text


def load(text: str, tmp_path: Path):
    return parse_config(text, "s.yaml", base_dir=tmp_path)


def test_aio_device_takes_the_spdk_defaults(tmp_path: Path) -> None:
    config = load(spdk(pool_extra="      thin: true\n"), tmp_path)
    dev = config.storage.device("nv0")
    assert (dev.kind, dev.transport, dev.path, dev.block_size) == (
        "spdk", "aio", tmp_path / "nv0.img", 512)
    assert (dev.rpc_socket, dev.rpc_timeout, dev.cluster_size) == (
        Path("/var/tmp/spdk.sock"), 30_000, 4 * 1024**2)
    assert (dev.bdev, dev.controller, dev.lvstore) == ("nv0", None, "ss_nv0")
    assert (dev.export, dev.export_nqn) == ("127.0.0.1:4420", "nqn.2016-06.io.smartswitch:nv0")
    assert dev.direct_io is False
    pool = config.storage.memcached_pool
    assert pool.thin and not pool.resolved and pool.size_percent == Decimal(60)
    assert "of spdk nv0 (aio " in summary(config) and "sized when probed" in summary(config)


def test_tcp_and_pcie_devices(tmp_path: Path) -> None:
    tcp = load(spdk("", transport="tcp\n      traddr: 10.0.0.7\n      trsvcid: 4420\n"
                        "      subnqn: nqn.2016-06.io.spdk:cnode1"), tmp_path)
    dev = tcp.storage.device("nv0")
    assert (dev.traddr, dev.trsvcid, dev.adrfam, dev.subnqn) == (
        "10.0.0.7", 4420, "ipv4", "nqn.2016-06.io.spdk:cnode1")
    assert (dev.controller, dev.bdev) == ("nv0", "nv0n1")
    pcie = load(spdk("", transport="pcie\n      traddr: '01:00.0'\n      controller: c0"),
                tmp_path)
    dev = pcie.storage.device("nv0")
    assert (dev.traddr, dev.controller, dev.bdev) == ("0000:01:00.0", "c0", "c0n1")


def test_explicit_names_export_and_byte_sizes(tmp_path: Path) -> None:
    config = load(spdk("      bdev: base0\n      lvstore: lvs0\n      cluster_size: 8MiB\n"
                       "      export: '[::1]:4421'\n      export_nqn: nqn.2024-01.com.example:a\n"
                       "      rpc_socket: /run/spdk.sock\n      rpc_timeout: 5s\n"
                       "      size: 2GiB\n").replace("size: 60%", "size: 1GiB"), tmp_path)
    dev = config.storage.device("nv0")
    assert (dev.bdev, dev.lvstore, dev.cluster_size) == ("base0", "lvs0", 8 * 1024**2)
    assert (dev.export, dev.export_nqn) == ("[::1]:4421", "nqn.2024-01.com.example:a")
    assert (dev.rpc_socket, dev.rpc_timeout, dev.size) == (Path("/run/spdk.sock"), 5000,
                                                           2 * 1024**3)
    assert config.storage.memcached_pool.size == 1024**3


def test_export_null_turns_the_export_off(tmp_path: Path) -> None:
    assert load(spdk("      export: null\n"), tmp_path).storage.device("nv0").export is None


def test_storage_spdk_section(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SPDK_DIR", raising=False)
    s = load(spdk(), tmp_path).storage.spdk
    assert (s.mode, s.lib_dir, s.mem_size, s.hugepages) == ("embedded", None, 1024**3, False)
    monkeypatch.setenv("SPDK_DIR", "/opt/spdk")
    assert load(spdk(), tmp_path).storage.spdk.lib_dir == Path("/opt/spdk/build/lib")
    s = load(spdk() + "  spdk:\n    lib_dir: lib\n    mem_size: 1GiB\n    hugepages: true\n",
             tmp_path).storage.spdk
    assert (s.lib_dir, s.mem_size, s.hugepages) == (tmp_path / "lib", 1024**3, True)
    ext = load(spdk() + "  spdk:\n    mode: external\n", tmp_path).storage.spdk
    assert (ext.mode, ext.mem_size) == ("external", 256 * 1024**2)  # an initiator's default
    with pytest.raises(ConfigError) as info:
        load(spdk() + "  spdk:\n    mode: embedded\n    mem_size: 256MiB\n", tmp_path)
    assert str(info.value) == ("s.yaml:14: storage.spdk.mem_size: embedded SPDK needs at "
                               "least 512MiB (its bdev layer's buffer pools), got 256MiB")


FILE_DEV = AIO.replace("      kind: spdk\n      transport: aio\n      path: ./nv0.img\n"
                       "      block_size: 512\n", "      path: ./f.dat\n      size: 1GiB\n")

BAD = [
    pytest.param(FILE_DEV.replace("size: 1GiB\n", "size: 1GiB\n      rpc_socket: /x\n"),
                 "s.yaml:6: storage.devices[0].rpc_socket: only a kind: spdk device has "
                 "rpc_socket; a file device takes name, kind, path, size, direct_io and "
                 "direct_writes",
                 id="spdk-key-on-file"),
    pytest.param(FILE_DEV + "      thin: true\n",
                 "s.yaml:10: storage.pools[0].thin: only pools on a kind: spdk device can be "
                 "thin; device 'nv0' is file", id="thin-on-file"),
    pytest.param(spdk("      direct_io: true\n"),
                 "s.yaml:8: storage.devices[0].direct_io: a kind: spdk device has no "
                 "direct_io (SPDK always bypasses the page cache); remove it",
                 id="direct-io-on-spdk"),
    pytest.param(spdk("      trsvcid: 4420\n"),
                 "s.yaml:8: storage.devices[0].trsvcid: only for transport tcp; a aio device "
                 "has no trsvcid", id="trsvcid-on-aio"),
    pytest.param(spdk("", transport="pcie\n      traddr: '0000:01:00.0'\n      path: /x"),
                 "s.yaml:7: storage.devices[0].path: only for transport aio or uring; a pcie "
                 "device has no path", id="path-on-pcie"),
    pytest.param(AIO.replace("      block_size: 512\n", ""),
                 "s.yaml:5: storage.devices[0].block_size: missing; transport aio needs "
                 "block_size (SPDK cannot detect the block size of a file)",
                 id="aio-without-block-size"),
    pytest.param(spdk("", transport="tcp\n      traddr: 127.0.0.1\n      trsvcid: 4420"),
                 "s.yaml:5: storage.devices[0].subnqn: missing; transport tcp needs subnqn",
                 id="tcp-without-subnqn"),
    pytest.param(spdk("", transport="pcie\n      traddr: '1:0.0'"),
                 "s.yaml:6: storage.devices[0].traddr: expected a PCI address like "
                 "0000:01:00.0, got '1:0.0'", id="bad-pci-address"),
    pytest.param(spdk("", transport="tcp\n      traddr: target.example\n      trsvcid: 4420\n"
                      "      subnqn: nqn.2016-06.io.spdk:c1"),
                 "s.yaml:6: storage.devices[0].traddr: expected a numeric IPv4 or IPv6 "
                 "address of the NVMe-oF target, got 'target.example'", id="tcp-host-name"),
    pytest.param(spdk("", transport="rdma"),
                 "s.yaml:5: storage.devices[0].transport: expected one of pcie, tcp, aio, "
                 "uring, or null for none (file and block devices), got 'rdma'",
                 id="unknown-transport"),
    pytest.param(spdk("      export: localhost:4420\n"),
                 "s.yaml:8: storage.devices[0].export: expected an address like "
                 "127.0.0.1:4420 or [::1]:4420, or null for no export, or null for no "
                 "NVMe-oF export, got 'localhost:4420'", id="export-host-name"),
    pytest.param(spdk("      export: '127.0.0.1:70000'\n"),
                 "s.yaml:8: storage.devices[0].export: expected an address like "
                 "127.0.0.1:4420 or [::1]:4420, or null for no export, or null for no "
                 "NVMe-oF export, got '127.0.0.1:70000'", id="export-port"),
    pytest.param(spdk("      export_nqn: cnode1\n"),
                 "s.yaml:8: storage.devices[0].export_nqn: expected an NVMe qualified name "
                 "like nqn.2016-06.io.spdk:cnode1 (at most 223 bytes), or null for the "
                 "default NQN, got 'cnode1'", id="export-nqn"),
    pytest.param(spdk("      block_size: 1000\n").replace("      block_size: 512\n", "", 1),
                 "s.yaml:7: storage.devices[0].block_size: expected a block size in bytes, a "
                 "power of two from 512 to 65536, or null for none, got 1000",
                 id="block-size"),
    pytest.param(spdk("      cluster_size: 3MiB\n"),
                 "s.yaml:8: storage.devices[0].cluster_size: expected a power of two from "
                 "1MiB to 1GiB like 8MiB, or null for 4MiB, got '3MiB'", id="cluster-size"),
    pytest.param(spdk("      rpc_timeout: 10ms\n"),
                 "s.yaml:8: storage.devices[0].rpc_timeout: expected a duration from 100ms "
                 "to 1h, or null for 30s, got '10ms'", id="rpc-timeout"),
    pytest.param(spdk().replace("  pools:", "    - name: nv1\n      kind: spdk\n"
                                "      transport: pcie\n      traddr: '0000:02:00.0'\n"
                                "      export_nqn: nqn.2016-06.io.smartswitch:nv0\n  pools:"),
                 "s.yaml:12: storage.devices[1].export_nqn: duplicate export_nqn "
                 "'nqn.2016-06.io.smartswitch:nv0' (also storage.devices[0])",
                 id="duplicate-export-nqn"),
    pytest.param(spdk() + "  spdk:\n    mem_size: 100000000\n",
                 "s.yaml:13: storage.spdk.mem_size: expected whole MiB, got 100MB",
                 id="mem-size-not-mib"),
    pytest.param(spdk() + "  spdk:\n    hugepages: 'yes'\n",
                 "s.yaml:13: storage.spdk.hugepages: expected true or false, got 'yes'",
                 id="hugepages"),
    pytest.param(spdk() + "  spdk:\n    mem: 1GiB\n",
                 "s.yaml:13: storage.spdk.mem: unknown key; expected "
                 "one of mode, lib_dir, mem_size, hugepages", id="spdk-unknown-key"),
    pytest.param(spdk() + "  spdk:\n    mode: inside\n",
                 "s.yaml:13: storage.spdk.mode: expected one of embedded, external, "
                 "got 'inside'", id="spdk-mode"),
]


@pytest.mark.parametrize(("text", "message"), BAD)
def test_bad_spdk_config_names_file_line_and_path(text: str, message: str,
                                                  tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(text, tmp_path)
    assert str(info.value) == message


def test_spdk_example_config_is_valid(tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parents[2]
    text = (repo / "configs" / "spdk-example.yaml").read_text()
    config = parse_config(text, "spdk-example.yaml", base_dir=tmp_path)
    dev = config.storage.device("nvme0")
    assert (dev.transport, dev.traddr, dev.bdev, dev.export) == (
        "pcie", "0000:01:00.0", "nvme0n1", "127.0.0.1:4420")


SWITCH = ("memcached:\n  listen: 10.0.0.1\n  udp_port: 11211\n"
          "dataplane:\n  mode: dpdk\n  dpdk:\n    vdevs: [\"net_null0\"]\n"
          "    port: net_null0\n    service: {address: 10.0.0.1/24}\n")


def test_switch_mode_serves_from_spdk_on_its_own_eal(tmp_path: Path) -> None:
    """SPDK attaches to switch mode's EAL: that EAL gets SPDK's memory and the memory
    model SPDK's own init would have asked for."""
    from appliance.runtime.switch import eal_args

    config = load(SWITCH + "    no_huge: true\n    memory: 256MiB\n" + AIO, tmp_path)
    args = eal_args(config)
    assert args[args.index("-m") + 1] == str(256 + 1024)  # + storage.spdk.mem_size
    assert {"--no-huge", "--legacy-mem", "--iova-mode=va"} <= set(args)
    plain = eal_args(load(SWITCH + "    no_huge: true\n    memory: 256MiB\n", tmp_path))
    assert plain[plain.index("-m") + 1] == "256" and "--legacy-mem" not in plain


def test_switch_mode_and_spdk_must_agree_on_hugepages(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load(SWITCH + "    no_huge: true\n" + AIO + "  spdk:\n    hugepages: true\n", tmp_path)
    assert str(err.value) == (
        "s.yaml:23: storage.spdk.hugepages: switch mode serves pool items from spdk device "
        "nv0 through one DPDK EAL, which dataplane.dpdk.no_huge: true starts without "
        "hugepages; set storage.spdk.hugepages: false to match"), str(err.value)
    huge = load(SWITCH + "    no_huge: false\n" + AIO + "  spdk:\n    hugepages: true\n",
                tmp_path)
    from appliance.runtime.switch import eal_args
    assert "--match-allocations" in eal_args(huge) and "--no-huge" not in eal_args(huge)


TCP = "tcp\n      traddr: 10.0.0.7\n      trsvcid: 4420\n      subnqn: nqn.2016-06.io.spdk:c1\n"


def test_reconnect_settings_of_a_remote_controller(tmp_path: Path) -> None:
    dev = load(spdk("", transport=TCP + "      reconnect_delay: 2s\n      fast_io_fail_timeout: 5s"
                    "\n      ctrlr_loss_timeout: -1\n"), tmp_path).storage.device("nv0")
    assert (dev.reconnect_delay, dev.fast_io_fail_timeout, dev.ctrlr_loss_timeout) == \
        (2000, 5000, -1)
    dev = load(spdk("", transport=TCP), tmp_path).storage.device("nv0")
    assert (dev.reconnect_delay, dev.fast_io_fail_timeout, dev.ctrlr_loss_timeout) == \
        (None, None, None)  # SPDK's own defaults: nothing is sent


@pytest.mark.parametrize(("extra", "message"), [
    ("      reconnect_delay: 2s\n",
     "s.yaml:9: storage.devices[0].reconnect_delay: needs ctrlr_loss_timeout (-1 for never) "
     "beside it"),
    ("      reconnect_delay: 20s\n      ctrlr_loss_timeout: 10s\n",
     "s.yaml:9: storage.devices[0].reconnect_delay: 20s is more than ctrlr_loss_timeout 10s"),
    ("      reconnect_delay: 5s\n      fast_io_fail_timeout: 2s\n      ctrlr_loss_timeout: -1\n",
     "s.yaml:10: storage.devices[0].fast_io_fail_timeout: 2s is less than reconnect_delay 5s"),
    ("      ctrlr_loss_timeout: 1500ms\n",
     "s.yaml:9: storage.devices[0].ctrlr_loss_timeout: expected -1 (never give up) or a "
     "duration in whole seconds from 1s to 24h, or null for SPDK's default, got '1500ms'"),
])
def test_bad_reconnect_settings_name_file_line_and_path(extra: str, message: str,
                                                        tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(spdk("", transport=TCP + extra), tmp_path)
    assert str(info.value) == message


def test_reconnect_settings_only_for_tcp(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(spdk("      ctrlr_loss_timeout: -1\n"), tmp_path)
    assert "ctrlr_loss_timeout: only for transport tcp" in str(info.value)


def test_reconnect_settings_reach_the_attach_rpc() -> None:
    from spdk_bindings import rpc

    sent: list[tuple[str, dict]] = []

    class Recorder(rpc.SpdkRpc):
        def __init__(self) -> None:  # no socket: calls are recorded
            pass

        def call(self, method, params=None, device=None):  # type: ignore[override]
            sent.append((method, dict(params or {})))
            return ["c1n1"]

    Recorder().bdev_nvme_attach_controller("c1", "tcp", "10.0.0.7", adrfam="ipv4",
                                           trsvcid="4420", subnqn="nqn.x:y",
                                           ctrlr_loss_timeout_sec=-1, reconnect_delay_sec=2,
                                           fast_io_fail_timeout_sec=5)
    Recorder().bdev_nvme_attach_controller("c1", "tcp", "10.0.0.7", trsvcid="4420",
                                           subnqn="nqn.x:y")
    assert sent[0][1]["ctrlr_loss_timeout_sec"] == -1
    assert (sent[0][1]["reconnect_delay_sec"], sent[0][1]["fast_io_fail_timeout_sec"]) == (2, 5)
    assert not {"ctrlr_loss_timeout_sec", "reconnect_delay_sec"} & set(sent[1][1])
