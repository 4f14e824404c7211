"""Device hits through the store vs raw reads of the same device, one run.

The appliance runs on a file device with direct_io: true and a hot tier far
smaller than its key space, so gets are device hits (the `hits_device` stat
proves it). The same file is then read raw by fio: random O_DIRECT reads
over the bytes the store wrote, at the same queue depth. Both sides print
p50/p99 latency and IOPS; the ratio says what the store's software path
(network, parsing, index lookup, checksum, reply) adds to the device.

With --spdk (bench/device_spdk.py) the device is an lvol on a real spdk_tgt
(an aio bdev on a file), exported over NVMe-oF/TCP on 127.0.0.1 and read by
the appliance through SPDK's NVMe initiator; the raw side is spdk_nvme_perf
against the same namespace. SPDK_DIR names the SPDK build.

Queue depth: the store side's QD is connections x depth (each connection has
one get in flight); the raw side's is fio's numjobs (psync) or iodepth
(io_uring), or spdk_nvme_perf's -q. Every process is bounded in time and
stopped on exit.

Usage:
    python bench/device.py                # QD 1, 16 and 64, 4 KiB values (~3 min)
    python bench/device.py --quick        # smaller key space, 2 s runs
    SPDK_DIR=/path/to/spdk python bench/device.py --spdk [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml


# bench/ holds scripts, not a package: Python puts the script's folder first on sys.path.
import device_spdk as spdk  # noqa: E402  (the --spdk side)
import run as core  # noqa: E402  (bench/run.py: servers, load generator, helpers)

MIB = 1024 * 1024
LABEL_BYTES = MIB            # appliance.config.LABEL_BYTES: pools start after it
RECORD_HEADER = 32           # ss_record_hdr; a record is header + key + value, 8-aligned
FIO_GRACE_S = 30


def record_bytes(value_size: int) -> int:
    """Bytes one item takes in the log (ss_record_size)."""
    return (RECORD_HEADER + core.KEY_SIZE + value_size + 7) // 8 * 8


def write_config(tmp: Path, device_dir: Path, args: argparse.Namespace) -> Path:
    """run.py's bench config with the device O_DIRECT and a tiny hot tier."""
    device_mib = (args.keys * record_bytes(args.value_size) * 5 // 4) // MIB + 64
    path = core.appliance_config(tmp, args.workers, args.hot_tier_mib, device_mib)
    cfg = yaml.safe_load(path.read_text())
    dev = cfg["storage"]["devices"][0]
    dev["path"] = str(device_dir / "store.dat")
    dev["direct_io"] = True
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def store_side(srv: Any, qd: int, args: argparse.Namespace) -> dict[str, Any]:
    """Gets only, QD connections of depth 1, over the whole key space.

    Also the appliance's CPU (all threads) in cores over warmup + run: a worker that
    polls for its device read (spdk) burns CPU a worker blocked in pread does not.
    """
    port = srv.port
    sc = core.Scenario(value_size=args.value_size, keyspace="device", keys=args.keys, depth=1)
    lg_args = argparse.Namespace(loadgen_threads=min(qd, 2), conns=qd, get_ratio=1.0,
                                 duration=args.duration, warmup=args.warmup, seed=args.seed,
                                 prefill_timeout=args.prefill_timeout)
    before = core.mc_stats(port)
    cpu0 = core._proc_cpu_s(srv.proc.pid)
    out = core.run_loadgen(port, sc, lg_args)
    cpu = core._proc_cpu_s(srv.proc.pid) - cpu0
    after = core.mc_stats(port)
    hits = {k: core._stat_delta(before, after, k) or 0
            for k in ("hits_dram", "hits_device", "device_reads", "device_read_bytes",
                      "device_reads_async", "device_reads_sync_fallback")}
    return {"iops": out["ops_per_sec"], "p50_us": out["p50_us"], "p99_us": out["p99_us"],
            "errors": out["errors"], "hits": out.get("hits"), "misses": out.get("misses"),
            "cpu_cores": cpu / (out["seconds"] + args.warmup), **hits}


def fio_side(path: Path, offset: int, size: int, qd: int, bs: str,
             args: argparse.Namespace) -> dict[str, Any]:
    """fio: random O_DIRECT reads of `bs` over [offset, offset + size) at QD qd."""
    cmd = ["fio", "--name=raw", f"--filename={path}", "--direct=1", "--rw=randread",
           f"--bs={bs}", f"--offset={offset}", f"--size={size}", "--norandommap",
           "--time_based", f"--runtime={args.duration}", f"--ramp_time={args.warmup}",
           "--group_reporting", "--output-format=json", f"--ioengine={args.fio_engine}"]
    if args.fio_engine == "psync":
        cmd += [f"--numjobs={qd}", "--thread"]
    else:
        cmd += [f"--iodepth={qd}", "--numjobs=1"]
    limit = args.duration + args.warmup + FIO_GRACE_S
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=limit)
    except subprocess.TimeoutExpired as e:
        raise core.BenchError(f"fio overran its {limit:.0f}s bound") from e
    if res.returncode != 0:
        raise core.BenchError(f"fio failed ({res.returncode}): {res.stderr.strip()}")
    job = json.loads(res.stdout[res.stdout.find("{"):])["jobs"][0]["read"]
    pct = job["clat_ns"]["percentile"]
    return {"iops": job["iops"], "p50_us": pct["50.000000"] / 1000,
            "p99_us": pct["99.000000"] / 1000, "errors": 0}


