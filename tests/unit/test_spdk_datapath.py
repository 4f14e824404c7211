"""Without SPDK, loading the SPDK data path fails with a message that says what to do."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from spdk_bindings.datapath import SpdkUnavailable, SpdkDataPath, transport_id

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_load_from_a_directory_without_spdk_names_it(tmp_path: Path) -> None:
    with pytest.raises(SpdkUnavailable) as info:
        SpdkDataPath.load(tmp_path)
    text = str(info.value)
    assert str(tmp_path) in text and "libspdk_env_dpdk.so" in text
    assert "SPDK_DIR" in text and "--with-shared" in text


def test_load_from_an_spdk_dir_without_a_build_names_it(tmp_path: Path) -> None:
    # A fresh interpreter: nothing loaded before, SPDK_DIR the only hint.
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    env["SPDK_DIR"] = str(tmp_path)
    code = ("from spdk_bindings.datapath import SpdkDataPath, SpdkUnavailable\n"
            "try:\n    SpdkDataPath.load()\nexcept SpdkUnavailable as e:\n    print(e)\n"
            "else:\n    print('LOADED')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, cwd=REPO_ROOT, timeout=60, check=True).stdout
    assert "LOADED" not in out
    assert f"SPDK_DIR={tmp_path}" in out and str(tmp_path / "build" / "lib") in out


def test_transport_id_string() -> None:
    assert transport_id("127.0.0.1", 4420, "nqn.x:y") == (
        "trtype:TCP adrfam:IPv4 traddr:127.0.0.1 trsvcid:4420 subnqn:nqn.x:y")


def test_open_before_the_environment_is_started_is_refused() -> None:
    # A fresh interpreter, so SPDK's environment was never started in it.
    code = ("from dataplane import fastpath\n"
            "ffi, lib = fastpath.load()\n"
            "err = ffi.new('char[]', 256)\n"
            "dev = lib.ss_device_spdk_open(b'trtype:TCP traddr:127.0.0.1', 1, err, 256)\n"
            "print(dev == ffi.NULL, ffi.string(err).decode())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO_ROOT, timeout=60, check=True).stdout
    assert out.startswith("True ") and "SPDK environment is not started" in out
