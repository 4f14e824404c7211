"""The comparison table bench/run.py prints: medians per scenario and server,
the ratios to memcached's figures, and which targets the run met."""

from __future__ import annotations

import argparse
import os
import statistics
from typing import Any

import pinning


def _aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median ops/s, p50 and p99 over repeats of one scenario on one server.

    Also the ops/s spread ((max - min) / median), summed errors and summed
    stats deltas, so a noisy comparison is visible as such.
    """
    res = [r["result"] for r in runs]
    ops = [x["ops_per_sec"] for x in res]
    med = statistics.median(ops)
    deltas: dict[str, int | None] = {}
    for name in runs[0]["stats_delta"]:
        vals = [r["stats_delta"][name] for r in runs]
        deltas[name] = None if any(v is None for v in vals) else sum(vals)
    return {
        "ops_per_sec": med,
        "p50_us": statistics.median(x["p50_us"] for x in res),
        "p99_us": statistics.median(x["p99_us"] for x in res),
        "spread": (max(ops) - min(ops)) / med if med > 0 else 0.0,
        "server_us_per_op": statistics.median(
            x["cpu"]["server_us_per_op"] or 0.0 for x in res),
        "others_cores": max(x["cpu"]["others_cores"] for x in res),
        "errors": sum(x["errors"] for x in res),
        "gets": sum(x["gets"] for x in res),
        "hits": sum(x["hits"] for x in res),
        "runs": len(runs),
        "items": max((r.get("items") or 0) for r in runs),
        "stats_delta": deltas,
    }


def report(rows: list[dict[str, Any]], args: argparse.Namespace, key_size: int,
           noisy_cores: float) -> list[dict[str, Any]]:
    """Print the comparison table; return one summary per scenario (with ratios)."""
    groups: dict[str, dict[str, list[dict[str, Any]]]] = {}
    fio = {r["scenario"]: r["iops"] for r in rows if r.get("fio")}
    for r in rows:
        if not r.get("fio"):
            groups.setdefault(r["scenario"], {}).setdefault(r["server"], []).append(r)
    print()
    print(f"SmartSwitch vs memcached: {args.get_ratio:.0%} get / {1 - args.get_ratio:.0%} set, "
          f"{key_size}-byte keys, {args.conns} connections, uniform keys; "
          f"median of {args.repeat} run(s) of {args.duration:g}s after {args.warmup:g}s warmup")
    gen = f"the load generator ({args.loadgen_threads} thread(s))"
    where = (f"{pinning.words(args, gen)}; {args.workers} worker threads" if pinning.pinned(args)
             else f"{os.cpu_count()} CPUs shared by {gen} and the server under test "
                  f"({args.workers} worker threads)")
    print(f"machine: {where}; hot tier {args.hot_tier_mib} MiB")
    hdr = (f"{'scenario':26s} {'server':11s} {'ops/s':>9s} {'spread':>6s} {'p50 us':>7s} "
           f"{'p99 us':>7s} {'errs':>5s} {'hit%':>5s} {'cpu/op':>6s} {'noise':>5s} "
           f"{'x tput':>6s} {'x p99':>6s}"
           f"  hits dram / device")
    print(hdr)
    print("-" * len(hdr))
    summaries = []
    for name, per in groups.items():
        agg = {srv: _aggregate(runs) for srv, runs in per.items()}
        mc, ss = agg.get("memcached"), agg.get("smartswitch")
        ratio_t = ratio_p = None
        if mc and ss and mc["ops_per_sec"] > 0 and mc["p99_us"] > 0:
            ratio_t = ss["ops_per_sec"] / mc["ops_per_sec"]
            ratio_p = ss["p99_us"] / mc["p99_us"]
        keys = per[next(iter(per))][0]["keys"]
        for srv in ("memcached", "smartswitch", "extstore"):
            a = agg.get(srv)
            if not a:
                continue
            tail = rt = rp = ""
            if srv == "extstore" and mc and mc["ops_per_sec"] > 0 and mc["p99_us"] > 0:
                rt = f"{a['ops_per_sec'] / mc['ops_per_sec']:.2f}"
                rp = f"{a['p99_us'] / mc['p99_us']:.2f}"
            if srv != "memcached" and name in fio:
                hits_s = a["hits"] / (a["runs"] * args.duration)
                tail = f"  {hits_s:,.0f} hits/s, kept {a['items'] or 0:,} of {keys:,} items"
            if srv == "smartswitch":
                d = a["stats_delta"]
                if d.get("hits_dram") is not None and d.get("hits_device") is not None:
                    both = d["hits_dram"] + d["hits_device"]
                    dev = 100.0 * d["hits_device"] / both if both else 0.0
                    tail += f"  {d['hits_dram']:,} / {d['hits_device']:,} ({dev:.0f}% device)"
                rt = f"{ratio_t:.2f}" if ratio_t is not None else "-"
                rp = f"{ratio_p:.2f}" if ratio_p is not None else "-"
            hit = 100.0 * a["hits"] / a["gets"] if a["gets"] else 0.0
            print(f"{name:26s} {srv:11s} {a['ops_per_sec']:>9,.0f} {a['spread']:>6.0%} "
                  f"{a['p50_us']:>7.0f} {a['p99_us']:>7.0f} {a['errors']:>5d} {hit:>5.1f} "
                  f"{a['server_us_per_op']:>6.1f} {a['others_cores']:>5.2f} "
                  f"{rt:>6s} {rp:>6s}{tail}")
        keyspace = per[next(iter(per))][0]["keyspace"]
        target = device_target = None
        if keyspace == "dram" and ratio_t is not None and ratio_p is not None:
            target = ratio_t >= 1.0 and ratio_p <= 1.1
        if keyspace == "device" and ratio_t is not None and mc["server_us_per_op"] > 0:
            cpu_ratio = ss["server_us_per_op"] / mc["server_us_per_op"]
            device_target = ratio_t >= 0.8 and cpu_ratio <= 1.5
            iops = fio.get(name)
            print(f"{'':26s} device: fio 4k QD16 {iops:,.0f} IOPS; smartswitch "
                  f"{ratio_t:.2f}x memcached's ops/s at {cpu_ratio:.2f}x its CPU/op"
                  if iops else f"{'':26s} device: no fio figure")
        summaries.append({"scenario": name, "aggregate": agg, "throughput_ratio": ratio_t,
                          "p99_ratio": ratio_p, "dram_target_met": target,
                          "device_target_met": device_target, "fio_iops": fio.get(name)})
    judged = [s for s in summaries if s["dram_target_met"] is not None]
    if judged:
        ok = sum(1 for s in judged if s["dram_target_met"])
        print(f"\nDRAM-tier target (>= 1.0x memcached's throughput, p99 <= 1.1x): "
              f"{ok}/{len(judged)} scenarios met")
    judged = [s for s in summaries if s["device_target_met"] is not None]
    if judged:
        ok = sum(1 for s in judged if s["device_target_met"])
        print(f"device key space target (>= 0.8x memcached's throughput, CPU/op <= 1.5x): "
              f"{ok}/{len(judged)} scenarios met")
    noisy = [s["scenario"] for s in summaries
             if max(a["others_cores"] for a in s["aggregate"].values()) > noisy_cores]
    if noisy:
        print(f"{len(noisy)}/{len(summaries)} scenarios ran while other jobs used more than "
              f"{noisy_cores} cores: differences within their spread are not results")
    return summaries