def _row(side: str, qd: int, res: dict[str, Any]) -> dict[str, Any]:
    """One table row; the 1-minute load average after it says how busy the machine was."""
    return {"side": side, "qd": qd, **res, "load1": os.getloadavg()[0]}


def store_rows(args: argparse.Namespace, config: Path, tmp: Path,
               side: str = "store") -> list[dict[str, Any]]:
    """Start the appliance, prefill, measure device hits at every QD, stop it."""
    srv = core.start_appliance(sys.executable, config, tmp)
    rows: list[dict[str, Any]] = []
    try:
        sc = core.Scenario(value_size=args.value_size, keyspace="device", keys=args.keys,
                           depth=16)
        pf_args = argparse.Namespace(loadgen_threads=1, conns=8, get_ratio=1.0, duration=0.2,
                                     warmup=0.0, seed=args.seed,
                                     prefill_timeout=args.prefill_timeout)
        t0 = time.monotonic()
        core.run_loadgen(srv.port, sc, pf_args, prefill=True)
        print(f"# prefilled {args.keys:,} keys of {args.value_size} B in "
              f"{time.monotonic() - t0:.1f}s", flush=True)
        time.sleep(0.5)  # the open segment reaches the device (flush_interval)
        for qd in args.qd:
            srv.check_alive()
            rows.append(_row(side, qd, store_side(srv, qd, args)))
    finally:
        srv.stop()
    return rows


def run(args: argparse.Namespace, tmp: Path, device_dir: Path) -> list[dict[str, Any]]:
    """Prefill and measure the store at every QD, stop it, then fio at every QD."""
    rows = store_rows(args, write_config(tmp, device_dir, args), tmp)
    written = args.keys * record_bytes(args.value_size) // 4096 * 4096
    for qd in args.qd:
        for bs in args.fio_bs:
            rows.append(_row(f"fio {bs}", qd,
                             fio_side(device_dir / "store.dat", LABEL_BYTES + 4096, written,
                                      qd, bs, args)))
    return rows


def run_spdk(args: argparse.Namespace, tmp: Path, device_dir: Path) -> list[dict[str, Any]]:
    """--spdk: embedded mode and/or external mode (--spdk-mode), each against its raw tool."""
    rows: list[dict[str, Any]] = []
    if args.spdk_mode in ("embedded", "both"):
        sub = tmp / "embedded"
        sub.mkdir()
        rows += run_spdk_embedded(args, sub, device_dir)
    if args.spdk_mode in ("external", "both"):
        sub = tmp / "external"
        sub.mkdir()
        rows += run_spdk_external(args, sub, device_dir)
    return rows


