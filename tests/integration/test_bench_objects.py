"""bench/objects.py end to end, small: nginx origin, Varnish, nginx proxy_cache, the
appliance's cached bucket (kind: http, in front of the same origin) and its local bucket
under wrk at 1 KiB, 1 s runs; every row there, every hit row a verified hit, every miss
row a verified miss, and no server left running."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench" / "objects.py"
TOOLS = ("/usr/sbin/nginx", "/usr/sbin/varnishd", "/usr/bin/varnishstat", "/usr/bin/wrk")

pytestmark = pytest.mark.skipif(
    not all(Path(t).exists() for t in TOOLS),
    reason="needs Debian's nginx-light, varnish and wrk (make system-deps installs them)")


def test_quick_run_has_every_row_verified(tmp_path: Path) -> None:
    out_json = tmp_path / "objects.json"
    res = subprocess.run([sys.executable, str(BENCH), "--quick", "--sizes", "1KiB",
                          "--duration", "1", "--objects", "8", "--json", str(out_json)],
                         capture_output=True, text=True, timeout=120, cwd=REPO, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout
    hits = ("nginx-origin", "varnish", "nginx-cache", "smartswitch-cache", "smartswitch-local")
    misses = ("varnish", "nginx-cache", "smartswitch-cache")
    for kind, servers in (("hit ", hits), ("miss", misses)):
        for server in servers:
            assert re.search(rf"^{kind} 1KiB  {server} +[\d,]+ .* yes$", out, re.M), out
    assert not re.search(r"^miss 1KiB  smartswitch-local ", out, re.M), out
    assert "not built yet" not in out, out
    assert "verification: passed (8/8 rows verified)" in out, out
    for kind, metric, op, bound in (("hit ", "req/s", ">=", "1.5"), ("hit ", "p99  ", "<=", "1.0"),
                                    ("miss", "req/s", ">=", "1.0")):
        assert re.search(rf"^  target {kind} 1KiB  {re.escape(metric)} {op} {bound}x Varnish's "
                         rf"\(smartswitch-cache\): [\d.]+x (met|NOT met)$", out, re.M), out
    assert re.search(r"^Targets met: .*; not measured: none$", out, re.M), out

    data = json.loads(out_json.read_text())
    rows = {(r["kind"], r["server"]): r for r in data["rows"]}
    assert len(rows) == len(data["rows"]) == 8
    for (kind, server), r in rows.items():
        assert r["verified"] and r["errors"] == 0 and r["requests"] > 0, r
        assert r["probe"]["body"] == "same", r  # the probe got the origin's bytes
        if kind == "hit" and server != "nginx-origin":
            assert r["origin_requests"] == 0, r  # a hit never reached the origin
        if kind == "miss":
            assert r["origin_requests"] >= r["requests"], r  # every miss did
    # the appliance's own figures agree: the cached bucket's hits fetched nothing, each of
    # its misses fetched once (unique URLs: nothing to collapse into)
    hit, miss = rows[("hit", "smartswitch-cache")], rows[("miss", "smartswitch-cache")]
    assert hit["bucket_stats_delta"]["origin_fetches"] == 0, hit
    assert hit["bucket_stats_delta"]["hits"] >= hit["requests"], hit
    assert miss["bucket_stats_delta"]["origin_fetches"] >= miss["requests"], miss
    assert miss["bucket_stats_delta"]["hits"] == 0, miss
    assert rows[("hit", "smartswitch-local")]["bucket_stats_delta"]["misses"] == 0
    vs = rows[("hit", "varnish")]["varnishstat_delta"]
    assert vs["cache_miss"] == 0 and vs["cache_hit"] >= rows[("hit", "varnish")]["requests"]
    assert rows[("hit", "nginx-cache")]["probe"]["X-Cache-Status"] == "HIT"
    assert len(rows[("hit", "varnish")]["probe"]["X-Varnish"].split()) == 2
    assert data["verified"] is True

    # every server was stopped (their pids are in the progress lines)
    pids = [int(p) for p in re.findall(r"^# \S+: .* \(pid (\d+)\)$", res.stderr, re.M)]
    assert len(pids) == 4, res.stderr
    assert not [p for p in pids if Path(f"/proc/{p}").exists()]


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="--pin-loadgen needs 2 CPUs")
def test_pin_loadgen_keeps_wrk_and_the_servers_on_separate_cpus(tmp_path: Path) -> None:
    out_json = tmp_path / "pinned.json"
    res = subprocess.run([sys.executable, str(BENCH), "--quick", "--sizes", "1KiB", "--kinds",
                          "hit", "--duration", "1", "--objects", "8", "--pin-loadgen",
                          "--json", str(out_json)],
                         capture_output=True, text=True, timeout=120, cwd=REPO, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    cpus = sorted(os.sched_getaffinity(0))
    wrk_cpu, server_cpus = str(cpus[-1]), ",".join(str(c) for c in cpus[:-1])
    assert (f"wrk pinned to CPU {wrk_cpu}, the servers to CPU {server_cpus} (--pin-loadgen); "
            f"the origin with the servers") in res.stdout, res.stdout
    assert "verification: passed (5/5 rows verified)" in res.stdout, res.stdout
    data = json.loads(out_json.read_text())
    assert data["options"]["pin_loadgen"] is True
    opts = data["options"]
    assert opts["loadgen_cpus"] == cpus[-1:] and opts["server_cpus"] == cpus[:-1]
    # wrk ran under taskset; the bench itself checked every server thread's affinity
    # after the start (it exits 1 on a thread elsewhere)
    for r in data["rows"]:
        assert r["wrk"]["cmd"][:3] == ["taskset", "-c", wrk_cpu], r
