"""The index committer runs at idle priority, and is raised when it falls behind.

The group commit's thread (named ss-committer) writes batches of index
entries while workers answer requests; at SCHED_IDLE it never takes a CPU a
worker wants. A machine busy with something else would then starve it, so
once too many index operations wait it must be raised to normal priority
(counted in `index_commit_boosts`), catch up, and every key must be found.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from .conftest import ApplianceFactory
from .helpers.mcproto import RawConn

MAX_KEYS = 200_000      # well past the 16,384 pending ops that raise the committer
HOG_SECONDS = 60        # each CPU hog exits by itself after this, whatever happens


def _committer_tids(pid: int) -> list[int]:
    tids = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                if f.read().strip() == "ss-committer":
                    tids.append(int(tid))
        except OSError:
            continue
    return tids


def _idle_is_reversible() -> bool:
    """Whether a process of ours may leave SCHED_IDLE again (root or CAP_SYS_NICE,
    or RLIMIT_NICE): only then does the appliance put its committer there."""
    probe = ("import os; p = os.sched_param(0); os.sched_setscheduler(0, os.SCHED_IDLE, p); "
             "os.sched_setscheduler(0, os.SCHED_OTHER, p)")
    return subprocess.run([sys.executable, "-c", probe], capture_output=True).returncode == 0


IDLE_IS_REVERSIBLE = _idle_is_reversible()


@contextmanager
def _cpu_hogs() -> Iterator[None]:
    """One busy process per CPU at normal priority, stopped on the way out."""
    spin = f"import time\nend = time.monotonic() + {HOG_SECONDS}\n" \
           "while time.monotonic() < end:\n    pass\n"
    hogs = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(os.cpu_count() or 1)]
    try:
        yield
    finally:
        for h in hogs:
            h.kill()
        for h in hogs:
            h.wait()


def test_the_committer_runs_at_idle_priority(tmp_path: Path,
                                              appliance_factory: ApplianceFactory) -> None:
    srv = appliance_factory()
    tids = _committer_tids(srv.pid)
    assert tids, "no thread named ss-committer"
    expected = os.SCHED_IDLE if IDLE_IS_REVERSIBLE else os.SCHED_OTHER
    for tid in tids:
        assert os.sched_getscheduler(tid) == expected, \
            f"committer thread {tid} runs under policy {os.sched_getscheduler(tid)}"


@pytest.mark.skipif(not IDLE_IS_REVERSIBLE, reason="needs root or CAP_SYS_NICE (CI has "
                    "it): without, the committer stays at normal priority")
def test_a_starved_committer_is_raised_and_catches_up(tmp_path: Path,
                                                      appliance_factory: ApplianceFactory) -> None:
    srv = appliance_factory()
    with RawConn(srv.addr, timeout=60) as c:
        before = c.counters()
        with _cpu_hogs():
            time.sleep(1.0)  # the hogs' interpreters start and spin
            sent, raised = 0, 0
            deadline = time.monotonic() + 20
            while sent < MAX_KEYS and not raised and time.monotonic() < deadline:
                c.send(b"".join(b"set starve%d 0 0 4 noreply\r\nv%03d\r\n" % (i, i % 1000)
                                for i in range(sent, sent + 1000)))
                sent += 1000
                if sent % 10_000 == 0:
                    raised = c.counters()["index_commit_boosts"] - before["index_commit_boosts"]
            assert c.cmd(b"version").startswith(b"VERSION ")
            raised = c.counters()["index_commit_boosts"] - before["index_commit_boosts"]
        assert raised >= 1, f"the committer fell behind {sent} sets and was never raised"
        deadline = time.monotonic() + 30
        while c.counters()["index_committed_ops"] - before["index_committed_ops"] < sent:
            assert time.monotonic() < deadline, "the index never caught up with the sets"
            time.sleep(0.1)
        for i in range(0, sent, 97):
            assert c.get(b"starve%d" % i) == b"v%03d" % (i % 1000), f"starve{i} lost"
    # Idle again once it caught up.
    deadline = time.monotonic() + 10
    while any(os.sched_getscheduler(t) != os.SCHED_IDLE for t in _committer_tids(srv.pid)):
        assert time.monotonic() < deadline, "the committer stayed raised after catching up"
        time.sleep(0.1)