def run_spdk_embedded(args: argparse.Namespace, tmp: Path,
                      device_dir: Path) -> list[dict[str, Any]]:
    """SPDK inside the appliance: the store on the lvol of an aio bdev at every QD; then,
    the appliance stopped, bdevperf on that same lvol (found by examine on the same
    file) at every QD."""
    root = spdk.spdk_dir()
    size_mib = spdk.pool_mib(args.keys * record_bytes(args.value_size))
    config = core.appliance_config(tmp, args.workers, args.hot_tier_mib, size_mib)
    cfg = yaml.safe_load(config.read_text())
    image = device_dir / "embedded.img"
    spdk.configure_embedded(cfg, root, image, size_mib, tmp / "spdk.sock")
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    print(f"# embedded SPDK: pool {size_mib} MiB on an aio lvol over {image}", flush=True)
    rows = store_rows(args, config, tmp, side="store-emb")
    if spdk.bdevperf_bin(root) is None:
        print(f"# bdevperf is not built in {root} (make -C examples/bdev/bdevperf there): "
              "no raw figures for the embedded store", flush=True)
        return rows
    for qd in args.qd:
        for io in args.perf_io:
            rows.append(_row(f"bdevperf {io // 1024}k", qd,
                             spdk.bdevperf_side(root, image, f"ss_{spdk.DEVICE}/items", qd,
                                                io, args.duration, args.warmup, tmp)))
    print(f"# bdevperf: {rows[-1]['cmd']}", flush=True)
    return rows


def run_spdk_external(args: argparse.Namespace, tmp: Path,
                      device_dir: Path) -> list[dict[str, Any]]:
    """spdk_tgt up; the store on an lvol of it at every QD; spdk_nvme_perf on that lvol's
    namespace at every QD; spdk_tgt stopped, also on error."""
    root = spdk.spdk_dir()
    tgt = spdk.start_target(root, tmp)
    try:
        size_mib = spdk.pool_mib(args.keys * record_bytes(args.value_size))
        config = core.appliance_config(tmp, args.workers, args.hot_tier_mib, size_mib)
        cfg = yaml.safe_load(config.read_text())
        export_port = spdk.free_port()
        spdk.configure(cfg, root, tgt, device_dir / "nvme0.img", size_mib, export_port)
        config.write_text(yaml.safe_dump(cfg, sort_keys=False))
        print(f"# spdk_tgt pid {tgt.proc.pid}; pool {size_mib} MiB on an aio lvol, "
              f"export 127.0.0.1:{export_port}", flush=True)
        rows = store_rows(args, config, tmp)
        trid = spdk.transport_id(export_port, spdk.namespace_of(tgt))
        for qd in args.qd:
            for io in args.perf_io:
                tgt.check_alive()
                rows.append(_row(f"perf {io // 1024}k", qd,
                                 spdk.perf_side(root, trid, qd, io, args.duration,
                                                args.warmup)))
        print(f"# perf: {rows[-1]['cmd']}", flush=True)
    finally:
        tgt.stop()
    return rows


def _lat(r: dict[str, Any], key: str) -> float:
    """p50/p99 of a row, or its average when the raw tool gave no percentiles."""
    return r[key] if r.get(key) is not None else r["avg_us"]


