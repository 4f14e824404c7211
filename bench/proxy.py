"""Proxy-mode benchmark: SmartSwitch vs twemproxy vs straight to memcached, one run.

Starts three memcached back ends, twemproxy (Debian's `nutcracker`, one
process, ketama md5 over the three), two SmartSwitch appliances in proxy mode
over the same three (one with `admission: never`, so every get is forwarded to
its owner; one with `admission: always`, prefilled through itself and then read
once, so every get hits locally) and one more memcached to talk to directly. Every server is
driven by the same C load generator (bench/loadgen.c) with the same load:

  gets (100% get) and sets (100% set) of 32-byte keys and 100-byte values,
  uniform over a key space that fits half the appliance's hot tier,
  50 connections, pipeline depth 1 (latency) and 16 (throughput).

It prints ops/s, p50 and p99 per server and scenario, and the issue's ratios:
sets against twemproxy (target: ops/s >= 1.0x with CPU per op <= 1.0x),
forwarded gets against twemproxy (target: ops per core-second >= 1.5x), the
p50 each proxy adds over direct, and local hits against direct (target:
within 1.1x).

Usage (from the repository root):
  .venv/bin/python bench/proxy.py [--quick] [--standin] [--json FILE]

See bench/README.md ("Proxy mode") for how to read the output.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml


# bench/ holds scripts, not a package: Python puts the script's folder first on sys.path.
import run as core  # noqa: E402  (bench/run.py: servers, load generator, helpers)
BenchError = core.BenchError
Server = core.Server

BACKENDS = 3
VALUE_SIZE = 100
NUTCRACKER = shutil.which("nutcracker") or "/usr/sbin/nutcracker"
# The back ends' per-op timeout for both proxies (twemproxy's `timeout`,
# SmartSwitch's request_timeout), as deployed: long enough never to fire here.
REQUEST_TIMEOUT_MS = 500
PROBE_TIMEOUT_S = 5.0


@dataclasses.dataclass(frozen=True)
class Load:
    """One load shape: what every server in its group is driven with.

    Attributes:
        op: "get" (100% gets) or "set" (100% sets).
        depth: requests in flight per connection.
        conns: connections; 0 means --conns (50). One connection at depth 1
            is the unloaded latency: no queueing anywhere, only the hops.
    """

    op: str
    depth: int
    conns: int = 0

    @property
    def name(self) -> str:
        """A short label: `get d1`, `get d1 c1`."""
        return f"{self.op} d{self.depth}" + (f" c{self.conns}" if self.conns else "")

    @property
    def get_ratio(self) -> float:
        """The load generator's --get-ratio for this load."""
        return 1.0 if self.op == "get" else 0.0


@dataclasses.dataclass
class Target:
    """One server the load generator is pointed at.

    Attributes:
        label: the row's name: direct, twemproxy, smartswitch miss/hit.
        server: the process answering the load generator.
        ops: which loads it is measured with ("get", "set").
        backends: the back ends behind it (empty for direct).
    """

    label: str
    server: Any
    ops: tuple[str, ...]
    backends: list[Any]


# ---------------------------------------------------------------- servers ---

def start_nutcracker(backends: list[Any], tmp: Path, name: str) -> Any:
    """Start twemproxy as it is deployed: one process, one pool, ketama md5.

    Servers are named mc1..mcN, so that SmartSwitch with `compat: twemproxy`
    and the same names puts every key on the same back end; a key space
    prefilled through twemproxy then holds every key where both look for it.

    Returns:
        A core.Server for the nutcracker process.
    """
    port, stats_port = core._free_port(), core._free_port()
    lines = [
        "pool:",
        f"  listen: 127.0.0.1:{port}",
        "  hash: md5",
        "  distribution: ketama",
        "  auto_eject_hosts: true",
        "  server_retry_timeout: 1000",
        "  server_failure_limit: 3",
        f"  timeout: {REQUEST_TIMEOUT_MS}",
        "  servers:",
    ]
    lines += [f"    - 127.0.0.1:{b.port}:1 mc{i + 1}" for i, b in enumerate(backends)]
    conf = tmp / f"{name}.yml"
    conf.write_text("\n".join(lines) + "\n")
    log = tmp / f"{name}.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen([NUTCRACKER, "-c", str(conf), "-s", str(stats_port),
                                 "-a", "127.0.0.1", "-v", "4"],
                                stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    server = Server(name, port, proc, log)
    try:
        core._wait_port(port, proc, 15.0)
    except BenchError:
        server.stop()
        raise
    return server


