"""Switch-mode benchmark: the DPDK fast path against dpdk-testpmd, one run.

DPDK's net_pcap replays a pcap of memcached UDP GET frames in a loop
(`rx_pcap=FILE,infinite_rx=1`) into one port; the port's TX drops what it is
given (net_pcap without a TX side counts and frees). The same virtual device
drives, one after the other:

  smartswitch  `smartswitch run` in switch mode, one lcore, proxy mode with
               one real memcached back end (so misses are rewritten, l3, to
               their owner and sent); the hit keys are prefilled through the
               appliance (TCP, `admission: always`), so gets of them are
               answered from the DRAM tier by the fast path. Scenarios: 100%
               hits, 100% misses, and a mix (--hit-ratio, 90% by default).
  testpmd      Debian's dpdk-testpmd, one forwarding core, --forward-mode io
               and macswap, on the hits pcap.

Frames: Ethernet/IPv4/UDP, memcached's 8-byte frame header, `get <16-byte
key>\\r\\n` (UDP checksums set). Rates come from the switch's counters (frames
received per second, from switch-counters.json) and from testpmd's own
periodic port statistics; each is also divided by the CPU time of the thread
that did the work (the lcore), which is the per-core figure on a machine
whose cores are shared. The ratio is SmartSwitch over testpmd macswap.

Usage (from the repository root, as root):
  .venv/bin/python bench/switch.py [--quick] [--duration S] [--json FILE]

See bench/README.md ("Switch mode") for how to read the output.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml


# bench/ holds scripts, not a package: Python puts the script's folder first on sys.path.
import device as device_bench  # noqa: E402  (bench/device.py: fio on the same file)
import run as core  # noqa: E402  (bench/run.py: servers, load generator, helpers)
BenchError = core.BenchError

SERVICE_IP = "10.77.0.1"
CLIENT_IP = "10.77.0.2"
SERVICE_MAC = "02:53:53:00:00:01"
CLIENT_MAC = "02:53:53:00:00:02"
BACKEND_MAC = "02:53:53:00:00:03"
KEY_LEN = 16          # the key size
VALUE_LEN = 32
SW_PARK_DEPTH = 256   # SW_PARK_MAX: gets one lcore keeps parked for device reads
FRAMES = 4096         # frames in each pcap; net_pcap keeps them all in mbufs
MBUFS = 32767         # the pool: the pcap's copies, RX/TX rings, replies in flight
TESTPMD = shutil.which("dpdk-testpmd") or "/usr/bin/dpdk-testpmd"
SEED_PER_CORE = 10e6  # the seed's MemSwitch figure, requests/s on one core
LINE_RATE_10G = 13e6  # 10 GbE, frames of this size (the figure)


# ------------------------------------------------------------------ pcap ---

def _csum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of data."""
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _mac(s: str) -> bytes:
    return bytes(int(x, 16) for x in s.split(":"))


def get_frame(key: bytes, reqid: int, sport: int, dport: int) -> bytes:
    """One Ethernet frame: IPv4/UDP to the service, a memcached UDP `get key`."""
    payload = struct.pack("!HHHH", reqid & 0xFFFF, 0, 1, 0) + b"get " + key + b"\r\n"
    src, dst = socket.inet_aton(CLIENT_IP), socket.inet_aton(SERVICE_IP)
    ulen = 8 + len(payload)
    pseudo = src + dst + struct.pack("!BBH", 0, 17, ulen)
    udp = struct.pack("!HHHH", sport, dport, ulen, 0) + payload
    ucs = _csum(pseudo + udp) or 0xFFFF
    udp = udp[:6] + struct.pack("!H", ucs) + udp[8:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + ulen, reqid & 0xFFFF, 0x4000, 64, 17, 0,
                     src, dst)
    ip = ip[:10] + struct.pack("!H", _csum(ip)) + ip[12:]
    return _mac(SERVICE_MAC) + _mac(CLIENT_MAC) + b"\x08\x00" + ip + udp


def hit_key(i: int) -> bytes:
    return b"h%015d" % i


