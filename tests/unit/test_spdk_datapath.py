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


def test_embedded_spdk_refuses_an_incomplete_table_and_opens_nothing_before_start() -> None:
    # A fresh interpreter: embedded SPDK never started in it.
    code = ("from dataplane import fastpath\n"
            "ffi, lib = fastpath.load()\n"
            "err = ffi.new('char[]', 256)\n"
            "ep = ffi.new('struct ss_spdk_embedded_ep *')\n"
            "rc = lib.ss_spdk_embedded_start(ep, b'/tmp/x.sock', err, 256)\n"
            "print(rc, ffi.string(err).decode())\n"
            "dev = lib.ss_device_spdk_bdev_open(b'lvol0', err, 256)\n"
            "print(dev == ffi.NULL, ffi.string(err).decode())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO_ROOT, timeout=60, check=True).stdout.splitlines()
    assert out[0].startswith("-22 ") and "entry point #0" in out[0], out
    assert out[1].startswith("True ") and "SPDK is not running in this process" in out[1], out


def test_embedded_mode_without_spdk_says_what_to_install(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from appliance import StartError
    from appliance.config import load_config
    from appliance.storage import spdk as spdk_driver

    monkeypatch.delenv("SPDK_DIR", raising=False)
    (tmp_path / "nv0.img").write_bytes(b"")
    path = tmp_path / "s.yaml"
    path.write_text(
        "storage:\n"
        f"  dir: {tmp_path / 'var'}\n"
        "  spdk:\n"
        "    mode: embedded\n"
        f"    lib_dir: {tmp_path / 'no-spdk'}\n"
        "  devices:\n"
        "    - name: nv0\n"
        "      kind: spdk\n"
        "      transport: aio\n"
        f"      path: {tmp_path / 'nv0.img'}\n"
        "      block_size: 4096\n"
        "  pools:\n"
        "    - name: items\n"
        "      device: nv0\n"
        "      size: 100%\n")
    config = load_config(path)
    assert config.storage.spdk.mode == "embedded"
    with pytest.raises(StartError) as info:
        spdk_driver.DRIVER.check_can_serve(config)
    text = str(info.value)
    assert "SPDK cannot be loaded" in text and str(tmp_path / "no-spdk") in text
    assert "SPDK_DIR" in text and "--with-shared" in text


def test_two_dpdks_in_one_process_are_refused_before_spdk_attaches(tmp_path: Path) -> None:
    """Switch mode's EAL lives in the librte_eal the data plane links; an SPDK built on
    its own DPDK brings a second one, whose EAL nobody started."""
    from spdk_bindings.datapath import SpdkDataPathError, _check_one_dpdk

    def maps(*paths: str) -> str:
        f = tmp_path / "maps"
        f.write_text("".join(f"7f00-7f01 r-xp 00000000 08:01 1 {p}\n" for p in paths))
        return str(f)

    system = "/usr/lib/x86_64-linux-gnu/librte_eal.so.23.0"
    _check_one_dpdk(maps(system, system, "/usr/lib/libspdk_env_dpdk.so.17.0"))
    own = "/opt/spdk/dpdk/build/lib/librte_eal.so.24.1"
    with pytest.raises(SpdkDataPathError) as info:
        _check_one_dpdk(maps(system, own))
    assert own in str(info.value) and system in str(info.value)
    assert "--with-dpdk" in str(info.value)