def proxy_config(tmp: Path, args: argparse.Namespace, backends: list[Any],
                 admission: str, device_mib: int) -> Path:
    """Write a proxy-mode appliance config: run.py's bench config plus back ends.

    Routing is ketama md5 with `compat: twemproxy` over back ends named like
    twemproxy's (mc1..mcN), so both proxies map every key the same way.
    local_ttl_max is 0 (unbounded) so local copies made by the prefill do not
    expire between the prefill and a long run's last measurement.
    """
    path = core.appliance_config(tmp, args.workers, args.hot_tier_mib, device_mib)
    cfg: dict[str, Any] = yaml.safe_load(path.read_text())
    cfg["backends"] = [{"name": f"mc{i + 1}", "host": "127.0.0.1", "port": b.port, "weight": 1}
                       for i, b in enumerate(backends)]
    cfg["backend_defaults"] = {"request_timeout": f"{REQUEST_TIMEOUT_MS}ms"}
    cfg["routing"] = {"distribution": "ketama", "hash": "md5", "compat": "twemproxy",
                      "admission": admission, "local_ttl_max": "0s"}
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def _roundtrip(port: int, request: bytes, end: bytes) -> bytes:
    """Send one request to 127.0.0.1:port; read until the reply ends with `end`."""
    with socket.create_connection(("127.0.0.1", port), timeout=PROBE_TIMEOUT_S) as s:
        s.sendall(request)
        buf = b""
        deadline = time.monotonic() + PROBE_TIMEOUT_S
        while not buf.endswith(end) and b"ERROR" not in buf:
            if time.monotonic() > deadline:
                break
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    return buf


def check_forwarding(srv: Any, backends: list[Any]) -> None:
    """Fail fast unless a set through srv lands on one back end and a get returns it.

    This is the bench's precondition for proxy mode working end to end; a
    proxy that answers locally without forwarding (or not at all) would
    otherwise produce a table of meaningless figures.

    Raises:
        BenchError: the set, the get or the back-end check failed.
    """
    key = f"bench:probe:{srv.name}:{os.getpid()}".encode()
    val = b"probe-" + key
    try:
        stored = _roundtrip(srv.port, b"set %s 0 0 %d\r\n%s\r\n" % (key, len(val), val),
                            b"\r\n")
        got = _roundtrip(srv.port, b"get %s\r\n" % key, b"END\r\n")
    except OSError as e:
        raise BenchError(f"{srv.name}: probe failed: {e}") from e
    want = b"VALUE %s 0 %d\r\n%s\r\nEND\r\n" % (key, len(val), val)
    holders = [i for i, b in enumerate(backends)
               if _roundtrip(b.port, b"get %s\r\n" % key, b"END\r\n") == want]
    if stored != b"STORED\r\n" or got != want or len(holders) != 1:
        raise BenchError(f"{srv.name} does not forward end to end: set -> {stored!r}, "
                         f"get -> {got[:120]!r}, held by back ends {holders}\n"
                         f"{srv.log_tail()}")


# -------------------------------------------------------------- measuring ---

def _loadgen_args(args: argparse.Namespace, load: Load) -> argparse.Namespace:
    """run.py's options with this load's get ratio, for core.run_loadgen."""
    return argparse.Namespace(**{**vars(args), "get_ratio": load.get_ratio,
                                 "conns": load.conns or args.conns})


