"""Embedded SPDK on a remote NVMe-oF/TCP namespace: injected read errors, then the
target restarts mid-load.

A real spdk_tgt exports an aio bdev over NVMe/TCP on loopback; the appliance, with SPDK
inside (`storage.spdk.mode: embedded`), attaches it with reconnect settings
(`reconnect_delay`, `fast_io_fail_timeout`, `ctrlr_loss_timeout: -1`) and keeps its lvol
store and lvol on it. Read errors injected with SPDK's error bdev under the exported
namespace give SERVER_ERROR and a dropped entry. While the target is down, gets of device-resident keys fail fast
with SERVER_ERROR instead of hanging; once the target is back the controller reconnects
by itself and every item that was not being read during the outage is served again
(never a wrong value).

Runs whenever SPDK_DIR points at an SPDK build.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from .helpers.mcproto import RawConn
from .helpers.procs import appliance_config, free_port, start_appliance
from spdk_bindings import rpc

from .helpers.spdk_target import SpdkTarget, spdk_env

pytestmark = pytest.mark.spdk

SPDK_DIR = os.environ.get("SPDK_DIR")
if not SPDK_DIR:
    pytest.skip("SPDK_DIR is not set (point it at an SPDK tree with build/bin/spdk_tgt to "
                "run the SPDK tests)", allow_module_level=True)

MIB = 1024 * 1024
NQN = "nqn.2016-06.io.smartswitch:remote"
KEYS = 1500
VALUE = 3000


def _value(i: int) -> bytes:
    head = b"<remote %d>" % i
    return (head * (VALUE // len(head) + 1))[:VALUE]


def _export(tgt: SpdkTarget, image: Path, port: int) -> None:
    """The remote side: an aio bdev on image under SPDK's error bdev (EE_remote0, which
    passes I/O through until errors are injected), exported as namespace 1 of NQN."""
    r = tgt.rpc
    r.call("bdev_aio_create", {"name": "remote0", "filename": str(image), "block_size": 4096})
    r.call("bdev_error_create", {"base_name": "remote0"})
    r.call("nvmf_create_transport", {"trtype": "TCP"})
    r.call("nvmf_create_subsystem", {"nqn": NQN, "allow_any_host": True,
                                     "serial_number": "SS0001"})
    r.call("nvmf_subsystem_add_ns", {"nqn": NQN, "namespace": {"bdev_name": "EE_remote0"}})
    r.call("nvmf_subsystem_add_listener", {"nqn": NQN, "listen_address": {
        "trtype": "TCP", "adrfam": "IPv4", "traddr": "127.0.0.1", "trsvcid": str(port)}})


def _target(work: Path, image: Path, port: int) -> SpdkTarget:
    """spdk_tgt exporting image. Started with --wait-for-rpc to turn bdev examine off
    first: the lvol store the appliance keeps on the namespace must stay the appliance's,
    not be opened by the target itself when it finds it on the restarted bdev."""
    assert SPDK_DIR
    sock, log = work / "spdk.sock", work / "spdk_tgt.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(Path(SPDK_DIR) / "build/bin/spdk_tgt"), "--no-huge", "-s",
                                 "1024", "-m", "0x1", "--disable-cpumask-locks",
                                 "--wait-for-rpc", "-r", str(sock)],
                                env=spdk_env(SPDK_DIR), stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    deadline = time.monotonic() + 60
    while not sock.exists():
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
    client = rpc.connect(str(sock), timeout=30.0)
    client.call("bdev_set_options", {"bdev_auto_examine": False})
    client.call("framework_start_init", {})
    client.framework_wait_init()
    tgt = SpdkTarget(proc, client, sock, log)
    _export(tgt, image, port)
    return tgt


def _get(c: RawConn, i: int) -> bytes | None | str:
    c.send(b"get k%d\r\n" % i)
    line = c.read_line()
    if line.startswith(b"SERVER_ERROR"):
        return "error"
    if line == b"END\r\n":
        return None
    value = c.read_exact(int(line.split()[3]) + 2)[:-2]
    assert c.read_line() == b"END\r\n"
    return value


def test_a_restarted_target_is_reconnected_and_no_request_hangs(tmp_path: Path) -> None:
    image = tmp_path / "remote.img"
    with open(image, "wb") as f:
        f.truncate(128 * MIB)
    port = free_port()
    (tmp_path / "tgt1").mkdir()
    tgt = _target(tmp_path / "tgt1", image, port)
    cfg: dict[str, Any] = appliance_config(tmp_path, hot_tier="0")
    cfg["storage"]["spdk"] = {"mode": "embedded"}  # mem_size: its 1GiB default
    cfg["storage"]["devices"] = [{
        "name": "nv0", "kind": "spdk", "rpc_socket": str(tmp_path / "emb.sock"),
        "transport": "tcp", "traddr": "127.0.0.1", "trsvcid": port, "subnqn": NQN,
        "reconnect_delay": "1s", "fast_io_fail_timeout": "2s", "ctrlr_loss_timeout": -1,
    }]
    cfg["storage"]["pools"] = [{"name": "items", "device": "nv0", "size": "50%",
                                "role": "memcached", "segment_size": "2MiB"}]
    path = tmp_path / "appliance.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    srv = start_appliance(path, timeout=120)
    try:
        with RawConn(srv.addr, timeout=30) as c:
            for i in range(KEYS):
                c.send(b"set k%d 0 0 %d noreply\r\n%s\r\n" % (i, VALUE, _value(i)))
            for j in range(8):  # past the open segment: the items are on the namespace
                c.send(b"set filler%d 0 0 500000 noreply\r\n%s\r\n" % (j, b"f" * 500_000))
            assert c.cmd(b"mn") == b"MN\r\n"
            time.sleep(1.0)
            assert all(_get(c, i) == _value(i) for i in range(0, KEYS, 50))

            # Injected read errors (SPDK's error bdev on the target): SERVER_ERROR, the
            # entry dropped (a miss next time), never a wrong value; the rest serves on.
            before = c.counters()["errors_device"]
            # 8 failures: the host retries a failed read 3 times (bdev_nvme's
            # bdev_retry_count), so about two gets see their read fail for good.
            tgt.rpc.call("bdev_error_inject_error", {"name": "EE_remote0", "io_type": "read",
                                                     "error_type": "failure", "num": 8})
            failed = [i for i in range(100, 140) if _get(c, i) == "error"]
            assert 1 <= len(failed) <= 8, f"{len(failed)} SERVER_ERRORs for 8 injected errors"
            assert c.counters()["errors_device"] - before == len(failed)
            assert all(_get(c, i) is None for i in failed), "a failed item was not dropped"
            assert all(_get(c, i) == _value(i) for i in range(100, 140) if i not in failed)

            tgt.stop()  # the remote target goes away mid-load
            outage = list(range(1, 40, 3))
            for i in outage:
                t0 = time.monotonic()
                got = _get(c, i)
                took = time.monotonic() - t0
                assert took < 8, f"a get waited {took:.1f}s for the lost target"
                assert got in ("error", None, _value(i)), f"k{i}: {got!r}"
            answers = [_get(c, i) for i in range(41, 60, 3)]
            assert "error" in answers, f"no SERVER_ERROR while the target was down: {answers}"

            (tmp_path / "tgt2").mkdir()
            tgt = _target(tmp_path / "tgt2", image, port)  # back, same namespace and port
            # The controller's state from the appliance's own RPC server (a failed read
            # drops its key, so the keys are not used to probe).
            emb = rpc.connect(str(tmp_path / "emb.sock"), timeout=10)
            try:
                deadline = time.monotonic() + 30
                while (state := emb.bdev_nvme_get_controllers("nv0")[0]["ctrlrs"][0]
                       ["state"]) != "enabled":
                    assert time.monotonic() < deadline, \
                        f"never reconnected (state {state}): {srv.log()[-1500:]}"
                    time.sleep(0.5)
            finally:
                emb.close()
            touched = set(outage) | set(range(41, 60, 3)) | set(failed)
            wrong = [i for i in range(KEYS) if i not in touched and _get(c, i) != _value(i)]
            assert not wrong, f"{len(wrong)} items lost or wrong after the reconnect: {wrong[:5]}"
    finally:
        srv.kill9()
        tgt.stop()
