"""Object requests: SmartSwitch's cached bucket vs Varnish and nginx proxy_cache, one run.

Starts an nginx origin serving objects of 1 KiB, 64 KiB and 1 MiB from a temp
docroot; Varnish, nginx proxy_cache and a SmartSwitch cached bucket (kind: http)
in front of it; and, in the same appliance, a local bucket holding the same
objects, PUT into it (bench/objects_servers.py). Every server is driven by the
same load generator, wrk with bench/objects_wrk.lua:

  hits:   GETs spread over the objects of one size, after every object has been
          fetched once through each cache; the origin's access log must not grow
          during a cache's hit run (nor Varnish's cache_miss, nor the cached
          bucket's origin_fetches);
  misses: every GET asks for a URL nobody asked for before (.../NNN/m/<unique>),
          which the origin maps back to object NNN, so each request is a cache miss
          that fetches a real object; the origin's log must grow by one per request.

Per (server, size) it prints req/s, p50 and p99 (wrk's latency histogram), the
server's CPU per request (/proc, its whole process tree) and the issue's ratios:
smartswitch-cache / Varnish and / nginx-cache, with the targets met; the local
bucket's hit ratios follow as extra information (it is no cache: no miss row).
With --pin-loadgen, wrk runs on a CPU of its own and the servers on the others.

Usage (from the repository root):
  .venv/bin/python bench/objects.py [--quick] [--sizes 1KiB ...] [--pin-loadgen]
                                    [--json FILE]

See bench/README.md ("Object requests") for how to read the output.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import run as core  # noqa: E402  (bench/run.py: servers, CPU readings, --json)
import objects_servers as srv  # noqa: E402
import pinning  # noqa: E402

WRK = shutil.which("wrk") or "/usr/bin/wrk"
LUA = core.BENCH / "objects_wrk.lua"
SIZES = {"1KiB": 1024, "64KiB": 64 * 1024, "1MiB": 1024 * 1024}
SS_CACHE, SS_LOCAL = "smartswitch-cache", "smartswitch-local"
HIT_ORDER = ("nginx-origin", "varnish", "nginx-cache", SS_CACHE, SS_LOCAL)
MISS_ORDER = ("varnish", "nginx-cache", SS_CACHE)
# A miss run is sound if the origin saw (nearly) one request per completed request;
# requests still in flight when wrk stops reach the origin but are not counted by wrk.
MISS_SHARE = 0.99
# The targets, smartswitch-cache / Varnish (like for like: both cache the origin):
# (kind, size or None for every size, metric, bound); req/s at least the bound, p99 at most.
TARGETS = (("hit", "1KiB", "req/s", 1.5), ("hit", "1KiB", "p99", 1.0),
           ("hit", "1MiB", "req/s", 1.0), ("hit", "1MiB", "p99", 1.0),
           ("miss", None, "req/s", 1.0))


# -------------------------------------------------------------- measuring ---

def _tree(root: int) -> list[int]:
    """root and every process below it (nginx workers, varnishd's cache child)."""
    kids: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        with contextlib.suppress(OSError), open(f"/proc/{name}/stat") as fh:
            ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            kids.setdefault(ppid, []).append(int(name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += kids.get(pid, [])
    return out


def _cpu_s(pids: list[int]) -> float:
    """CPU seconds (user + system) the processes have used; gone ones count 0."""
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            total += core._proc_cpu_s(pid)
    return total


class OriginLog:
    """The origin's access log: requests it served since a mark (one line each)."""

    def __init__(self, path: Path):
        self.path = path

    def mark(self) -> int:
        """The log's size now."""
        return self.path.stat().st_size if self.path.exists() else 0

    def lines_since(self, mark: int) -> int:
        """Lines written after mark (nginx writes each line whole, unbuffered)."""
        with open(self.path, "rb") as fh:
            fh.seek(mark)
            return fh.read().count(b"\n")


def _machine_tasks_s() -> float:
    """CPU seconds the machine spent in processes (user, nice, system), over all CPUs.

    Unlike run.py's busy time this leaves out irq and softirq time: loopback TCP is
    mostly softirq work that no process is charged for, and it grows with every
    server's traffic, so counting it would call a fast server's own network "noise".
    """
    with open("/proc/stat") as fh:
        vals = [int(v) for v in fh.readline().split()[1:4]]
    return sum(vals) / core.CLK_TCK


def run_wrk(t: srv.Target, size: str, nonce: str | None,
            args: argparse.Namespace) -> dict[str, Any]:
    """One wrk run against t's objects of one size; its RESULT line as a dict."""
    base = t.base.split("/", 3)
    url, prefix = "/".join(base[:3]), f"/{base[3]}{size}/"
    cmd = [*pinning.prefix(args), WRK, f"-t{args.threads}", f"-c{args.conns}",
           f"-d{args.duration}s", "--latency",
           "--timeout", "10s", "-s", str(LUA), url, "--", prefix, str(args.objects),
           nonce or "-"]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=args.duration + 30,
                             check=False)
    except subprocess.TimeoutExpired as e:
        raise core.BenchError(f"wrk overran {args.duration + 30}s: {' '.join(cmd)}") from e
    line = next((ln for ln in res.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if res.returncode != 0 or line is None:
        raise core.BenchError(f"wrk failed ({res.returncode}): {' '.join(cmd)}\n"
                              f"{res.stdout.strip()}\n{res.stderr.strip()}")
    out: dict[str, Any] = json.loads(line[len("RESULT "):])
    out["cmd"] = cmd
    return out


def measure(t: srv.Target, origin: srv.Target, log: OriginLog, kind: str, size: str,
            args: argparse.Namespace, rep: int, docroot: Path) -> dict[str, Any]:
    """One measured run: wrk's figures, CPU of server and origin, and the evidence
    that the row is what it says (hits: the origin saw nothing; misses: everything;
    a probe GET after it: the origin's bytes)."""
    nonce = None if kind == "hit" else uuid.uuid4().hex[:12]
    pids = _tree(t.server.proc.pid)
    opids = [] if t is origin else _tree(origin.server.proc.pid)
    vs0, bs0 = srv.varnishstat(t), srv.bucket_stats(t)
    mark = log.mark()
    cpu0, ocpu0, busy0 = _cpu_s(pids), _cpu_s(opids), _machine_tasks_s()
    lg0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        res = run_wrk(t, size, nonce, args)
    except core.BenchError:
        for x in (t, origin):  # a server that died says more than wrk's error does
            x.server.check_alive()
        raise
    lg1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu1, ocpu1, busy1 = _cpu_s(pids), _cpu_s(opids), _machine_tasks_s()
    origin_reqs = log.lines_since(mark)
    vs1, bs1 = srv.varnishstat(t), srv.settled_bucket_stats(t)
    for x in (t, origin):
        x.server.check_alive()
    reqs, secs = res["requests"], res["duration_us"] / 1e6
    used, oused = cpu1 - cpu0, ocpu1 - ocpu0
    lg_cpu = (lg1.ru_utime + lg1.ru_stime) - (lg0.ru_utime + lg0.ru_stime)
    errors = sum(res[k] for k in ("status_errors", "connect_errors", "read_errors",
                                  "write_errors", "timeouts"))
    row: dict[str, Any] = {
        "kind": kind, "size": size, "server": t.label, "rep": rep, "requests": reqs,
        "req_per_s": reqs / secs if secs else 0.0, "mib_per_s": res["bytes"] / secs / core.MIB,
        "p50_us": res["p50_us"], "p99_us": res["p99_us"], "errors": errors,
        "cpu_us_per_req": 1e6 * used / reqs if reqs else None,
        "origin_cpu_us_per_req": 1e6 * oused / reqs if reqs and opids else None,
        "origin_requests": origin_reqs,
        "noise_cores": max(0.0, (busy1 - busy0) - used - oused - lg_cpu) / secs,
        "varnishstat_delta": {k: vs1[k] - vs0[k] for k in vs0},
        "bucket_stats_delta": {k: bs1[k] - bs0[k] for k in bs0},
        "wrk": res,
    }
    # object 000 again (hits), or a URL never asked for that the origin maps to it (misses)
    row["probe"] = srv.probe(t, f"{size}/000" if kind == "hit" else
                             f"{size}/000/m/{nonce}-probe",
                             (docroot / srv.ORIGIN_DIR / size / "000").read_bytes())
    row["verified"], row["evidence"] = verify(t, row)
    print(f"# {kind:4s} {size:5s} {t.label:17s} #{rep} {row['req_per_s']:>9,.0f} req/s "
          f"p50 {row['p50_us'] / 1000:.2f}ms p99 {row['p99_us'] / 1000:.2f}ms errors {errors} "
          f"origin +{origin_reqs} {'ok' if row['verified'] else 'NOT VERIFIED'}: "
          f"{row['evidence']}", file=sys.stderr)
    return row


def verify(t: srv.Target, row: dict[str, Any]) -> tuple[bool, str]:
    """Whether a run is a clean hit (or miss) run, and the evidence, in words."""
    reqs, oreqs, vs, pr = row["requests"], row["origin_requests"], row["varnishstat_delta"], \
        row["probe"]
    ok = row["errors"] == 0 and reqs > 0 and pr["status"] == "200" and pr["body"] == "same"
    words = [f"origin +{oreqs:,}"] + (["probe body NOT the origin's"] if pr["body"] != "same"
                                      else [])
    if row["kind"] == "hit":
        if t.cache == "origin":
            words = [f"the origin itself: {oreqs:,} logged"]
            ok = ok and oreqs >= reqs
        else:
            ok = ok and oreqs == 0
    else:
        ok = ok and oreqs >= MISS_SHARE * reqs
    if vs:
        words.append(f"client_req +{vs['client_req']:,} cache_hit +{vs['cache_hit']:,} "
                     f"cache_miss +{vs['cache_miss']:,}"
                     + (f" fetch_failed +{vs['fetch_failed']:,}" if vs["fetch_failed"] else "")
                     + (f" lru_nuked +{vs['n_lru_nuked']:,}" if vs["n_lru_nuked"] else ""))
        # client_req counts the requests wrk had in flight when it stopped, too
        ok = ok and vs["client_req"] >= reqs and vs["fetch_failed"] == 0
        if row["kind"] == "hit":
            ok = ok and vs["cache_miss"] == 0 and vs["cache_hit"] == vs["client_req"]
        else:
            ok = ok and vs["cache_hit"] == 0 and vs["cache_miss"] == vs["client_req"]
    if "X-Varnish" in pr:
        # a hit names two transactions (this one and the one that stored the object)
        two = len(pr["X-Varnish"].split()) == 2
        words.append(f"probe X-Varnish: {pr['X-Varnish']}, Age: {pr.get('Age', '?')}")
        ok = ok and two == (row["kind"] == "hit")
    if t.cache == "nginx":
        status = pr.get("X-Cache-Status", "-")
        words.append(f"probe X-Cache-Status: {status}")
        ok = ok and status == ("HIT" if row["kind"] == "hit" else "MISS")
    bs = row["bucket_stats_delta"]
    if bs:
        words.append(_bucket_words(bs))
        ok = ok and _bucket_ok(bs, reqs, row["kind"], t.cache)
    if t.cache == "cached-bucket":
        words.append(f"probe Age: {pr.get('Age', '-')}")
    if t.cache == "local":
        words.append("local bucket (store of record)")
    return ok, "; ".join(words)


def _bucket_words(bs: dict[str, int]) -> str:
    """An appliance bucket's figures over a run, in words."""
    return (f"bucket requests +{bs['requests']:,} hits +{bs['hits']:,} misses "
            f"+{bs['misses']:,} origin_fetches +{bs['origin_fetches']:,} collapsed_fetches "
            f"+{bs['collapsed_fetches']:,}"
            + (f"; body bytes from DRAM {bs['bytes_out_dram'] / bs['bytes_out']:.0%}"
               if bs["bytes_out"] else "")
            + (f" errors +{bs['errors']:,}" if bs["errors"] else "")
            + (f" revalidations +{bs['revalidations']:,}" if bs["revalidations"] else ""))


def _bucket_ok(bs: dict[str, int], reqs: int, kind: str, cache: str) -> bool:
    """Whether an appliance bucket's figures say the run was all hits (or all misses,
    each its own fetch: no URL was asked for twice, so nothing had a fetch to join)."""
    # requests counts the requests wrk had in flight when it stopped, too
    ok = bs["requests"] >= reqs and bs["errors"] == 0 and bs["revalidations"] == 0
    if kind == "hit":
        return ok and bs["hits"] == bs["requests"] and bs["misses"] == 0 \
            and bs["origin_fetches"] == 0
    return ok and cache == "cached-bucket" and bs["hits"] == 0 \
        and bs["origin_fetches"] == bs["requests"] and bs["collapsed_fetches"] == 0


# ---------------------------------------------------------------- the run ---

def _machine_words(args: argparse.Namespace) -> str:
    """Who runs where, for the report."""
    if args.pin_loadgen:
        return pinning.words(args, "wrk") + "; the origin with the servers"
    return f"{os.cpu_count()} CPUs shared by wrk, the server and (misses) the origin"


def start_all(args: argparse.Namespace, tmp: Path,
              stack: contextlib.ExitStack) -> dict[str, srv.Target]:
    """Write the docroot, start every server (each stopped by `stack`), load and warm."""
    sizes = {s: SIZES[s] for s in args.sizes}
    docroot = tmp / "docroot"
    srv.write_docroot(docroot, sizes, args.objects)
    targets: dict[str, srv.Target] = {}

    def _keep(*ts: srv.Target) -> srv.Target:
        """Register a server's targets (one process may serve several buckets); the last."""
        stack.callback(ts[0].server.stop)
        targets.update({t.label: t for t in ts})
        print(f"# {ts[0].server.name}: {' '.join(ts[0].cmd)} (pid {ts[0].server.proc.pid})",
              file=sys.stderr)
        return ts[-1]

    # Varnish's worker threads, started later, inherit the pinning too.
    with pinning.starting_servers(args):
        origin = _keep(srv.start_origin(tmp / "origin", docroot, args.workers))
        _keep(srv.start_varnish(tmp / "varnish", origin, args.cache_mib))
        _keep(srv.start_nginx_cache(tmp / "nginx-cache", origin, args.workers, args.cache_mib))
        local = _keep(*srv.start_smartswitch(tmp / "smartswitch", args.python, args.workers,
                                             args.cache_mib, origin))
    stray = pinning.strays(args, {t.label: _tree(t.server.proc.pid) for t in targets.values()})
    if stray:
        raise core.BenchError(f"--pin-loadgen: threads off the servers' CPUs: {stray}")
    t0 = time.monotonic()
    srv.put_objects(local, docroot, sizes, args.objects)
    print(f"# PUT {len(sizes) * args.objects} objects into {local.label} in "
          f"{time.monotonic() - t0:.1f}s", file=sys.stderr)
    # Twice through every server: the caches (smartswitch-cache too) fetch and keep each
    # object, so their hit rows are hits; the origin's and the local bucket's reads come
    # from warm page cache. The second pass is what a hit row measures anyway: under
    # flash_admission: second_request, smartswitch-cache writes a copy to flash on its
    # second request, and that one-off write belongs to no hit run.
    for _ in range(2):
        for t in targets.values():
            srv.get_all(t, docroot, sizes, args.objects)
    return targets


def run(args: argparse.Namespace, tmp: Path, rows: list[dict[str, Any]],
        servers: dict[str, list[str]]) -> None:
    """Start the servers (their command lines into `servers`), then every hit run, then
    every miss run, each appended to `rows`. Hits go first: the miss runs fill the
    caches with other URLs and would evict the objects the hit rows need."""
    with contextlib.ExitStack() as stack:
        targets = start_all(args, tmp, stack)
        servers.update({t.server.name: t.cmd for t in targets.values()})
        origin = targets["nginx-origin"]
        log, docroot = OriginLog(tmp / "origin" / "access.log"), tmp / "docroot"
        plans = [(kind, [targets[x] for x in order])
                 for kind, order in (("hit", HIT_ORDER), ("miss", MISS_ORDER))
                 if kind in args.kinds]
        for kind, ts in plans:
            for size in args.sizes:
                # Alternate the order so drift on a shared machine favours no one.
                for rep in range(args.repeat):
                    for t in (ts if rep % 2 == 0 else list(reversed(ts))):
                        rows.append(measure(t, origin, log, kind, size, args, rep, docroot))


# -------------------------------------------------------------- reporting ---

def _fmt(v: float | None, spec: str) -> str:
    """v formatted with spec, or a '-' as wide as the spec asks."""
    width = spec.lstrip("<>^").split(".")[0].rstrip("f,")
    return format(v, spec) if v is not None else "-".rjust(int(width or 0))


def aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the repeats of one (kind, size, server); verified if every run was."""

    def med(key: str) -> float | None:
        vals = [r[key] for r in runs if r[key] is not None]
        return statistics.median(vals) if vals else None

    rps = [r["req_per_s"] for r in runs]
    m = statistics.median(rps)
    return {"req_per_s": m, "spread": (max(rps) - min(rps)) / m if m else 0.0,
            "mib_per_s": med("mib_per_s"), "p50_us": med("p50_us"), "p99_us": med("p99_us"),
            "errors": sum(r["errors"] for r in runs),
            "cpu_us_per_req": med("cpu_us_per_req"),
            "origin_cpu_us_per_req": med("origin_cpu_us_per_req"),
            "origin_per_req": sum(r["origin_requests"] for r in runs)
            / max(1, sum(r["requests"] for r in runs)),
            "noise_cores": max(r["noise_cores"] for r in runs),
            "verified": all(r["verified"] for r in runs),
            "evidence": runs[-1]["evidence"], "runs": len(runs)}


def _ratio(a: dict[str, Any] | None, b: dict[str, Any] | None, key: str) -> float | None:
    if not a or not b or not b.get(key):
        return None
    return a[key] / b[key]


def report(rows: list[dict[str, Any]], args: argparse.Namespace,
           servers: dict[str, list[str]]) -> dict[str, Any]:
    """Print the servers, the table, the evidence, the ratios and the targets; return them."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["kind"], r["size"], r["server"]), []).append(r)
    aggs = {k: aggregate(v) for k, v in groups.items()}
    print("\nServers:")
    for label, cmd in servers.items():
        print(f"  {label:12s} {' '.join(cmd)}")
    print(f"  (smartswitch serves {SS_CACHE}, bucket {srv.CACHED_BUCKET}: kind http, origin "
          f"nginx-origin's /{srv.ORIGIN_DIR}/; and {SS_LOCAL}, bucket {srv.LOCAL_BUCKET}: "
          f"kind local, the objects PUT into it)")
    print(f"Object GETs over HTTP/1.1: wrk -t{args.threads} -c{args.conns} -d{args.duration}s, "
          f"{args.objects} objects per size; median of {args.repeat} run(s); "
          f"{_machine_words(args)}")
    print(f"varnish -s malloc,{args.cache_mib}m; nginx-cache max_size={args.cache_mib}m; "
          f"smartswitch objects.hot_tier {args.cache_mib}MiB, {args.workers} workers; "
          f"nginx {args.workers} workers each")
    hdr = (f"{'kind':4s} {'size':5s} {'server':17s} {'req/s':>9s} {'spread':>6s} {'MiB/s':>7s} "
           f"{'p50 ms':>7s} {'p99 ms':>7s} {'errs':>5s} {'cpu/req':>7s} {'origin':>6s} "
           f"{'o/req':>5s} {'noise':>5s}  verified")
    print(hdr)
    print("-" * len(hdr))
    for kind, order in (("hit", HIT_ORDER), ("miss", MISS_ORDER)):
        if kind not in args.kinds:
            continue
        for size in args.sizes:
            for label in order:
                a = aggs.get((kind, size, label))
                if a is None:
                    continue
                print(f"{kind:4s} {size:5s} {label:17s} {a['req_per_s']:>9,.0f} "
                      f"{a['spread']:>6.0%} {a['mib_per_s']:>7,.0f} "
                      f"{a['p50_us'] / 1000:>7.2f} {a['p99_us'] / 1000:>7.2f} "
                      f"{a['errors']:>5d} {_fmt(a['cpu_us_per_req'], '>7.1f')} "
                      f"{_fmt(a['origin_cpu_us_per_req'], '>6.1f')} "
                      f"{a['origin_per_req']:>5.2f} {a['noise_cores']:>5.2f}  "
                      f"{'yes' if a['verified'] else 'NO'}")
    print("\nEvidence (last run of each row):")
    for (kind, size, label), a in aggs.items():
        print(f"  {kind:4s} {size:5s} {label:17s} {a['evidence']}")
    ratios = _ratios(aggs, args)
    ok = all(a["verified"] for a in aggs.values())
    print(f"\nverification: {'passed' if ok else 'FAILED'} "
          f"({sum(a['verified'] for a in aggs.values())}/{len(aggs)} rows verified)")
    return {"aggregates": {" ".join(k): v for k, v in aggs.items()}, "ratios": ratios,
            "verified": ok}


def _ratios(aggs: dict[tuple[str, str, str], dict[str, Any]],
            args: argparse.Namespace) -> dict[str, Any]:
    """smartswitch-cache (then smartswitch-local, hits only) / Varnish and / nginx-cache
    per row kind and size, and the targets (smartswitch-cache / Varnish)."""
    print("\nRatios (SmartSwitch / other; req/s above 1 and p99 below 1 favour SmartSwitch):")
    out: dict[str, Any] = {"rows": [], "targets": []}
    for label in (SS_CACHE, SS_LOCAL):
        for kind in args.kinds:
            for size in args.sizes:
                ss = aggs.get((kind, size, label))
                if ss is None:
                    continue
                parts = []
                for other in ("varnish", "nginx-cache"):
                    o = aggs.get((kind, size, other))
                    r = {"server": label, "kind": kind, "size": size, "vs": other,
                         "req_per_s": _ratio(ss, o, "req_per_s"),
                         "p99": _ratio(ss, o, "p99_us"),
                         "cpu_per_req": _ratio(ss, o, "cpu_us_per_req")}
                    out["rows"].append(r)
                    parts.append(f"/{other} req/s {_fmt(r['req_per_s'], '.2f')}x p99 "
                                 f"{_fmt(r['p99'], '.2f')}x cpu/req "
                                 f"{_fmt(r['cpu_per_req'], '.2f')}x")
                print(f"  {label:17s} {kind:4s} {size:5s} " + "; ".join(parts))
    met, missed, unmeasured = [], [], []
    for kind, size, metric, bound in TARGETS:
        for sz in ([size] if size else args.sizes):
            if kind not in args.kinds or sz not in args.sizes:
                continue
            r = next((x for x in out["rows"] if (x["server"], x["kind"], x["size"], x["vs"])
                      == (SS_CACHE, kind, sz, "varnish")), None)
            key = "req_per_s" if metric == "req/s" else "p99"
            op = ">=" if metric == "req/s" else "<="
            name = f"{kind} {sz} {metric} {op} {bound}x"
            val = r[key] if r else None
            good = None if val is None else (val >= bound if op == ">=" else val <= bound)
            out["targets"].append({"target": name, "kind": kind, "size": sz,
                                   "metric": metric, "bound": bound, "ratio": val,
                                   "met": good})
            {None: unmeasured, True: met, False: missed}[good].append(name)
            shown = f"{val:.2f}x {'met' if good else 'NOT met'}" if val is not None else \
                "not measured"
            print(f"  target {kind:4s} {sz:5s} {metric:5s} {op} {bound}x Varnish's "
                  f"({SS_CACHE}): {shown}")
    print(f"Targets met: {', '.join(met) or 'none'}; not met: {', '.join(missed) or 'none'}; "
          f"not measured: {', '.join(unmeasured) or 'none'}")
    return out


# ------------------------------------------------------------------- main ---

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; see the module docstring."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 2 s runs, 16 objects per size, one run each")
    p.add_argument("--sizes", nargs="+", choices=list(SIZES), default=list(SIZES))
    p.add_argument("--kinds", nargs="+", choices=["hit", "miss"], default=["hit", "miss"])
    p.add_argument("--duration", type=int, help="seconds per wrk run (5; --quick 2)")
    p.add_argument("--repeat", type=int, help="runs per row, alternating the order; "
                   "medians are reported (3; --quick 1)")
    p.add_argument("--objects", type=int, help="objects per size (64; --quick 16)")
    p.add_argument("--threads", type=int, default=2, help="wrk threads (2)")
    p.add_argument("--conns", type=int, default=50, help="wrk connections (50)")
    p.add_argument("--workers", type=int, default=2,
                   help="SmartSwitch workers and nginx worker processes (2)")
    p.add_argument("--cache-mib", type=int, default=256,
                   help="Varnish -s malloc, nginx-cache max_size and SmartSwitch's "
                   "objects.hot_tier, in MiB (256)")
    p.add_argument("--python", default=sys.executable,
                   help="interpreter that runs `-m appliance` (default: this one)")
    pinning.add_option(p)
    p.add_argument("--json", type=Path, help="also write every result to this file")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (logs, configs)")
    args = p.parse_args(argv)
    pinning.split(p, args)
    if args.duration is None:
        args.duration = 2 if args.quick else 5
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    if args.objects is None:
        args.objects = 16 if args.quick else 64
    if not 1 <= args.objects <= 1000:
        p.error("--objects: 1 to 1000 (objects are named 000..999)")
    args.sizes = [s for s in SIZES if s in args.sizes]
    args.kinds = [k for k in ("hit", "miss") if k in args.kinds]
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 on success, 1 if a server failed or a row is not verified."""
    args = parse_args(argv)
    missing = [b for b in (srv.NGINX, srv.VARNISHD, srv.VARNISHSTAT, WRK) if not Path(b).exists()]
    if missing:
        print(f"bench: {', '.join(missing)} not installed: apt-get install nginx-light varnish "
              f"wrk (make system-deps does)", file=sys.stderr)
        return 1
    # SIGTERM must unwind through the ExitStack that stops the servers.
    signal.signal(signal.SIGTERM, core._on_sigterm)
    core.OUT.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="ss-bench-objects-"))
    rows: list[dict[str, Any]] = []
    status, summary, servers = 0, {}, {}
    try:
        run(args, tmp, rows, servers)
    except (core.BenchError, KeyboardInterrupt) as e:
        print(f"bench: {e}", file=sys.stderr)
        status = 1
    finally:
        if rows:
            summary.update(report(rows, args, servers), servers=servers)
            if not summary["verified"]:
                status = 1
        core.finish(args, tmp, status, rows, summary)
    return status


if __name__ == "__main__":
    sys.exit(main())