def _be_counters(backends: list[Any]) -> dict[str, int]:
    """cmd_get and cmd_set summed over the back ends (to see what was forwarded)."""
    tot = {"cmd_get": 0, "cmd_set": 0}
    for b in backends:
        st = core.mc_stats(b.port)
        for k in tot:
            tot[k] += int(st.get(k, 0))
    return tot


def measure(t: Target, load: Load, keys: int, args: argparse.Namespace,
            rep: int) -> dict[str, Any]:
    """One measured run of a load against one target, with CPU and back-end deltas."""
    space = f"proxy-{load.op}" + (f"-c{load.conns}" if load.conns else "")
    sc = core.Scenario(VALUE_SIZE, space, keys, load.depth)
    lg_args = _loadgen_args(args, load)
    perf = core.start_perf(t.server, sc, args, rep)
    procs = [t.server] + t.backends
    be0 = _be_counters(t.backends)
    ix0, _ = _store_figures(t)
    cpu0 = [core._proc_cpu_s(p.proc.pid) for p in procs]
    sw0 = core._proc_switches(t.server.proc.pid)
    busy0 = core._machine_busy_s()
    lg0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        res = core.run_loadgen(t.server.port, sc, lg_args)
    finally:
        lg1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        busy1 = core._machine_busy_s()
        cpu1 = [core._proc_cpu_s(p.proc.pid) for p in procs]
        sw1 = core._proc_switches(t.server.proc.pid)
        if perf:
            core.finish_perf(*perf)
    be1 = _be_counters(t.backends)
    ix1, copies = _store_figures(t)
    for p in procs:
        p.check_alive()
    span = res["seconds"] + args.warmup
    total = res["ops_per_sec"] * span  # ops over warmup + measure, as counters see them
    used = [b - a for a, b in zip(cpu0, cpu1)]
    lg_cpu = (lg1.ru_utime + lg1.ru_stime) - (lg0.ru_utime + lg0.ru_stime)
    res["cpu"] = {
        "server_us_per_op": 1e6 * used[0] / total if total else None,
        "backends_us_per_op": 1e6 * sum(used[1:]) / total if total and t.backends else None,
        "others_cores": max(0.0, (busy1 - busy0) - sum(used) - lg_cpu) / span,
        # Sleeps and wake-ups: on a VM each costs several us of CPU, and they,
        # more than syscalls, set a proxy's CPU per op at depth 1.
        "switches_per_op": (sw1 - sw0) / total if total else None,
    }
    fwd = be1["cmd_get" if load.op == "get" else "cmd_set"] - be0[
        "cmd_get" if load.op == "get" else "cmd_set"]
    res["forwarded_per_op"] = fwd / total if total and t.backends else None
    # Index puts and deletes per op: the group commit's share of the CPU
    # (a set of a key whose copy a fill made deletes that copy's entry).
    res["index_ops_per_op"] = (ix1 - ix0) / total if total and ix0 is not None else None
    print(f"# {load.name:10s} {t.label:17s} #{rep} {res['ops_per_sec']:>10,.0f} "
          f"ops/s p50 {res['p50_us']:.0f}us p99 {res['p99_us']:.0f}us errors {res['errors']} "
          f"fwd/op {_fmt(res['forwarded_per_op'], '.2f')} "
          f"switches/op {_fmt(res['cpu']['switches_per_op'], '.3f')} "
          f"index ops/op {_fmt(res['index_ops_per_op'], '.3f')} "
          f"DRAM copies {_fmt(copies, ',')}",
          file=sys.stderr)
    return {"load": load.name, "op": load.op, "depth": load.depth,
            "conns": load.conns or args.conns, "target": t.label, "rep": rep, "result": res}


def _store_figures(t: Target) -> tuple[int | None, int | None]:
    """The appliance's index puts and deletes so far, and its DRAM copies
    now (None, None for other servers)."""
    if not t.label.startswith("smartswitch"):
        return None, None
    st = core.mc_stats(t.server.port)
    return int(st.get("index_committed_ops", 0)), int(st.get("hot_items", 0))