def report(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    """Print the table and the store / raw ratios."""
    if args.spdk:
        print(f"\n# {args.keys:,} keys x {args.value_size} B values, hot tier "
              f"{args.hot_tier_mib} MiB, {args.workers} workers; store-emb: SPDK inside "
              f"the appliance, the lvol (aio bdev on a file) read directly, vs bdevperf on "
              f"the same lvol; store: spdk_tgt's lvol over NVMe/TCP vs spdk_nvme_perf on "
              f"the same namespace")
    else:
        print(f"\n# {args.keys:,} keys x {args.value_size} B values, hot tier "
              f"{args.hot_tier_mib} MiB, {args.workers} workers, direct_io on; fio "
              f"{args.fio_engine}, O_DIRECT randread over the written bytes")
    print(f"{'side':<10} {'QD':>3} {'IOPS':>10} {'p50 us':>8} {'p99 us':>8} {'load':>5}  notes")
    for r in rows:
        note = ""
        if r.get("p50_us") is None:
            note = "no percentiles from the raw tool: p50/p99 show the average"
        if r["side"].startswith("store"):
            hits = r["hits_dram"] + r["hits_device"]
            share = 100 * r["hits_device"] / hits if hits else 0
            per = r["device_read_bytes"] / r["device_reads"] if r["device_reads"] else 0
            # hits_device counts items not in the hot tier; those still in the open
            # segment's buffer are served without a device read
            note = (f"hits_device {r['hits_device']:,} ({share:.1f}% of hits), device_reads "
                    f"{r['device_reads']:,} ({r.get('device_reads_async') or 0:,} "
                    f"asynchronous), {per / 1024:.1f} KiB each, errors {r['errors']}, "
                    f"cpu {r['cpu_cores']:.2f} cores")
        print(f"{r['side']:<10} {r['qd']:>3} {r['iops']:>10,.0f} {_lat(r, 'p50_us'):>8.1f} "
              f"{_lat(r, 'p99_us'):>8.1f} {r['load1']:>5.1f}  {note}")
    print(f"load: 1-minute load average after the row ({os.cpu_count()} CPUs"
          f"{'; spdk_tgt busy-polls one of them' if args.spdk else ''})\n")
    stores = list(dict.fromkeys(r["side"] for r in rows if r["side"].startswith("store")))
    for store in stores:
        # Each store against the raw tool on its own path: embedded vs bdevperf on the
        # lvol, external vs spdk_nvme_perf over NVMe/TCP, the file vs fio.
        raw_prefix = {"store-emb": "bdevperf", "store": "perf" if args.spdk else "fio"}[store]
        raws = list(dict.fromkeys(r["side"] for r in rows if r["side"].startswith(raw_prefix)))
        for qd in args.qd:
            st = next(r for r in rows if r["side"] == store and r["qd"] == qd)
            for side in raws:
                raw = next(r for r in rows if r["side"] == side and r["qd"] == qd)
                print(f"QD {qd:>2} {store} / {side}: IOPS x{st['iops'] / raw['iops']:.2f}, "
                      f"p50 x{st['p50_us'] / _lat(raw, 'p50_us'):.2f}, "
                      f"p99 x{st['p99_us'] / _lat(raw, 'p99_us'):.2f}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--keys", type=int, default=100_000, help="key space (default 100k)")
    p.add_argument("--value-size", type=int, default=4096)
    p.add_argument("--hot-tier-mib", type=int, default=1)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--qd", type=lambda s: [int(x) for x in s.split(",")], default=[1, 16, 64],
                   help="queue depths, comma separated (default 1,16,64)")
    p.add_argument("--fio-bs", type=lambda s: s.split(","), default=["4k", "8k"],
                   help="fio block sizes (default 4k,8k: a 4 KiB value's record spans "
                        "two blocks)")
    # The store reads through io_uring too (store/ss_read.c): the same engine.
    p.add_argument("--fio-engine", choices=("psync", "io_uring"), default="io_uring")
    p.add_argument("--spdk", action="store_true",
                   help="the device is an lvol on spdk_tgt, the raw side spdk_nvme_perf "
                        "(needs SPDK_DIR; bench/README.md)")
    p.add_argument("--spdk-mode", choices=("embedded", "external", "both"), default="both",
                   help="--spdk: SPDK inside the appliance (vs bdevperf), spdk_tgt over "
                        "NVMe/TCP (vs spdk_nvme_perf), or both (default)")
    p.add_argument("--perf-io", type=lambda s: [int(x) for x in s.split(",")],
                   default=[4096, 8192],
                   help="--spdk: spdk_nvme_perf I/O sizes in bytes (default 4096,8192)")
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--prefill-timeout", type=float, default=120.0)
    p.add_argument("--dir", type=Path, default=Path("/var/tmp"),
                   help="where the device file goes; needs O_DIRECT (default /var/tmp)")
    p.add_argument("--json", type=Path, help="also write the rows here")
    p.add_argument("--quick", action="store_true", help="20k keys, 2 s runs")
    args = p.parse_args(argv)
    if args.quick:
        args.keys, args.duration, args.warmup = 20_000, 2.0, 0.5
    return args


def _on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.spdk:
        try:
            spdk.spdk_dir()
        except spdk.SpdkBenchError as e:
            print(e, file=sys.stderr)
            return 2
    elif shutil.which("fio") is None:
        print("fio is not installed (Debian package fio; `make system-deps`)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _on_sigterm)
    core.build_loadgen()
    with tempfile.TemporaryDirectory(prefix="ss-bench-device-") as t, \
            tempfile.TemporaryDirectory(prefix="ss-bench-device-", dir=args.dir) as d:
        try:
            rows = (run_spdk if args.spdk else run)(args, Path(t), Path(d))
        except (core.BenchError, spdk.SpdkBenchError) as e:
            print(f"bench failed: {e}", file=sys.stderr)
            return 1
    report(rows, args)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
