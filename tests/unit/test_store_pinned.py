"""The store's pinned records (SS_WRITE_PINNED), through tests/store/pinned_test.c.

ss_store_write has no cffi surface and the object store that will pin its chunks does not
exist yet, so the scenarios are a C program built from the store's own sources, with the
include directories and libraries dataplane/_build.py gives the extension, under
AddressSanitizer and UndefinedBehaviorSanitizer. Each scenario runs in a fresh directory and
prints "ok <scenario> ..." when every check in it held.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
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
}


def load_build() -> ModuleType:
    """dataplane/_build.py by path, as setuptools runs it: its include dirs and libraries."""
    spec = importlib.util.spec_from_file_location("_ss_build", REPO / "dataplane" / "_build.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sources(src: Path) -> list[Path]:
    """The store's files and what they call: the file device, hashes, buffers."""
    return sorted([*(src / "store").glob("*.c"), src / "device" / "ss_device_file.c",
                   src / "common" / "ss_buf.c", src / "common" / "ss_hash.c"])


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


@pytest.mark.parametrize("scenario", sorted(SCENARIOS), ids=sorted(SCENARIOS))
def test_pinned_scenario(pinned_test: Path, tmp_path: Path, scenario: str) -> None:
    env = dict(os.environ, ASAN_OPTIONS="halt_on_error=1:detect_leaks=1",
               UBSAN_OPTIONS="print_stacktrace=1")
    res = subprocess.run([str(pinned_test), scenario, str(tmp_path)], capture_output=True,
                         text=True, timeout=SCENARIO_TIMEOUT_S, env=env, check=False)
    report = f"{scenario} ({SCENARIOS[scenario]}):\n{res.stdout}\n{res.stderr}"
    assert res.returncode == 0, report
    assert f"ok {scenario}" in res.stdout, report
    assert "runtime error" not in res.stderr, report  # UBSan
