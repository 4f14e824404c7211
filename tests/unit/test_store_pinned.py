"""The store's pinned records (SS_WRITE_PINNED), through tests/store/pinned_test.c.

ss_store_write has no cffi surface and the object store that will pin its chunks does not
exist yet, so the scenarios are a C program built from the store's own sources, with the
include directories and libraries dataplane/_build.py gives the extension, under
AddressSanitizer and UndefinedBehaviorSanitizer. Each scenario runs in a fresh directory and
prints "ok <scenario> ..." when every check in it held.
"""

from __future__ import annotations

import errno
import importlib.util
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
TESTS_C = REPO / "tests" / "store"
SCENARIO_TIMEOUT_S = 300  # the program's own alarm fires first (pinned_test.c: main)

SCENARIOS = {
    "wraps": "pinned keys survive 20 turns of the ring; unpinned ones are evicted",
    "accounting": "overwrite, remove, forget, expiry, flush_all free pinned bytes",
    "enospc": "past the limit: -ENOSPC, old value kept; unpinned writes go on; deletes free",
    "reopen": "close and reopen keep every pinned key and the same figures",
    "crash": "kill -9 mid-stream keeps every acknowledged pinned write, nothing torn",
    "reader": "readers see every pinned key, whole, while copies forward run",
    "shrink": "a shrink that would evict pinned records is refused, with a reason",
    "grow": "growing keeps pinned records and raises the limit",
    # tests/store/dram_only.c: proxy mode's copies of values written through it
    "dram_only": "DRAM-only writes: no index entry, rewritten in place after a withdraw, "
                 "never an older device copy after eviction or a restart",
    # tests/store/fill_join.c: the objects plane's table of fetches in progress
    "fill_join": "concurrent misses join one fetch; a miss that looked before a fetch ended "
                 "looks again instead of fetching twice",
    # tests/store/lost_roll.c: a crash after a roll whose new generation was never persisted
    "lost_roll": "after a roll the log's state lost, the repair drops the entries of the "
                 "segment's older use that no reclaim walk could reach",
    # tests/store/overtaken_put.c: the ring turns while a write's entry waits to be committed
    "overtaken_put": "an entry committed after its segment was reused is dropped, "
                     "not left stale in the index",
    # tests/store/flush_snapshot.c: appends during the open segment's periodic flush
    "flush_snapshot": "a flush writes its last block as it was when it began, not bytes "
                      "appended while it writes",
}


def load_build() -> ModuleType:
    """dataplane/_build.py by path, as setuptools runs it: its include dirs and libraries."""
    spec = importlib.util.spec_from_file_location("_ss_build", REPO / "dataplane" / "_build.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sources(src: Path) -> list[Path]:
    """The store's files and what they call: the file device, hashes, buffers; and the
    objects plane's fill table, with the HTTP field parsers its freshness rules use."""
    return sorted([*(src / "store").glob("*.c"), src / "device" / "ss_device_file.c",
                   src / "obj" / "ss_obj_fill.c", *(src / "http").glob("*.c"),
                   src / "common" / "ss_buf.c", src / "common" / "ss_hash.c",
                   src / "common" / "ss_crc32c.c"])


@pytest.fixture(scope="module")
def pinned_test(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/store/*.c and the store's sources built into one program."""
    gcc = shutil.which("gcc")
    assert gcc, "gcc is needed to build tests/store/pinned_test.c (make deps installs it)"
    build = load_build()
    out = tmp_path_factory.mktemp("pinned") / "pinned_test"
    cmd = [gcc, "-std=gnu11", "-g", "-O1", "-fsanitize=address,undefined",
           "-fno-sanitize-recover=undefined", "-fno-omit-frame-pointer", "-Wall", "-Wextra",
           "-Wno-unused-parameter", "-Wno-missing-field-initializers", "-Werror",
           f"-I{build.INCLUDE}", f"-I{build.SRC}", f"-I{TESTS_C}",
           *map(str, sorted(TESTS_C.glob("*.c"))), *map(str, sources(Path(build.SRC))),
           *(f"-l{lib}" for lib in build.LIBRARIES), "-o", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    assert res.returncode == 0, f"building {out.name} failed:\n{res.stderr}"
    return out


def takes_o_direct(directory: Path) -> bool:
    """Whether a file there opens O_DIRECT (a tmpfs before Linux 6.6 says EINVAL)."""
    path = directory / "o_direct.probe"
    try:
        os.close(os.open(path, os.O_CREAT | os.O_RDWR | os.O_DIRECT, 0o600))
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
        return False
    path.unlink()
    return True


# Also with O_DIRECT, where the device takes whole aligned blocks only: the scenarios that
# reopen a head part-way (a restart, a crash) and write after its last record.
CASES = [(name, False) for name in sorted(SCENARIOS)] + [("crash", True), ("reopen", True),
                                                         ("lost_roll", True),
                                                         ("flush_snapshot", True)]


@pytest.fixture
def store_dir(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    """tmp_path, or for O_DIRECT a directory on a file system that takes it (/var/tmp)."""
    if not request.node.callspec.params["direct_io"] or takes_o_direct(tmp_path):
        yield tmp_path
        return
    other = Path(tempfile.mkdtemp(prefix="ss-pinned-", dir="/var/tmp"))
    try:
        if not takes_o_direct(other):
            pytest.skip("neither /tmp nor /var/tmp takes O_DIRECT on this machine")
        yield other
    finally:
        shutil.rmtree(other, ignore_errors=True)


@pytest.mark.parametrize(("scenario", "direct_io"), CASES,
                         ids=[f"{name}{'-direct' if direct else ''}" for name, direct in CASES])
def test_pinned_scenario(pinned_test: Path, store_dir: Path, scenario: str,
                         direct_io: bool) -> None:
    env = dict(os.environ, ASAN_OPTIONS="halt_on_error=1:detect_leaks=1",
               UBSAN_OPTIONS="print_stacktrace=1")
    if direct_io:
        env["PINNED_DIRECT_IO"] = "1"
    res = subprocess.run([str(pinned_test), scenario, str(store_dir)], capture_output=True,
                         text=True, timeout=SCENARIO_TIMEOUT_S, env=env, check=False)
    report = f"{scenario} ({SCENARIOS[scenario]}):\n{res.stdout}\n{res.stderr}"
    assert res.returncode == 0, report
    assert f"ok {scenario}" in res.stdout, report
    assert "runtime error" not in res.stderr, report  # UBSan