def miss_key(i: int) -> bytes:
    return b"m%015d" % i


def device_key(i: int) -> bytes:
    return b"d%015d" % i


# The mixed device scenario: a hot tier whose stripes admit items of at most
# 512 B (an eighth of a stripe's 4 KiB) holds every hit key, while items with
# DEVICE_VALUE_LEN-byte values are never admitted: each of their gets is a
# device read, however often it repeats.
MIXED_HOT_TIER = "1MiB"
DEVICE_VALUE_LEN = 700
DEVICE_KEYS = 1024


def write_pcap(path: Path, keys: list[bytes], dport: int) -> int:
    """Write a libpcap file (Ethernet) of one get per key. Returns the frame length."""
    with open(path, "wb") as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        flen = 0
        for i, key in enumerate(keys):
            frame = get_frame(key, i, 20000 + i % 20000, dport)
            flen = len(frame)
            fh.write(struct.pack("<IIII", i // 1_000_000, i % 1_000_000, flen, flen))
            fh.write(frame)
    return flen


def scenario_keys(hit_ratio: float, hits: int, rng: random.Random) -> list[bytes]:
    """FRAMES keys, round(hit_ratio * FRAMES) of them hit keys, shuffled."""
    nhit = round(hit_ratio * FRAMES)
    keys = [hit_key(i % hits) for i in range(nhit)] + \
        [miss_key(i) for i in range(FRAMES - nhit)]
    rng.shuffle(keys)
    return keys


# --------------------------------------------------------------- helpers ---

CLK_TCK = os.sysconf("SC_CLK_TCK")


def thread_cpu(pid: int) -> dict[int, tuple[str, float]]:
    """{tid: (name, CPU seconds)} for every thread of pid."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            comm = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[int(task.name)] = (comm, (int(fields[11]) + int(fields[12])) / CLK_TCK)
    return out


def busiest(before: dict[int, tuple[str, float]],
            after: dict[int, tuple[str, float]]) -> tuple[str, float]:
    """The thread that used the most CPU between two thread_cpu() samples."""
    best = ("?", 0.0)
    for tid, (name, cpu) in after.items():
        used = cpu - before.get(tid, (name, 0.0))[1]
        if used > best[1]:
            best = (name, used)
    return best


HUGEPAGES_MIN = 600   # 2 MiB pages: 512 MiB for the run in flight, and slack
HUGE = False          # --huge: both sides on hugepages (set by main)


def reserve_hugepages() -> None:
    """Reserve 2 MiB hugepages and mount hugetlbfs if needed (root), as a DPDK
    host would have them; refuse with what to do when that fails."""
    meminfo = Path("/proc/meminfo").read_text()
    total = int(re.search(r"HugePages_Total:\s+(\d+)", meminfo).group(1))  # type: ignore
    try:
        if total < HUGEPAGES_MIN:
            Path("/proc/sys/vm/nr_hugepages").write_text(str(HUGEPAGES_MIN))
        if "hugetlbfs" not in Path("/proc/mounts").read_text():
            Path("/dev/hugepages").mkdir(exist_ok=True)
            subprocess.run(["mount", "-t", "hugetlbfs", "nodev", "/dev/hugepages"], check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise BenchError(f"--huge: cannot reserve hugepages ({exc}); run as root, or "
                         "drop --huge") from exc
    meminfo = Path("/proc/meminfo").read_text()
    free = int(re.search(r"HugePages_Free:\s+(\d+)", meminfo).group(1))  # type: ignore
    if free < 300:
        raise BenchError(f"--huge: only {free} free 2 MiB hugepages; free some or drop --huge")


def eal_common(tag: str) -> list[str]:
    return [*([] if HUGE else ["--no-huge"]), "--no-pci", "-m", "512",
            f"--file-prefix=ssbench{tag}{os.getpid()}", "--log-level=lib.eal:warning"]


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("0.0.0.0", 0))
        return s.getsockname()[1]


# ----------------------------------------------------------- smartswitch ---

def appliance_config(tmp: Path, pcap: Path, udp_port: int, backend_port: int,
                     device: Path | None = None, hot_tier: str = "0") -> Path:
    """Switch mode over net_pcap (no exception path), one lcore, one back end.

    With device: the items on that file, opened O_DIRECT, with no reply
    cache and hot_tier (by default none, so every hit is a read of the device).
    """
    var = tmp / "var"
    cfg: dict[str, Any] = {
        "memcached": {"listen": "0.0.0.0", "tcp_port": 0, "udp_port": udp_port,
                      "workers": 1},
        "storage": {
            "dir": str(var), "hot_tier": "64MiB",
            "devices": [{"name": "local", "kind": "file", "path": str(var / "store.dat"),
                         "size": "256MiB"}],
            "pools": [{"name": "items", "device": "local", "size": "100%",
                       "segment_size": "4MiB"}],
        },
        "backends": [{"name": "mc1", "host": "127.0.0.1", "port": backend_port}],
        "routing": {"admission": "always", "local_ttl_max": "0s"},
        "dataplane": {"mode": "dpdk", "dpdk": {
            "lcores": 1, "memory": "512MiB", "no_huge": not HUGE,
            "vdevs": [f"net_pcap0,rx_pcap={pcap},infinite_rx=1"], "port": "net_pcap0",
            "service": {"address": f"{SERVICE_IP}/24", "mac": SERVICE_MAC},
            "rewrite": "l3", "exception": None, "mbufs": MBUFS,
            "backend_macs": {"127.0.0.1": BACKEND_MAC}}},
    }
    if device is not None:
        cfg["storage"]["hot_tier"] = hot_tier
        cfg["storage"]["devices"][0].update(path=str(device), direct_io=True)
        cfg["dataplane"]["dpdk"]["reply_cache"] = 0
    path = tmp / "smartswitch.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def set_one(s: socket.socket, key: bytes, value: bytes) -> bytes:
    """One set, waited for; its reply line."""
    s.sendall(b"set %s 0 0 %d\r\n%s\r\n" % (key, len(value), value))
    got = b""
    while not got.endswith(b"\r\n"):
        chunk = s.recv(4096)
        if not chunk:
            break
        got += chunk
    return got


def prefill(port: int, hits: int) -> None:
    """Set every hit key through the appliance (kept locally: admission always).

    One set at a time: a forwarded set is kept locally only if no other write
    to its coherence slot is in flight meanwhile (docs/architecture.md, proxy
    mode), and a pipeline of sets would lose the odd key to that rule.
    """
    value = b"v" * VALUE_LEN
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        for i in range(hits):
            got = set_one(s, hit_key(i), value)
            if got != b"STORED\r\n":
                raise BenchError(f"prefill: the appliance answered {got[:200]!r}")


def roll_segments(port: int) -> None:
    """Fill past the open segment, so the hit keys' records are on the device
    (fillers under routing.admission_max_bytes, so they are kept locally)."""
    filler = b"f" * (200 * 1024)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        for j in range(24):
            set_one(s, b"filler:%d" % j, filler)
    time.sleep(0.5)  # > flush_interval: the new open segment is written too


def read_counters(path: Path, after_ns: int, pid: int,
                  timeout: float = 5.0) -> tuple[int, dict[str, int], dict[int, Any]]:
    """The first counters snapshot published after after_ns, and the threads' CPU
    times sampled as it appears: (its mtime in ns, counters, thread_cpu(pid)).

    The runtime publishes every 0.5 s; polling every 2 ms keeps the CPU sample
    within a few ms of the counters it is divided into.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            mtime = path.stat().st_mtime_ns
            if mtime > after_ns:
                threads = thread_cpu(pid)
                return mtime, json.loads(path.read_text()), threads
        time.sleep(0.002)
    raise BenchError(f"no fresh counters in {path} (is switch mode running?)")


def run_switch(label: str, pcap: Path, hits: int, backend: Any, udp_port: int,
               args: argparse.Namespace, tmp: Path, device: Path | None = None,
               hot_tier: str = "0") -> dict[str, Any]:
    """Start the appliance on pcap, prefill, measure; return the row. With a
    hot tier on a device, the DEVICE_KEYS device-only keys are set too."""
    sub = tmp / label.replace(" ", "-").replace("%", "")
    sub.mkdir()
    cfg = appliance_config(sub, pcap, udp_port, backend.port, device, hot_tier)
    srv = core.start_appliance(args.python, cfg, sub)
    try:
        if hits:
            prefill(srv.port, hits)
        if device is not None and hot_tier != "0":
            with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
                for i in range(DEVICE_KEYS):
                    got = set_one(s, device_key(i), b"d" * DEVICE_VALUE_LEN)
                    if got != b"STORED\r\n":
                        raise BenchError(f"prefill: the appliance answered {got[:200]!r}")
        if device is not None:
            roll_segments(srv.port)
        counters = sub / "var" / "switch-counters.json"
        time.sleep(args.warmup)
        t0, c0, th0 = read_counters(counters, time.time_ns(), srv.proc.pid)
        perf = start_perf(srv.proc.pid, label, args)
        time.sleep(max(0.0, args.duration - 0.6))
        t1, c1, th1 = read_counters(counters, t0 + int((args.duration - 0.25) * 1e9),
                                    srv.proc.pid)
        finish_perf(perf)
        srv.check_alive()
    finally:
        srv.stop()
    secs = (t1 - t0) / 1e9
    d = {k: c1[k] - c0.get(k, 0) for k in c1}
    name, cpu = busiest(th0, th1)
    rate = d["rx_packets"] / secs
    return {"label": label, "rate": rate, "per_cpu_s": d["rx_packets"] / cpu if cpu else None,
            "cpu": cpu / secs, "thread": name, "seconds": secs,
            "hits": d["mc_hits"] / secs, "forwarded": d["mc_forwarded_gets"] / secs,
            "tx": d["tx_packets"] / secs,
            "port_tx": d["port:network:tx_packets"] / secs,
            "dropped": d["tx_dropped"] + d["dropped"] + d["alloc_failed"],
            "to_kernel": d["to_kernel"] + d["kernel_dropped"],
            "parked": d.get("mc_parked", 0) / secs, "park_full": d.get("mc_park_full", 0),
            "device_hits": d.get("mc_parked", 0) / secs}


# --------------------------------------------------------------- testpmd ---

_PPS = re.compile(r"Tx-pps:\s+(\d+)")


def run_testpmd(mode: str, pcap: Path, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """testpmd, one forwarding core, on the same vdev; its Tx-pps after warm-up."""
    cpus = sorted(os.sched_getaffinity(0))
    lcores = f"0@{cpus[0]},1@{cpus[-1]}"
    cmd = [TESTPMD, f"--lcores={lcores}", *eal_common(mode),
           f"--vdev=net_pcap0,rx_pcap={pcap},infinite_rx=1", "--",
           f"--forward-mode={mode}", "--port-topology=loop", "--nb-cores=1",
           f"--total-num-mbufs={MBUFS}", "--stats-period=1"]
    log = tmp / f"testpmd-{mode}.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while "Tx-pps" not in log.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"testpmd {mode} did not start:\n{log.read_text()[-2000:]}")
            time.sleep(0.2)
        time.sleep(args.warmup)
        skip = len(_PPS.findall(log.read_text(errors="replace")))
        th0 = thread_cpu(proc.pid)
        t0 = time.monotonic()
        perf = start_perf(proc.pid, f"testpmd {mode}", args)
        time.sleep(args.duration)
        finish_perf(perf)
        th1 = thread_cpu(proc.pid)
        secs = time.monotonic() - t0
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    samples = [int(x) for x in _PPS.findall(log.read_text(errors="replace"))][skip:]
    samples = samples[:max(1, int(args.duration))]
    if not samples:
        raise BenchError(f"testpmd {mode}: no rate samples in {log}")
    rate = sum(samples) / len(samples)
    name, cpu = busiest(th0, th1)
    return {"label": f"testpmd {mode}", "rate": rate,
            "per_cpu_s": rate * secs / cpu if cpu else None, "cpu": cpu / secs,
            "thread": name, "seconds": secs}


# ------------------------------------------------------------------ perf ---

def start_perf(pid: int, label: str, args: argparse.Namespace) -> Any:
    if not args.perf:
        return None
    out = core.OUT / f"perf-switch-{label.replace(' ', '-').replace('%', '')}.data"
    core.OUT.mkdir(exist_ok=True)
    proc = subprocess.Popen(["perf", "record", "-g", "-o", str(out), "-p", str(pid), "--",
                             "sleep", str(min(args.duration, 5))],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, out


def finish_perf(perf: Any) -> None:
    if not perf:
        return
    proc, out = perf
    proc.wait(30)
    rep = subprocess.run(["perf", "report", "-i", str(out), "--no-children", "--stdio",
                          "--percent-limit", "2", "-g", "none"],
                         capture_output=True, text=True)
    lines = [ln for ln in rep.stdout.splitlines() if ln.strip() and not ln.startswith("#")]
    print(f"# perf {out.name}:\n" + "\n".join(lines[:25]), file=sys.stderr)


# ----------------------------------------------------------------- run ---

def run(args: argparse.Namespace, tmp: Path) -> list[dict[str, Any]]:
    rng = random.Random(args.seed)
    udp_port = _free_udp_port()
    pcaps = {}
    scenarios = [("hits 100%", 1.0), ("misses 100%", 0.0),
                 (f"mixed {args.hit_ratio:.0%} hits", args.hit_ratio)]
    for label, ratio in scenarios:
        path = tmp / f"{label.split()[0]}.pcap"
        flen = write_pcap(path, scenario_keys(ratio, args.hit_keys, rng), udp_port)
        pcaps[label] = path
    print(f"# pcaps: {FRAMES} frames of {flen} B, keys of {KEY_LEN} B, values of "
          f"{VALUE_LEN} B, {args.hit_keys} hit keys", file=sys.stderr)
    rows = []
    with contextlib.ExitStack() as stack:
        (tmp / "mc").mkdir()
        backend = core.start_memcached(args.memcached, 1, 64, tmp / "mc")
        stack.callback(backend.stop)
        for label, ratio in scenarios:
            row = run_switch(f"smartswitch {label}", pcaps[label],
                             args.hit_keys if ratio > 0 else 0, backend, udp_port, args, tmp)
            print(f"# {row['label']:32s} {row['rate']:>12,.0f} req/s  cpu {row['cpu']:.2f}",
                  file=sys.stderr)
            rows.append(row)
        if args.device_dir:
            rows += run_device(pcaps["hits 100%"], backend, udp_port, args, tmp)
            mixed = tmp / "mixed-device.pcap"
            keys = scenario_keys(0.9, args.hit_keys, rng)
            ndev = 0
            for j, k in enumerate(keys):
                if k.startswith(b"m"):  # the 10% that would miss: device keys instead
                    keys[j] = device_key(ndev % DEVICE_KEYS)
                    ndev += 1
            write_pcap(mixed, keys, udp_port)
            rows += run_mixed_device(pcaps["hits 100%"], mixed, backend, udp_port, args, tmp)
    for mode in ("io", "macswap"):
        row = run_testpmd(mode, pcaps["hits 100%"], args, tmp)
        print(f"# {row['label']:32s} {row['rate']:>12,.0f} pkt/s  cpu {row['cpu']:.2f}",
              file=sys.stderr)
        rows.append(row)
    return rows


def run_device(pcap: Path, backend: Any, udp_port: int, args: argparse.Namespace,
               tmp: Path) -> list[dict[str, Any]]:
    """Device hits on the fast path (every hit a device read, parked), then fio
    reading the same file at the park's depth, in the same run."""
    ddir = Path(tempfile.mkdtemp(prefix="ss-switch-dev-", dir=args.device_dir))
    try:
        dev = ddir / "store.dat"
        row = run_switch("smartswitch device hits 100%", pcap, args.hit_keys, backend,
                         udp_port, args, tmp, dev)
        print(f"# {row['label']:32s} {row['rate']:>12,.0f} req/s  parked {row['parked']:,.0f}/s",
              file=sys.stderr)
        fio_args = argparse.Namespace(fio_engine="io_uring", duration=args.duration,
                                      warmup=args.warmup)
        # The hit keys' records sit in the pool's first segments (after the 1 MiB
        # label and the 4 KiB superblock); 8 MiB covers them and the filler.
        raw = device_bench.fio_side(dev, device_bench.LABEL_BYTES + 4096, 8 << 20,
                                    SW_PARK_DEPTH, "4k", fio_args)
        fio_row = {"label": f"fio io_uring 4k QD{SW_PARK_DEPTH}", "rate": raw["iops"],
                   "per_cpu_s": None, "cpu": 0.0, "thread": "fio"}
        print(f"# {fio_row['label']:32s} {raw['iops']:>12,.0f} IOPS", file=sys.stderr)
        return [row, fio_row]
    finally:
        shutil.rmtree(ddir, ignore_errors=True)


def run_mixed_device(dram_pcap: Path, mixed_pcap: Path, backend: Any, udp_port: int,
                     args: argparse.Namespace, tmp: Path) -> list[dict[str, Any]]:
    """The same appliance (a hot tier, an O_DIRECT device) on DRAM hits only,
    then on 90% DRAM hits and 10% device hits: device reads must not slow
    the lcore down."""
    rows = []
    for label, pcap in (("smartswitch dram-only (device config)", dram_pcap),
                        ("smartswitch 90% dram 10% device", mixed_pcap)):
        ddir = Path(tempfile.mkdtemp(prefix="ss-switch-dev-", dir=args.device_dir))
        try:
            row = run_switch(label, pcap, args.hit_keys, backend, udp_port, args, tmp,
                             ddir / "store.dat", MIXED_HOT_TIER)
        finally:
            shutil.rmtree(ddir, ignore_errors=True)
        print(f"# {row['label']:32s} {row['rate']:>12,.0f} req/s  device hits "
              f"{row['device_hits']:,.0f}/s  park full {row['park_full']}", file=sys.stderr)
        rows.append(row)
    return rows


def _m(v: float | None) -> str:
    return f"{v / 1e6:6.2f} M" if v is not None else "      -"


def report(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Print the table and the ratios; return them."""
    print(f"\n{'path':34s} {'req/s':>9s} {'per core':>9s} {'cpu':>5s} {'hits/s':>9s} "
          f"{'fwd/s':>9s} {'tx/s':>9s}  {'thread'}")
    for r in rows:
        print(f"{r['label']:34s} {_m(r['rate']):>9s} {_m(r['per_cpu_s']):>9s} "
              f"{r['cpu']:5.2f} {_m(r.get('hits')):>9s} {_m(r.get('forwarded')):>9s} "
              f"{_m(r.get('tx')):>9s}  {r['thread']}")
    by = {r["label"]: r for r in rows}
    ref = by.get("testpmd macswap")
    out: dict[str, Any] = {}
    if ref and ref["per_cpu_s"]:
        print(f"\nratio to testpmd macswap, per core (target >= 0.70); seed "
              f"{SEED_PER_CORE / 1e6:.0f} M/s per core, 10 GbE {LINE_RATE_10G / 1e6:.0f} M/s:")
        for r in rows:
            if r is ref or not r["per_cpu_s"] or "device" in r["label"]:
                continue  # device hits are judged against fio below
            ratio = r["per_cpu_s"] / ref["per_cpu_s"]
            out[r["label"]] = ratio
            verdict = "" if r["label"].startswith("testpmd") else \
                ("  ok" if ratio >= 0.7 else "  below target")
            print(f"  {r['label']:34s} {ratio:5.2f}x  ({r['per_cpu_s'] / SEED_PER_CORE:.2f}x "
                  f"the seed){verdict}")
    dev, fio = by.get("smartswitch device hits 100%"), by.get(f"fio io_uring 4k QD{SW_PARK_DEPTH}")
    if dev and fio and fio["rate"]:
        # Device hits served, not packets received: with the park full the
        # rest go to the kernel path and are no device hits of the lcore's.
        out["device hits / fio"] = dev["hits"] / fio["rate"]
        print(f"\ndevice hits on the fast path vs fio on the same file, QD {SW_PARK_DEPTH} "
              f"(target >= 0.80): {dev['hits'] / fio['rate']:.2f}x "
              f"({dev['parked'] / 1e3:,.0f} k parked/s, {dev['park_full']} read at once)")
    ref_d = by.get("smartswitch dram-only (device config)")
    mix = by.get("smartswitch 90% dram 10% device")
    if ref_d and mix and ref_d["rate"]:
        out["mixed / dram-only"] = mix["rate"] / ref_d["rate"]
        print(f"mixed 90% DRAM / 10% device hits vs DRAM hits only, same config "
              f"(target >= 0.90): {mix['rate'] / ref_d['rate']:.2f}x "
              f"({mix['device_hits'] / 1e3:,.0f} k device reads/s, {mix['park_full']} "
              f"handed to the kernel path with the park full)")
    for r in rows:
        if r.get("dropped") or r.get("to_kernel"):
            print(f"  note: {r['label']}: {r['dropped']} dropped, {r['to_kernel']} to the "
                  f"kernel during the window")
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke run: 3 s windows (~40 s)")
    p.add_argument("--duration", type=float, help="measured seconds per run (10; quick 3)")
    p.add_argument("--warmup", type=float, help="unmeasured seconds before (2; quick 1)")
    p.add_argument("--hit-ratio", type=float, default=0.9, help="the mixed scenario (0.9)")
    p.add_argument("--hit-keys", type=int, default=2048, help="distinct hit keys (2048)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--memcached", default=shutil.which("memcached") or "/usr/bin/memcached")
    p.add_argument("--python", default=sys.executable,
                   help="interpreter that runs `-m appliance` (default: this one)")
    p.add_argument("--huge", action="store_true",
                   help="both sides on 2 MiB hugepages (reserved if needed) instead of "
                        "--no-huge, as a production DPDK host runs")
    p.add_argument("--perf", action="store_true",
                   help="perf record each run (bench/out/perf-switch-*.data; top symbols)")
    p.add_argument("--json", type=Path, help="also write every result to this file")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (logs, configs)")
    p.add_argument("--device-dir", type=lambda v: Path(v) if v else None,
                   default=Path("/var/tmp"),
                   help="where the device-hit scenario's O_DIRECT file goes (/var/tmp); "
                        "'' skips that scenario")
    args = p.parse_args(argv)
    if args.duration is None:
        args.duration = 3.0 if args.quick else 10.0
    if args.warmup is None:
        args.warmup = 1.0 if args.quick else 2.0
    if not 0 < args.hit_ratio < 1:
        p.error("--hit-ratio: expected a share between 0 and 1, like 0.9")
    return args


def _on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    if os.geteuid() != 0:
        print("bench/switch.py: DPDK (EAL, net_pcap) needs root here; run it as root",
              file=sys.stderr)
        return 2
    if not Path(TESTPMD).exists():
        print(f"bench/switch.py: {TESTPMD} not found; install Debian's `dpdk` package "
              f"(make deps)", file=sys.stderr)
        return 2
    global HUGE
    HUGE = args.huge
    tmp = Path(tempfile.mkdtemp(prefix="ss-bench-switch-"))
    rows: list[dict[str, Any]] = []
    status = 0
    try:
        if HUGE:
            reserve_hugepages()
        rows = run(args, tmp)
    except (BenchError, KeyboardInterrupt) as e:
        print(f"bench: {e}", file=sys.stderr)
        status = 1
    finally:
        ratios = report(rows) if rows else {}
        core.finish(args, tmp, status, rows, {"ratios": ratios})
    return status


if __name__ == "__main__":
    sys.exit(main())
