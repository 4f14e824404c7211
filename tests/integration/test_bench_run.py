"""bench/run.py end to end, small: memcached and the appliance under both load generators
(bench/loadgen.c and Debian's memaslap) in one run, the rows of both in one table with
their ratios; and memaslap's latency histogram read as bench/memaslap.py reads it."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench" / "run.py"
sys.path.insert(0, str(REPO / "bench"))

import memaslap  # noqa: E402  (bench/memaslap.py)
import run  # noqa: E402  (bench/run.py)


def test_log2_histogram_percentiles() -> None:
    """Rows `B: c0 c1 c2 c3` count latencies in [2^(B-1), 2^B), ... us; a quantile is
    reported as the upper bound of its bucket."""
    block = ("Min: 26\n Log2 Dist:\n   4:   0  10  80  10\n   8:  900   0   0   0\n"
             "  12:   0 0 0 0\n")
    # 1000 events: 10 in [16, 32), 80 in [32, 64), 10 in [64, 128), 900 in [128, 256)
    assert memaslap.log2_percentiles(block, 0.05, 0.50, 0.99) == [64.0, 256.0, 256.0]
    assert memaslap.log2_percentiles(block, 0.01) == [32.0]


def test_quick_run_prints_both_generators(tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, str(BENCH), "--quick", "--keyspaces", "dram",
                          "--depths", "1", "--duration", "1", "--warmup", "0",
                          "--servers", "memcached", "smartswitch",
                          "--json", str(tmp_path / "run.json")],
                         capture_output=True, text=True, timeout=300, cwd=REPO, check=False)
    out = res.stdout
    assert res.returncode == 0, out + res.stderr[-3000:]
    for gen in ("", " memaslap"):
        for server in ("memcached", "smartswitch"):
            row = re.search(rf"^v100 dram\(\S+\) d1{gen} +{server} +([\d,]+) ", out, re.M)
            assert row, f"no{gen or ' loadgen'} row for {server}:\n{out}"
            assert int(row.group(1).replace(",", "")) > 0, out
        ratio = re.search(rf"^v100 dram\(\S+\) d1{gen} +smartswitch .*? (\d+\.\d\d) +(\d+\.\d\d)",
                          out, re.M)
        assert ratio, f"no ratios for{gen or ' loadgen'}:\n{out}"
    assert "DRAM-tier target" in out, out


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="--pin-loadgen needs 2 CPUs")
def test_pin_loadgen_runs_the_load_generator_apart(tmp_path: Path) -> None:
    """--pin-loadgen: the report says where each ran, the options are in --json, and the
    run passes the bench's own check that every server thread is on the servers' CPUs."""
    cpus = sorted(os.sched_getaffinity(0))
    out_json = tmp_path / "run.json"
    res = subprocess.run([sys.executable, str(BENCH), "--quick", "--keyspaces", "dram",
                          "--depths", "1", "--duration", "1", "--warmup", "0",
                          "--generators", "loadgen", "--servers", "memcached", "smartswitch",
                          "--pin-loadgen", "--json", str(out_json)],
                         capture_output=True, text=True, timeout=300, cwd=REPO, check=False)
    assert res.returncode == 0, res.stdout + res.stderr[-3000:]
    where = (f"machine: the load generator (1 thread(s)) pinned to CPU {cpus[-1]}, the servers "
             f"to CPU {','.join(str(c) for c in cpus[:-1])} (--pin-loadgen)")
    assert where in res.stdout, res.stdout
    opts = json.loads(out_json.read_text())["options"]
    assert opts["pin_loadgen"] is True
    assert opts["loadgen_cpus"] == cpus[-1:] and opts["server_cpus"] == cpus[:-1]


def test_a_prefill_the_server_keeps_refusing_is_tried_again_then_named(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """memcached -M with 2 MiB answers SERVER_ERROR once full instead of evicting:
    the prefill runs again (a refusal may pass), then fails naming the server,
    since far more than a handful of its sets were refused."""
    run.build_loadgen()
    srv = run.start_memcached(shutil.which("memcached") or "/usr/bin/memcached", 1, 2,
                              tmp_path, ["-M"])
    try:
        sc = run.Scenario(100, "dram", 50_000, 1)
        with pytest.raises(run.BenchError, match="memcached refused sets in all "
                                                 f"{run.PREFILL_ATTEMPTS} prefills"):
            run.prefill(srv, sc, run.parse_args(["--quick"]))
    finally:
        srv.stop()
    assert "memcached refused sets of the prefill" in capsys.readouterr().err


def test_a_handful_of_refused_prefill_sets_is_named_and_tolerated(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """memcached with extstore refuses a few hundred of 5M sets now and then,
    unpredictably, which no real server here does on demand; so the load generator's
    answer is stood in for. A handful of refused keys only miss: the bench goes on at
    once and says so (setting every key again would fill extstore further). One
    refusal over the tolerated share gets the prefill run again, then fails."""
    sc = run.Scenario(100, "dram", 1_000_000, 1)
    calls: list[int] = []

    def refusing(refused: int):
        def fake(port: int, scenario: run.Scenario, args, prefill: bool = False):
            calls.append(port)
            raise run.PrefillRefused(f"prefill incomplete: {refused} errors", refused)
        return fake

    class Srv:
        name, port, log = "extstore", 1, "memcached.log"

    tolerated = int(sc.keys * run.PREFILL_REFUSED_SHARE_TOLERATED)
    monkeypatch.setattr(run, "run_loadgen", refusing(tolerated))
    run.prefill(Srv(), sc, run.parse_args(["--quick"]))
    assert len(calls) == 1
    assert f"extstore refused {tolerated} of {sc.keys} sets of the prefill; going on" in \
        capsys.readouterr().err
    monkeypatch.setattr(run, "run_loadgen", refusing(tolerated + 1))
    with pytest.raises(run.BenchError, match="extstore refused sets in all"):
        run.prefill(Srv(), sc, run.parse_args(["--quick"]))
    assert len(calls) == 1 + run.PREFILL_ATTEMPTS
