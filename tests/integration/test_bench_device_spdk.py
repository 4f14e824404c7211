"""bench/device.py --spdk end to end: a real spdk_tgt, the appliance on an lvol of it, and
spdk_nvme_perf on the same namespace, with small figures so it runs in seconds.

The SPDK runs need SPDK_DIR (an SPDK build tree); the refusal without it runs everywhere.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench" / "device.py"
SPDK_DIR = os.environ.get("SPDK_DIR")
needs_spdk = pytest.mark.skipif(not SPDK_DIR, reason="SPDK_DIR is not set (an SPDK build "
                                "tree with build/bin/spdk_tgt and build/bin/spdk_nvme_perf)")
SMALL = ["--keys", "3000", "--duration", "1", "--warmup", "0", "--qd", "1,4",
         "--prefill-timeout", "60"]


def _bench(tmp: Path, *args: str, spdk_dir: str | None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("SPDK_DIR", None)
    env.pop("LD_LIBRARY_PATH", None)  # the bench sets it for the SPDK processes itself
    if spdk_dir is not None:
        env["SPDK_DIR"] = spdk_dir
    return subprocess.run([sys.executable, str(BENCH), "--spdk", "--dir", str(tmp), *args],
                          capture_output=True, text=True, timeout=300, env=env, cwd=REPO,
                          check=False)


def _target_pid(out: str) -> int:
    m = re.search(r"# spdk_tgt pid (\d+)", out)
    assert m, out
    return int(m.group(1))


def test_spdk_without_spdk_dir_says_what_to_set(tmp_path: Path) -> None:
    res = _bench(tmp_path, "--quick", spdk_dir=None)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "SPDK_DIR" in res.stderr and "spdk_nvme_perf" in res.stderr, res.stderr
    res = _bench(tmp_path, "--quick", spdk_dir=str(tmp_path / "nowhere"))
    assert res.returncode == 2 and "has no build/bin/spdk_tgt" in res.stderr, res.stderr


@pytest.mark.spdk
@needs_spdk
def test_store_and_perf_figures_from_one_target(tmp_path: Path) -> None:
    out_json = tmp_path / "rows.json"
    res = _bench(tmp_path, *SMALL, "--spdk-mode", "external", "--json", str(out_json),
                 spdk_dir=SPDK_DIR)
    assert res.returncode == 0, res.stdout + res.stderr
    rows = json.loads(out_json.read_text())
    store = [r for r in rows if r["side"] == "store"]
    perf = [r for r in rows if r["side"].startswith("perf ")]
    assert [r["qd"] for r in store] == [1, 4]
    assert sorted((r["side"], r["qd"]) for r in perf) == [
        ("perf 4k", 1), ("perf 4k", 4), ("perf 8k", 1), ("perf 8k", 4)]
    for r in store:  # a 1 MiB hot tier: the gets were served from the lvol
        assert r["errors"] == 0 and r["misses"] == 0, r
        assert r["hits_device"] > 0.9 * (r["hits_dram"] + r["hits_device"]), r
        # hits in the open segment come from its buffer (no device read); with 3000
        # keys in 4 MiB segments that is at most a third of them
        assert r["device_reads"] > 0.5 * r["hits_device"], r
    for r in perf:  # spdk_nvme_perf -L gave percentiles, on the exported namespace
        assert r["iops"] > 0 and 0 < r["p50_us"] <= r["p99_us"], r
        assert "subnqn:nqn.2016-06.io.smartswitch:bench ns:1" in r["cmd"], r
    assert "QD  4 store / perf 8k: IOPS x" in res.stdout, res.stdout
    assert not Path(f"/proc/{_target_pid(res.stdout)}").exists()  # spdk_tgt stopped


@pytest.mark.spdk
@needs_spdk
def test_spdk_tgt_is_stopped_when_perf_fails(tmp_path: Path) -> None:
    # 1000-byte reads are not whole 4 KiB blocks: spdk_nvme_perf skips the namespace.
    res = _bench(tmp_path, *SMALL, "--spdk-mode", "external", "--qd", "1", "--perf-io", "1000",
                 spdk_dir=SPDK_DIR)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "spdk_nvme_perf printed no 'Total' line" in res.stderr, res.stderr
    assert not Path(f"/proc/{_target_pid(res.stdout)}").exists()


@pytest.mark.spdk
@needs_spdk
def test_embedded_store_and_bdevperf_on_the_same_lvol(tmp_path: Path) -> None:
    out_json = tmp_path / "rows.json"
    res = _bench(tmp_path, *SMALL, "--spdk-mode", "embedded", "--perf-io", "4096", "--json",
                 str(out_json), spdk_dir=SPDK_DIR)
    assert res.returncode == 0, res.stdout + res.stderr
    rows = json.loads(out_json.read_text())
    store = [r for r in rows if r["side"] == "store-emb"]
    assert [r["qd"] for r in store] == [1, 4]
    for r in store:  # read from the lvol through the workers' own SPDK channels
        assert r["errors"] == 0 and r["misses"] == 0, r
        assert r["device_reads_async"] > 0.5 * r["hits_device"] > 0, r
    raw = [r for r in rows if r["side"] == "bdevperf 4k"]
    if raw:  # bdevperf is built with SPDK's examples; the bench says when it is not
        assert [r["qd"] for r in raw] == [1, 4] and all(r["iops"] > 0 for r in raw), raw
        assert "-T ss_nvme0/items" in raw[0]["cmd"], raw[0]
        assert "QD  4 store-emb / bdevperf 4k: IOPS x" in res.stdout, res.stdout
    else:
        assert "bdevperf is not built" in res.stdout, res.stdout