def _aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over repeats of one (load, target), with the ops/s spread."""
    res = [r["result"] for r in runs]
    ops = [x["ops_per_sec"] for x in res]
    med = statistics.median(ops)

    def _med(key: str) -> float | None:
        vals = [x["cpu"][key] for x in res if x["cpu"][key] is not None]
        return statistics.median(vals) if vals else None

    fwd = [x["forwarded_per_op"] for x in res if x["forwarded_per_op"] is not None]
    return {
        "ops_per_sec": med,
        "spread": (max(ops) - min(ops)) / med if med > 0 else 0.0,
        "p50_us": statistics.median(x["p50_us"] for x in res),
        "p99_us": statistics.median(x["p99_us"] for x in res),
        "errors": sum(x["errors"] for x in res),
        "gets": sum(x["gets"] for x in res),
        "hits": sum(x["hits"] for x in res),
        "server_us_per_op": _med("server_us_per_op"),
        "backends_us_per_op": _med("backends_us_per_op"),
        "switches_per_op": _med("switches_per_op"),
        "others_cores": max(x["cpu"]["others_cores"] for x in res),
        "forwarded_per_op": statistics.median(fwd) if fwd else None,
        "runs": len(runs),
    }


# ---------------------------------------------------------------- the run ---

def _sizes(args: argparse.Namespace, keys: int) -> tuple[int, int]:
    """memcached -m (each server) and the appliances' device size, in MiB.

    Every memcached gets room for the whole key space (a back end holds about
    a third of it) so nothing evicts; the appliance's device is a sparse log
    sized for the prefill plus every set measured (see run.py's _sizes).
    """
    item = core.KEY_SIZE + VALUE_SIZE + core.ITEM_OVERHEAD
    mem_mib = math.ceil(keys * item * 1.4 / core.MIB) + 64
    sets = core.SET_RATE_BOUND * (args.duration + args.warmup) * len(args.depths) * args.repeat
    dev_mib = max(1024, math.ceil((keys + sets) * item * 1.5 / core.MIB), args.hot_tier_mib * 4)
    return mem_mib, dev_mib


def start_all(args: argparse.Namespace, keys: int, tmp: Path,
              stack: contextlib.ExitStack) -> list[Target]:
    """Start every server (each stopped by `stack`); return the measured targets."""
    mem_mib, dev_mib = _sizes(args, keys)

    def _memcached(name: str, threads: int) -> Any:
        sub = tmp / name
        sub.mkdir()
        srv = core.start_memcached(args.memcached, threads, mem_mib, sub)
        srv.name = name
        stack.callback(srv.stop)
        return srv

    def _twemproxy(name: str) -> Any:
        srv = start_nutcracker(backends, tmp, name)
        stack.callback(srv.stop)
        return srv

    def _appliance(name: str, admission: str) -> Any:
        if args.standin:
            # a second twemproxy in the appliance's seat, to test the bench itself
            srv = _twemproxy(name)
        else:
            sub = tmp / name
            sub.mkdir()
            cfg = proxy_config(sub, args, backends, admission, dev_mib)
            srv = core.start_appliance(args.python, cfg, sub)
            srv.name = name
            stack.callback(srv.stop)
        check_forwarding(srv, backends)
        return srv

    direct = _memcached("direct", args.workers)
    backends = [_memcached(f"mc{i + 1}", args.backend_threads) for i in range(BACKENDS)]
    twem = _twemproxy("twemproxy")
    check_forwarding(twem, backends)
    fwd = _appliance("ss-fwd", "never")
    local = _appliance("ss-local", "always")
    return [Target("direct", direct, ("get", "set"), []),
            Target("twemproxy", twem, ("get", "set"), backends),
            Target("smartswitch fwd", fwd, ("get",), backends),
            Target("smartswitch local", local, ("get", "set"), backends)]


def prefill(targets: list[Target], keys: int, args: argparse.Namespace) -> None:
    """Set every key once: directly, through twemproxy, and through ss-local.

    Through twemproxy the keys land on the back ends that both proxies map
    them to; ss-fwd (admission never) is not prefilled, so its local store
    stays empty and every get it serves is forwarded. ss-local is prefilled
    through itself and then reads every key once: a set keeps no local copy
    of a key that has none (it only invalidates), so the copies of the hit
    case come from that read, as a fill of each forwarded get.
    """
    sc = core.Scenario(VALUE_SIZE, "proxy", keys, 16)
    by = {t.label: t for t in targets}
    for label in ("direct", "twemproxy", "smartswitch local"):
        t0 = time.monotonic()
        core.run_loadgen(by[label].server.port, sc, _loadgen_args(args, Load("set", 16)),
                         prefill=True)
        print(f"# prefilled {keys} keys of {VALUE_SIZE} B through {label} "
              f"in {time.monotonic() - t0:.1f}s", file=sys.stderr)
    if "smartswitch local" in by:
        t0 = time.monotonic()
        found = _read_every_key(by["smartswitch local"].server.port, keys, args.prefill_timeout)
        print(f"# read {found} of {keys} keys through smartswitch local (its copies) in "
              f"{time.monotonic() - t0:.1f}s", file=sys.stderr)
        if found != keys:
            raise core.BenchError(f"smartswitch local found {found} of {keys} prefilled keys")


def _loadgen_key(k: int) -> bytes:
    """Key number k as bench/loadgen.c writes it (lg_put_key): key: and zero-padded digits."""
    return b"key:" + str(k).zfill(core.KEY_SIZE - 4).encode()


def _read_every_key(port: int, keys: int, timeout_s: float) -> int:
    """Get every key once in multi-gets of 100; returns how many were found."""
    batch, found = 100, 0
    deadline = time.monotonic() + timeout_s
    with socket.create_connection(("127.0.0.1", port), timeout=PROBE_TIMEOUT_S) as s:
        for first in range(0, keys, batch):
            if time.monotonic() > deadline:
                raise core.BenchError(f"reading the prefilled keys overran {timeout_s:g}s")
            names = b" ".join(_loadgen_key(k) for k in range(first, min(first + batch, keys)))
            s.sendall(b"get " + names + b"\r\n")
            buf = b""
            while not buf.endswith(b"END\r\n"):
                chunk = s.recv(1 << 20)
                if not chunk:
                    raise core.BenchError("smartswitch local closed the connection mid-read")
                buf += chunk
            found += buf.count(b"VALUE ")
    return found


def run(args: argparse.Namespace, tmp: Path, rows: list[dict[str, Any]]) -> int:
    """Start the servers, prefill, measure every load on every target; return keys."""
    keys = int(args.hot_tier_mib * core.MIB * core.DRAM_FILL
               / (core.KEY_SIZE + VALUE_SIZE + core.ITEM_OVERHEAD))
    if args.keys:
        keys = args.keys
    with contextlib.ExitStack() as stack:
        targets = start_all(args, keys, tmp, stack)
        prefill(targets, keys, args)
        loads = [Load(op, d) for op in args.ops for d in args.depths]
        if args.single_conn and "get" in args.ops:
            loads.insert(0, Load("get", 1, 1))
        for load in loads:
            ts = [t for t in targets if load.op in t.ops]
            # Alternate the order so drift on a shared machine favours no one.
            for rep in range(args.repeat):
                for t in (ts if rep % 2 == 0 else list(reversed(ts))):
                    rows.append(measure(t, load, keys, args, rep))
    return keys


# -------------------------------------------------------------- reporting ---

def _fmt(v: float | None, spec: str) -> str:
    """Format v with spec, or '-' for None."""
    return "-" if v is None else format(v, spec)


def _judge(ok: bool | None) -> str:
    """'met' / 'NOT met' / 'n/a' for a target check."""
    return "n/a" if ok is None else ("met" if ok else "NOT met")


def report(rows: list[dict[str, Any]], args: argparse.Namespace, keys: int) -> dict[str, Any]:
    """Print the table and the issue's ratios; return them for the JSON file."""
    groups: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for r in rows:
        groups.setdefault(r["load"], {}).setdefault(r["target"], []).append(r)
    print()
    print(f"Proxy mode: {BACKENDS} memcached back ends ({args.backend_threads} thread(s) each) "
          f"behind twemproxy (1 process) and SmartSwitch ({args.workers} workers); direct = one "
          f"memcached ({args.workers} threads)")
    print(f"{core.KEY_SIZE}-byte keys, {VALUE_SIZE} B values, {keys:,} keys (uniform), "
          f"{args.conns} connections; median of {args.repeat} run(s) of {args.duration:g}s "
          f"after {args.warmup:g}s warmup; {os.cpu_count()} CPUs shared by everything"
          + ("; --standin: twemproxy plays smartswitch" if args.standin else ""))
    hdr = (f"{'load':10s} {'server':18s} {'ops/s':>9s} {'spread':>6s} {'p50 us':>7s} "
           f"{'p99 us':>7s} {'errs':>5s} {'hit%':>5s} {'cpu/op':>6s} {'be cpu':>6s} "
           f"{'fwd/op':>6s} {'noise':>5s}")
    print(hdr)
    print("-" * len(hdr))
    aggs: dict[str, dict[str, dict[str, Any]]] = {}
    for name, per in groups.items():
        agg = {label: _aggregate(runs) for label, runs in per.items()}
        aggs[name] = agg
        op = name.split()[0]
        for label, a in agg.items():
            hit = 100.0 * a["hits"] / a["gets"] if a["gets"] else None
            print(f"{name:10s} {label:18s} {a['ops_per_sec']:>9,.0f} "
                  f"{a['spread']:>6.0%} {a['p50_us']:>7.0f} {a['p99_us']:>7.0f} "
                  f"{a['errors']:>5d} {_fmt(hit, '>5.1f'):>5s} "
                  f"{_fmt(a['server_us_per_op'], '>6.1f'):>6s} "
                  f"{_fmt(a['backends_us_per_op'], '>6.1f'):>6s} "
                  f"{_fmt(a['forwarded_per_op'], '>6.2f'):>6s} {a['others_cores']:>5.2f}")
            if op == "get" and hit is not None and hit < 99.0:
                print(f"{'':10s} ^ only {hit:.1f}% of gets found a value: keys are not where "
                      f"this server looks for them; its figures are not comparable")
            fwd = a["forwarded_per_op"]
            if label == "smartswitch local" and op == "get" and fwd is not None and fwd > 0.05:
                print(f"{'':10s} ^ {fwd:.2f} of its gets went to a back end: these are not "
                      f"local hits, and the row does not measure what it names")
    ratios = _ratios(aggs, args.workers)
    return {"aggregates": aggs, "ratios": ratios}


def _target_line(op: str, r: dict[str, Any]) -> str:
    """The issue's target for this load, judged (sets: ops/s >= 1.0x and CPU
    per op <= 1.0x twemproxy's; forwarded gets: ops per core-second >= 1.5x)."""
    if op == "set":
        r["target_met"] = (r.get("tput_vs_twemproxy", 0) >= 1.0
                           and r["cpu_per_op_vs_twemproxy"] <= 1.0)
        return (f"target: sets >= 1.0x twemproxy's ops/s with CPU per op <= 1.0x: "
                f"{r.get('tput_vs_twemproxy', 0):.2f}x, {r['cpu_per_op_vs_twemproxy']:.2f}x: "
                f"{_judge(r['target_met'])}")
    r["target_met"] = r["per_core_capacity_vs_twemproxy"] >= 1.5
    return (f"target: forwarded gets >= 1.5x twemproxy's ops per core-second: "
            f"{r['per_core_capacity_vs_twemproxy']:.2f}x: {_judge(r['target_met'])}")


def _ratios(aggs: dict[str, dict[str, dict[str, Any]]], workers: int) -> list[dict[str, Any]]:
    """Print and return the issue's ratios per load (d1: latency, d16: throughput).

    Targets are judged on the 50-connection rows; the one-connection row (c1)
    shows the same ratios without queueing, for reading what a hop costs.
    """
    print("\nRatios (d1: the latency rows, d16: the throughput row; c1: one connection, "
          "no queueing, not judged):")
    out = []
    for name, a in aggs.items():
        op = name.split()[0]
        judged = " c" not in name
        dr, tw = a.get("direct"), a.get("twemproxy")
        ss = a.get("smartswitch fwd") if op == "get" else a.get("smartswitch local")
        loc = a.get("smartswitch local") if op == "get" else None
        r: dict[str, Any] = {"load": name}
        if ss and tw and tw["ops_per_sec"] > 0:
            r["tput_vs_twemproxy"] = ss["ops_per_sec"] / tw["ops_per_sec"]
        if ss and tw and dr:
            r["p50_added_us"] = ss["p50_us"] - dr["p50_us"]
            r["twemproxy_p50_added_us"] = tw["p50_us"] - dr["p50_us"]
            if r["twemproxy_p50_added_us"] > 0:
                r["p50_added_ratio"] = r["p50_added_us"] / r["twemproxy_p50_added_us"]
        what = "forwarded gets (misses)" if op == "get" else "sets"
        line = f"  {name:10s} {what}: SmartSwitch/twemproxy ops/s " \
               f"{_fmt(r.get('tput_vs_twemproxy'), '.2f')}x"
        line += (f"; p50 added over direct: SmartSwitch {_fmt(r.get('p50_added_us'), '+.0f')} us,"
                 f" twemproxy {_fmt(r.get('twemproxy_p50_added_us'), '+.0f')} us, ratio "
                 f"{_fmt(r.get('p50_added_ratio'), '.2f')}")
        print(line)
        if ss and tw and ss["server_us_per_op"] and tw["server_us_per_op"]:
            # Throughput here is bounded by 2 shared cores; CPU per op is not. twemproxy is one
            # process, so one core is its ceiling; SmartSwitch's ceiling is its workers' cores.
            r["cpu_per_op_vs_twemproxy"] = ss["server_us_per_op"] / tw["server_us_per_op"]
            r["per_core_capacity_vs_twemproxy"] = 1 / r["cpu_per_op_vs_twemproxy"]
            print(f"  {name:10s} {what}: proxy CPU per op SmartSwitch "
                  f"{ss['server_us_per_op']:.1f} us, twemproxy {tw['server_us_per_op']:.1f} us: "
                  f"ops per core-second {r['per_core_capacity_vs_twemproxy']:.2f}x twemproxy's "
                  f"(a projection for {workers} free cores: "
                  f"{workers * r['per_core_capacity_vs_twemproxy']:.2f}x); context switches "
                  f"per op SmartSwitch {_fmt(ss.get('switches_per_op'), '.3f')}, twemproxy "
                  f"{_fmt(tw.get('switches_per_op'), '.3f')}")
            if judged:
                print(f"  {name:10s} {_target_line(op, r)}")
        if loc and dr and dr["ops_per_sec"] > 0 and dr["p50_us"] > 0:
            r["hit_tput_vs_direct"] = loc["ops_per_sec"] / dr["ops_per_sec"]
            r["hit_p50_vs_direct"] = loc["p50_us"] / dr["p50_us"]
            r["hit_p99_vs_direct"] = loc["p99_us"] / dr["p99_us"] if dr["p99_us"] else None
            r["hit_met"] = (r["hit_tput_vs_direct"] >= 1 / 1.1
                            and r["hit_p50_vs_direct"] <= 1.1) if judged else None
            print(f"  {name:10s} local hits vs direct: ops/s "
                  f"{r['hit_tput_vs_direct']:.2f}x, p50 {r['hit_p50_vs_direct']:.2f}x, "
                  f"p99 {_fmt(r['hit_p99_vs_direct'], '.2f')}x "
                  + (f"(ops/s and p50 within 1.1x: {_judge(r['hit_met'])})" if judged else ""))
        out.append(r)
    return out


# ------------------------------------------------------------------- main ---

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; see the module docstring."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="smoke run (~1 min): 16 MiB hot tier, one 2 s run each")
    p.add_argument("--standin", action="store_true",
                   help="test the bench itself: twemproxy plays both smartswitch instances")
    p.add_argument("--duration", type=float, help="measured seconds per run (5)")
    p.add_argument("--warmup", type=float, help="unmeasured seconds before each run (2)")
    p.add_argument("--repeat", type=int, help="runs per load and server, alternating "
                   "the order; medians are reported (3)")
    p.add_argument("--depths", type=int, nargs="+", default=[1, 16])
    p.add_argument("--ops", nargs="+", choices=["get", "set"], default=["get", "set"])
    p.add_argument("--single-conn", action=argparse.BooleanOptionalAction, default=True,
                   help="also a 1-connection depth-1 get row: latency without queueing (on)")
    p.add_argument("--keys", type=int, help="key space (default: half the hot tier)")
    p.add_argument("--hot-tier-mib", type=int, help="appliance DRAM tier (64; --quick 16)")
    p.add_argument("--workers", type=int, default=2,
                   help="SmartSwitch workers and direct memcached threads (2)")
    p.add_argument("--backend-threads", type=int, default=1,
                   help="threads of each back-end memcached (1)")
    p.add_argument("--loadgen-threads", type=int, default=1)
    p.add_argument("--conns", type=int, default=core.CONNS)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--prefill-timeout", type=float, default=300.0)
    p.add_argument("--memcached", default=shutil.which("memcached") or "/usr/bin/memcached")
    p.add_argument("--python", default=sys.executable,
                   help="interpreter that runs `-m appliance` (default: this one)")
    p.add_argument("--perf", action="store_true",
                   help="profile the first run of every load with perf (bench/out/perf-*.data)")
    p.add_argument("--perf-servers", nargs="+", default=["ss-fwd", "ss-local"],
                   choices=["direct", "twemproxy", "ss-fwd", "ss-local"],
                   help="whom --perf profiles (ss-fwd ss-local)")
    p.add_argument("--json", type=Path, help="also write every result to this file")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (logs, configs)")
    args = p.parse_args(argv)
    if args.duration is None:
        args.duration = 2.0 if args.quick else 5.0
    if args.warmup is None:
        args.warmup = 0.5 if args.quick else 2.0
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    if args.hot_tier_mib is None:
        args.hot_tier_mib = 16 if args.quick else 64
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 on success, 1 if a server or the load generator failed."""
    args = parse_args(argv)
    if not Path(NUTCRACKER).exists():
        print("bench: nutcracker (twemproxy) not installed: apt-get install nutcracker "
              "(make system-deps does)", file=sys.stderr)
        return 1
    # SIGTERM must unwind through the ExitStack that stops the servers.
    signal.signal(signal.SIGTERM, core._on_sigterm)
    core.build_loadgen()
    tmp = Path(tempfile.mkdtemp(prefix="ss-bench-proxy-"))
    rows: list[dict[str, Any]] = []
    status, keys, summary = 0, 0, {}
    try:
        keys = run(args, tmp, rows)
    except (BenchError, KeyboardInterrupt) as e:
        print(f"bench: {e}", file=sys.stderr)
        status = 1
    finally:
        if rows:
            summary = report(rows, args, keys or (args.keys or 0))
        core.finish(args, tmp, status, rows, summary)
    return status


if __name__ == "__main__":
    sys.exit(main())
