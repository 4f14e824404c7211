"""memaslap as bench/run.py's second load generator: one we did not write.

Debian's libmemcached-tools ships memaslap as `memcaslap` (libmemcached's
load generator, libevent-based, like memcached itself). bench/run.py drives
every server with it as well as with bench/loadgen.c, in the same run, so the
figures do not rest on our own tool's habits alone. What differs from
loadgen.c, and how the table's rows are to be read:

- Keys are memaslap's own: 32-byte keys (a prefix that names the object and
  a random suffix), `--win_size` objects per connection so that the key space
  is the scenario's. Its smallest window is 1k objects, so a key space under
  50k keys (4 KiB values in a 64 MiB tier) runs on one connection per 1k keys
  instead of 50. memaslap sets a window's objects as it goes, so early gets
  miss; `hit%` says how many hit.
- It cannot pipeline. Depth 16 is run as multi-gets of 16 keys (`-d 16`):
  the same 16 lookups per round trip, in one command instead of 16.
- Latencies come from its log2 histogram (its only percentiles), so p50 and
  p99 are the upper bounds of power-of-two buckets: a ratio of 1.0 or 2.0
  between servers is as fine as it resolves.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pinning

MEMASLAP = shutil.which("memcaslap") or "/usr/bin/memcaslap"
KEY_SIZE = 32


def _config(path: Path, value_size: int, get_ratio: float) -> Path:
    """memaslap's -F file: fixed key and value lengths, the get/set mix."""
    path.write_text(f"key\n{KEY_SIZE} {KEY_SIZE} 1\n"
                    f"value\n{value_size} {value_size} 1\n"
                    f"cmd\n0 {1 - get_ratio:.3f}\n1 {get_ratio:.3f}\n")
    return path


def _total_block(out: str) -> str:
    """The end-of-run `Total Statistics (N events)` block of memaslap's output."""
    m = re.search(r"Total Statistics \(\d+ events\)(.*?)(?:\n\s*cmd_get:|\Z)", out, re.S)
    if not m:
        raise ValueError("no 'Total Statistics (N events)' block in memaslap's output")
    return m.group(1)


def log2_percentiles(block: str, *quantiles: float) -> list[float]:
    """Upper bounds (us) of the log2 buckets holding these quantiles.

    Rows of `Log2 Dist:` read `B: c0 c1 c2 c3`: counts of latencies in
    [2^(B-1), 2^B), [2^B, 2^(B+1)), ... microseconds (a run whose Avg is 343 us
    has most of its events in column 1 of row 8: [256, 512)).
    """
    dist = block.split("Log2 Dist:", 1)
    if len(dist) != 2:
        raise ValueError("no 'Log2 Dist:' histogram in memaslap's output")
    counts: dict[int, int] = {}
    for line in dist[1].splitlines():
        m = re.match(r"\s*(\d+):\s+([\d\s]+)$", line)
        if not m:
            continue
        base = int(m.group(1))
        for i, c in enumerate(m.group(2).split()):
            counts[base + i] = int(c)
    total = sum(counts.values())
    if not total:
        raise ValueError("memaslap's latency histogram is empty")
    out = []
    for q in quantiles:
        seen = 0
        for b in sorted(counts):
            seen += counts[b]
            if seen >= q * total:
                out.append(float(2 ** b))
                break
    return out


def parse(out: str, seconds: float) -> dict[str, Any]:
    """memaslap's output as bench/run.py's loadgen result (the fields it reads)."""
    block = _total_block(out)
    events = int(re.search(r"Total Statistics \((\d+) events\)", out).group(1))  # type: ignore[union-attr]
    p50, p99 = log2_percentiles(block, 0.50, 0.99)

    def counter(name: str) -> int:
        m = re.search(rf"^\s*{name}:\s*(\d+)", out, re.M)
        return int(m.group(1)) if m else 0

    gets = counter("cmd_get")
    misses = counter("get_misses")
    tps = re.search(r"TPS:\s*([\d.]+)", out)
    return {
        "ops": events,
        "seconds": seconds,
        "ops_per_sec": float(tps.group(1)) if tps else events / seconds,
        "p50_us": p50,
        "p99_us": p99,
        "errors": counter("verify_failed"),
        "gets": gets,
        "hits": max(0, gets - misses),
        "conn_errors": 0,
    }


def connections(keys: int, conns: int) -> int:
    """The connections memaslap runs with: conns, or fewer for a small key space."""
    return max(1, min(conns, keys // 1000))


def run(port: int, value_size: int, keys: int, depth: int, args: argparse.Namespace,
        tmp: Path) -> dict[str, Any]:
    """One memaslap run against 127.0.0.1:port for args.duration seconds."""
    cfg = _config(tmp / f"memaslap-{value_size}.cnf", value_size, args.get_ratio)
    seconds = max(1, int(round(args.duration + args.warmup)))
    conns = connections(keys, args.conns)
    cmd = [*pinning.prefix(args), MEMASLAP, "-s", f"127.0.0.1:{port}",
           "-T", str(args.loadgen_threads), "-c", str(conns), "-t", f"{seconds}s", "-F", str(cfg),
           "-w", f"{max(1, keys // conns // 1000)}k", "-S", f"{seconds}s"]
    if depth > 1:
        cmd += ["-d", str(depth)]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    except subprocess.TimeoutExpired as e:
        raise RuntimeError(f"memaslap overran its {seconds + 60}s bound") from e
    if res.returncode != 0:
        raise RuntimeError(f"memaslap failed ({res.returncode}): {res.stderr.strip()[-500:]}")
    return parse(res.stdout, float(seconds))
