"""The SPDK half of bench/device.py (`--spdk`): spdk_tgt, the appliance's config, spdk_nvme_perf.

The store side runs the appliance with its memcached pool on a `kind: spdk` device: an aio
bdev on a file under `--dir`, an lvol on it, exported over NVMe-oF/TCP on 127.0.0.1, which
the appliance's data path reads through SPDK's NVMe initiator. The raw side is SPDK's own
`spdk_nvme_perf` against the same exported namespace (same target, same transport, same
file), so the store / raw ratio is what the store adds to an NVMe/TCP read.

Nothing here builds SPDK: SPDK_DIR must name a build tree (build/bin/spdk_tgt,
build/bin/spdk_nvme_perf, build/lib/libspdk_*.so) outside the repository.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MIB = 1024 * 1024
NQN = "nqn.2016-06.io.smartswitch:bench"
DEVICE = "nvme0"
SEGMENT_MIB = 4
# The lvol store keeps metadata and whole clusters (4 MiB) on the backing file; this much
# beyond the pool leaves room for both.
IMAGE_SLACK_MIB = 64
TGT_MASK = "0x1"           # spdk_tgt's reactor (it busy-polls this core)
PERF_MASK = "0x2"          # spdk_nvme_perf's: any core but spdk_tgt's
TGT_MEM_MIB = 1024
PERF_MEM_MIB = 256
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
PERF_GRACE_S = 60          # perf's own start-up (EAL, connect) and teardown


class SpdkBenchError(RuntimeError):
    """SPDK_DIR is missing or incomplete, or spdk_tgt / spdk_nvme_perf failed."""


def spdk_dir() -> Path:
    """SPDK_DIR, checked for the two binaries and the libraries the bench needs.

    Raises:
        SpdkBenchError: unset, or the build tree lacks something; the message says what.
    """
    env = os.environ.get("SPDK_DIR")
    if not env:
        raise SpdkBenchError(
            "--spdk needs SPDK_DIR: point it at an SPDK build tree (v25.09 or newer, built "
            "with --with-shared) that has build/bin/spdk_tgt, build/bin/spdk_nvme_perf and "
            "build/lib/libspdk_*.so, e.g. SPDK_DIR=/opt/spdk make bench-device-spdk")
    root = Path(env)
    for rel in ("build/bin/spdk_tgt", "build/bin/spdk_nvme_perf", "build/lib"):
        if not (root / rel).exists():
            raise SpdkBenchError(f"SPDK_DIR={root} has no {rel}: build SPDK there with "
                                 "./configure --with-shared && make, or fix SPDK_DIR")
    return root


def spdk_env(root: Path) -> dict[str, str]:
    """The environment of an SPDK process: a --with-shared build tree has no run path."""
    return dict(os.environ, SPDK_DIR=str(root), LD_LIBRARY_PATH=str(root / "build/lib"))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class SpdkTarget:
    """A running spdk_tgt: process, RPC socket and log."""

    proc: subprocess.Popen[bytes]
    sock: Path
    log: Path

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of spdk_tgt's log, for error messages."""
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def check_alive(self) -> None:
        """Raise SpdkBenchError (with the log's tail) if spdk_tgt has exited."""
        if self.proc.poll() is not None:
            raise SpdkBenchError(f"spdk_tgt exited with status {self.proc.returncode}\n"
                                 f"{self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after STOP_TIMEOUT_S; only this process (by its pid)."""
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(STOP_TIMEOUT_S)


def start_target(root: Path, work: Path) -> SpdkTarget:
    """Start spdk_tgt without hugepages on one core, its RPC socket in work; wait for init.

    Raises:
        SpdkBenchError: it exited or did not answer within START_TIMEOUT_S.
    """
    from spdk_bindings import rpc

    sock, log = work / "spdk.sock", work / "spdk_tgt.log"
    with open(log, "wb") as out:
        # No core lock file: another spdk_tgt on this machine (a test, another bench)
        # may already hold core 0's, and the lock guards nothing the bench needs.
        proc = subprocess.Popen([str(root / "build/bin/spdk_tgt"), "--no-huge",
                                 "-s", str(TGT_MEM_MIB), "-m", TGT_MASK, "-r", str(sock),
                                 "--disable-cpumask-locks"],
                                env=spdk_env(root), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    tgt = SpdkTarget(proc, sock, log)
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        while True:
            tgt.check_alive()
            if sock.exists():
                try:
                    client = rpc.connect(str(sock), timeout=30.0)
                    try:
                        client.framework_wait_init()
                    finally:
                        client.close()
                    return tgt
                except rpc.SpdkRpcError:
                    pass  # the socket exists before the RPC server answers
            if time.monotonic() > deadline:
                raise SpdkBenchError(f"spdk_tgt did not answer on {sock} within "
                                     f"{START_TIMEOUT_S:.0f}s\n{tgt.log_tail()}")
            time.sleep(0.2)
    except BaseException:
        tgt.stop()
        raise


def namespace_of(tgt: SpdkTarget) -> int:
    """The NSID the bench subsystem exports (the appliance provisioned one pool).

    Raises:
        SpdkBenchError: the subsystem is missing or does not export exactly one namespace.
    """
    from spdk_bindings import rpc

    client = rpc.connect(str(tgt.sock), timeout=30.0)
    try:
        subs = client.nvmf_get_subsystems(NQN)
    except rpc.SpdkRpcError as e:
        raise SpdkBenchError(f"after the appliance ran, spdk_tgt has no subsystem {NQN}: "
                             f"{e}") from None
    finally:
        client.close()
    nss = subs[0].get("namespaces", []) if subs else []
    if len(nss) != 1:
        raise SpdkBenchError(f"subsystem {NQN} exports {len(nss)} namespaces, expected 1: "
                             f"{nss}")
    return int(nss[0]["nsid"])


def pool_mib(written: int) -> int:
    """The pool's size for `written` bytes of records: most of it filled by the prefill.

    A few segments beyond the data: the open one, and slack so the log never wraps
    (a wrap would evict prefilled items and turn gets into misses). Whole lvol-store
    clusters (4 MiB), like the segments.
    """
    data_mib = -(-written * 21 // 20 // MIB)  # +5%: segment tails a record does not fit
    segments = -(-data_mib // SEGMENT_MIB) + 3
    return segments * SEGMENT_MIB


def configure(cfg: dict[str, Any], root: Path, tgt: SpdkTarget, image: Path,
              size_mib: int, export_port: int) -> None:
    """Put the config's memcached pool on an aio-backed spdk device (in place).

    The backing file is created here (sparse) at the pool's size plus IMAGE_SLACK_MIB;
    the appliance provisions the lvol store, the lvol and the export at start.
    """
    with open(image, "wb") as f:
        f.truncate((size_mib + IMAGE_SLACK_MIB) * MIB)
    st = cfg["storage"]
    st["devices"] = [{
        "name": DEVICE, "kind": "spdk", "rpc_socket": str(tgt.sock), "transport": "aio",
        "path": str(image), "block_size": 4096, "export": f"127.0.0.1:{export_port}",
        "export_nqn": NQN,
    }]
    st["pools"] = [{"name": "items", "device": DEVICE, "size": f"{size_mib}MiB",
                    "role": "memcached", "segment_size": f"{SEGMENT_MIB}MiB"}]
    st["spdk"] = {"mode": "external", "lib_dir": str(root / "build/lib"), "mem_size": "256MiB",
                  "hugepages": False}


def transport_id(export_port: int, nsid: int) -> str:
    """spdk_nvme_perf's -r for the exported namespace."""
    return (f"trtype:TCP adrfam:IPv4 traddr:127.0.0.1 trsvcid:{export_port} "
            f"subnqn:{NQN} ns:{nsid}")


_FLOAT = r"([0-9]+(?:\.[0-9]+)?)"
_TOTAL_RE = re.compile(rf"^Total\s*:\s*{_FLOAT}\s+{_FLOAT}\s+{_FLOAT}\s+{_FLOAT}\s+{_FLOAT}",
                       re.M)
_PCT_RE = re.compile(rf"^\s*{_FLOAT}%\s*:\s*{_FLOAT}us", re.M)


def parse_perf(text: str) -> dict[str, Any]:
    """IOPS, average and (with -L) p50 / p99 latency from spdk_nvme_perf's output.

    The `Total` line gives IOPS, MiB/s, average, min and max (us). `-L` adds a
    "Summary latency data" block of `PP.PPPPP% : N.NNNus` lines: the latency at or
    below which that share of I/Os completed.

    Raises:
        SpdkBenchError: no Total line (perf failed or its format changed).
    """
    m = _TOTAL_RE.search(text)
    if not m:
        raise SpdkBenchError("spdk_nvme_perf printed no 'Total' line (it skipped the "
                             f"namespace, or failed):\n{text[-2000:]}")
    out: dict[str, Any] = {"iops": float(m.group(1)), "avg_us": float(m.group(3)),
                           "p50_us": None, "p99_us": None, "errors": 0}
    summary = text.find("Summary latency data")
    if summary >= 0:
        pct = {float(p): float(us) for p, us in _PCT_RE.findall(text[summary:])}
        # The summary lists fixed points (1%, 10%, 25%, 50%, 75%, 90%, 95%, 98%, 99%, ...).
        out["p50_us"] = pct.get(50.0)
        out["p99_us"] = pct.get(99.0)
    return out


def perf_side(root: Path, trid: str, qd: int, io_size: int,
              duration: float, warmup: float) -> dict[str, Any]:
    """spdk_nvme_perf: random reads of io_size bytes over the namespace at QD qd.

    Raises:
        SpdkBenchError: perf failed, overran its bound, or printed no figures.
    """
    secs, ramp = max(1, round(duration)), max(0, round(warmup))
    cmd = [str(root / "build/bin/spdk_nvme_perf"), "--no-huge", "-s", str(PERF_MEM_MIB),
           "-c", PERF_MASK, "-q", str(qd), "-o", str(io_size), "-w", "randread",
           "-t", str(secs), "-L", "-r", trid]
    if ramp:
        cmd[-2:-2] = ["-a", str(ramp)]
    limit = secs + ramp + PERF_GRACE_S
    try:
        res = subprocess.run(cmd, env=spdk_env(root), capture_output=True, text=True,
                             timeout=limit, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        raise SpdkBenchError(f"spdk_nvme_perf overran its {limit}s bound") from e
    if res.returncode != 0:
        raise SpdkBenchError(f"spdk_nvme_perf failed ({res.returncode}): "
                             f"{(res.stderr + res.stdout).strip()[-2000:]}")
    out = parse_perf(res.stdout)
    out["cmd"] = " ".join(cmd)
    return out


# ---- embedded mode (storage.spdk.mode: embedded) ----

BDEVPERF_MEM_MIB = 512
_BDEVPERF_TOTAL_RE = re.compile(
    rf"^\s*Total\s*:\s*{_FLOAT}\s+{_FLOAT}\s+{_FLOAT}\s+{_FLOAT}\s+{_FLOAT}", re.M)


def configure_embedded(cfg: dict[str, Any], root: Path, image: Path, size_mib: int,
                       sock: Path) -> None:
    """The same pool on an aio-backed spdk device, SPDK running inside the appliance."""
    with open(image, "wb") as f:
        f.truncate((size_mib + IMAGE_SLACK_MIB) * MIB)
    st = cfg["storage"]
    st["devices"] = [{
        "name": DEVICE, "kind": "spdk", "rpc_socket": str(sock), "transport": "aio",
        "path": str(image), "block_size": 4096,
    }]
    st["pools"] = [{"name": "items", "device": DEVICE, "size": f"{size_mib}MiB",
                    "role": "memcached", "segment_size": f"{SEGMENT_MIB}MiB"}]
    st["spdk"] = {"mode": "embedded", "lib_dir": str(root / "build/lib"),
                  "mem_size": "512MiB", "hugepages": False}


def bdevperf_bin(root: Path) -> Path | None:
    """SPDK's bdevperf in the build tree (built with the examples), or None."""
    path = root / "build/examples/bdevperf"
    return path if path.exists() else None


def bdevperf_side(root: Path, image: Path, bdev: str, qd: int, io_size: int, duration: float,
                  warmup: float, work: Path) -> dict[str, Any]:
    """bdevperf: random reads of io_size bytes on bdev (the pool's lvol, found by examine
    on an aio bdev over the same file the appliance used) at QD qd, one core.

    Raises:
        SpdkBenchError: bdevperf is missing, failed, overran its bound or printed no Total.
    """
    binary = bdevperf_bin(root)
    if binary is None:
        raise SpdkBenchError(f"{root}/build/examples/bdevperf is missing: build it in the "
                             "SPDK tree (make -C examples/bdev/bdevperf)")
    conf = work / "bdevperf.json"
    conf.write_text(json.dumps({"subsystems": [{"subsystem": "bdev", "config": [
        {"method": "bdev_aio_create",
         "params": {"name": DEVICE, "filename": str(image), "block_size": 4096}},
        {"method": "bdev_wait_for_examine"}]}]}))
    secs = max(1, round(duration + warmup))
    cmd = [str(binary), "--no-huge", "-s", str(BDEVPERF_MEM_MIB), "-m", PERF_MASK, "-c",
           str(conf), "-q", str(qd), "-o", str(io_size), "-w", "randread", "-t", str(secs),
           "-T", bdev]
    limit = secs + PERF_GRACE_S
    try:
        res = subprocess.run(cmd, env=spdk_env(root), capture_output=True, text=True,
                             timeout=limit, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        raise SpdkBenchError(f"bdevperf overran its {limit}s bound") from e
    m = _BDEVPERF_TOTAL_RE.search(res.stdout)
    if res.returncode != 0 or not m:
        raise SpdkBenchError(f"bdevperf failed ({res.returncode}): "
                             f"{(res.stderr + res.stdout).strip()[-2000:]}")
    # bdevperf gives the average latency only: p50/p99 show it (the report says so).
    return {"iops": float(m.group(1)), "avg_us": float(m.group(5)), "p50_us": None,
            "p99_us": None, "errors": 0, "cmd": " ".join(cmd)}
