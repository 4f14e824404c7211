"""bench/objects.py end to end, small: nginx origin, Varnish, nginx proxy_cache and the
appliance's local bucket under wrk at 1 KiB, 1 s runs; every row there, every hit row a
verified hit, every miss row a verified miss, and no server left running."""

from __future__ import annotations

import json
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


def test_quick_run_has_every_row_and_verified_hits(tmp_path: Path) -> None:
    out_json = tmp_path / "objects.json"
    res = subprocess.run([sys.executable, str(BENCH), "--quick", "--sizes", "1KiB",
                          "--duration", "1", "--objects", "8", "--json", str(out_json)],
                         capture_output=True, text=True, timeout=120, cwd=REPO, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout
    for server in ("nginx-origin", "varnish", "nginx-cache", "smartswitch"):
        assert re.search(rf"^hit  1KiB  {server} +[\d,]+ ", out, re.M), out
    for server in ("varnish", "nginx-cache"):
        assert re.search(rf"^miss 1KiB  {server} +[\d,]+ ", out, re.M), out
    assert re.search(r"^miss 1KiB  smartswitch +SmartSwitch: cached buckets not built yet$",
                     out, re.M), out
    assert "hit verification: passed (6/6 rows verified)" in out, out
    assert re.search(r"^  target hit  1KiB  req/s >= 1.5x Varnish's: [\d.]+x (met|NOT met)$",
                     out, re.M), out
    assert re.search(r"^  target hit  1KiB  p99   <= 1.0x Varnish's: [\d.]+x (met|NOT met)$",
                     out, re.M), out
    assert re.search(r"^Targets met: .*; not measured: miss 1KiB req/s >= 1.0x$", out, re.M), out

    data = json.loads(out_json.read_text())
    rows = {(r["kind"], r["server"]): r for r in data["rows"]}
    assert len(rows) == len(data["rows"]) == 6
    for (kind, server), r in rows.items():
        assert r["verified"] and r["errors"] == 0 and r["requests"] > 0, r
        if kind == "hit" and server != "nginx-origin":
            assert r["origin_requests"] == 0, r  # a hit never reached the origin
        if kind == "miss":
            assert r["origin_requests"] >= r["requests"], r  # every miss did
    vs = rows[("hit", "varnish")]["varnishstat_delta"]
    assert vs["cache_miss"] == 0 and vs["cache_hit"] >= rows[("hit", "varnish")]["requests"]
    assert rows[("hit", "nginx-cache")]["probe"]["X-Cache-Status"] == "HIT"
    assert len(rows[("hit", "varnish")]["probe"]["X-Varnish"].split()) == 2
    assert data["verified"] is True

    # every server was stopped (their pids are in the progress lines)
    pids = [int(p) for p in re.findall(r"^# \S+: .* \(pid (\d+)\)$", res.stderr, re.M)]
    assert len(pids) == 4, res.stderr
    assert not [p for p in pids if Path(f"/proc/{p}").exists()]
