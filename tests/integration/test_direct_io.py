"""The appliance on a file device opened O_DIRECT (storage.devices[].direct_io).

Under direct I/O every device read and write must be block aligned: segment
flushes are rounded out to whole blocks and a record read fetches the aligned
span around it. These tests put values of many sizes across block boundaries,
make them device hits (no DRAM tier, the open segment rolled past), restart,
evict, and check the index against the device. A page-cached device
(direct_io: false) writes its segments the same way, around the page cache,
and reads through it.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import ApplianceFactory
from .helpers.mcproto import RawConn
from .helpers.procs import REPO_ROOT, Server, appliance_config, verify_index

MIB = 1024 * 1024
# 1 byte .. 900 KiB: small ones share a 4 KiB block, the rest start and end
# at every kind of place relative to block boundaries.
SIZES = [1, 2, 7, 100, 1000, 4000, 4055, 4095, 4096, 4097, 5000, 8191, 8192, 8193,
         12288, 65535, 65536, 100_000, 262_145, 500_000, 900 * 1024]
TIME_LIMIT_S = 120.0


def _direct_ok(directory: Path) -> bool:
    """Whether files in directory can be opened O_DIRECT (tmpfs refuses)."""
    probe = directory / ".odirect-probe"
    try:
        fd = os.open(probe, os.O_CREAT | os.O_RDWR | os.O_DIRECT, 0o600)
    except OSError as exc:
        if exc.errno == errno.EINVAL:
            return False
        raise
    os.close(fd)
    probe.unlink()
    return True


@pytest.fixture
def device_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory whose file system takes O_DIRECT.

    tmp_path is used when it can; when /tmp is a tmpfs (which refuses
    O_DIRECT at open before Linux 6.6) the device goes in a fresh directory
    under /var/tmp,
    which is on the root file system, and is removed afterwards.
    """
    if _direct_ok(tmp_path):
        yield tmp_path
        return
    other = Path(tempfile.mkdtemp(prefix="ss-direct-", dir="/var/tmp"))
    try:
        if not _direct_ok(other):
            pytest.skip("neither /tmp nor /var/tmp supports O_DIRECT here")
        yield other
    finally:
        shutil.rmtree(other, ignore_errors=True)


def _config(tmp_path: Path, device: Path, direct_io: bool = True, **overrides: Any) -> Path:
    """The test config with its device at `device`, direct_io on unless told."""
    size = overrides.pop("device_size", "64MiB")
    extra = {"direct_writes": overrides.pop("direct_writes")} if "direct_writes" in overrides \
        else {}
    cfg = appliance_config(tmp_path, **overrides)
    cfg["storage"]["devices"] = [{"name": "local", "kind": "file", "path": str(device),
                                  "size": size, "direct_io": direct_io, **extra}]
    path = tmp_path / "appliance.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def _value(key: int, size: int) -> bytes:
    head = b"<%d:%d>" % (key, size)
    return (head * (size // len(head) + 1))[:size]


def _stats(c: RawConn) -> dict[bytes, bytes]:
    c.send(b"stats\r\n")
    out: dict[bytes, bytes] = {}
    while True:
        line = c.read_line()
        if line == b"END\r\n":
            return out
        parts = line.split()
        out[parts[1]] = parts[2]


def _all_open_flags(pid: int, path: Path) -> list[int]:
    """The open flags of each of pid's descriptors for path (/proc/PID/fdinfo)."""
    found = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") != str(path):
                continue
            with open(f"/proc/{pid}/fdinfo/{fd}") as info:
                found += [int(line.split()[1], 8) for line in info if line.startswith("flags:")]
        except OSError:
            continue
    assert found, f"pid {pid} has no descriptor for {path}"
    return found


def _open_flags(pid: int, path: Path) -> int:
    """The open flags of pid's one descriptor for path."""
    flags = _all_open_flags(pid, path)
    assert len(flags) == 1, f"pid {pid} has {len(flags)} descriptors for {path}"
    return flags[0]


def _resident_bytes(path: Path) -> int:
    """How much of path the page cache holds (mincore on a mapping of it)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
    page = os.sysconf("SC_PAGE_SIZE")
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY) as m:
        pages = (len(m) + page - 1) // page
        vec = ctypes.create_string_buffer(pages)
        addr = ctypes.addressof(ctypes.c_char.from_buffer(m))
        assert libc.mincore(addr, len(m), vec) == 0, os.strerror(ctypes.get_errno())
        return sum(b & 1 for b in vec.raw) * page


def _paged_in_bytes() -> int:
    """Bytes the kernel has read from block devices since boot (pgpgin, KiB)."""
    for line in Path("/proc/vmstat").read_text().splitlines():
        name, value = line.split()
        if name == "pgpgin":
            return int(value) * 1024
    raise AssertionError("/proc/vmstat has no pgpgin")


def _set(c: RawConn, key: bytes, value: bytes, flags: int = 0) -> None:
    c.send(b"set %s %d 0 %d\r\n%s\r\n" % (key, flags, len(value), value))
    line = c.read_line()
    assert line == b"STORED\r\n", f"set {key!r} ({len(value)} bytes) answered {line!r}"


def _check_all(c: RawConn, what: str) -> None:
    wrong = [size for i, size in enumerate(SIZES) if c.get(b"d%d" % i) != _value(i, size)]
    assert not wrong, f"{what}: values of sizes {wrong} came back missing or different"


def _verify_and_restart(srv: Server, config: Path, appliance_factory: ApplianceFactory) -> Server:
    """Stop srv, check its index against the device, start it again and read
    every SIZES value back; returns the restarted appliance."""
    assert srv.terminate() == 0, srv.log()
    res = verify_index(config)
    assert res.returncode == 0, f"verify-index exited {res.returncode}:\n{res.stdout}{res.stderr}"
    again = appliance_factory(config)
    with RawConn(again.addr, timeout=30) as c:
        _check_all(c, "after a restart")
    return again


def test_round_trip_restart_and_verify(tmp_path: Path, device_dir: Path,
                                       appliance_factory: ApplianceFactory) -> None:
    """Every size round-trips as a device hit, survives a restart, verifies."""
    config = _config(tmp_path, device_dir / "direct.dat", hot_tier="0")
    srv = appliance_factory(config)
    with RawConn(srv.addr, timeout=30) as c:
        for i, size in enumerate(SIZES):
            _set(c, b"d%d" % i, _value(i, size), flags=i)
        _check_all(c, "from the open segment")
        # Roll the open segment past them (4 MiB segments), so gets read the device.
        filler = b"f" * (256 * 1024)
        for j in range(20):
            _set(c, b"filler%d" % j, filler)
        time.sleep(0.5)  # > flush_interval: the new head is on the device too
        before = _stats(c)
        _check_all(c, "from the device")
        after = _stats(c)
        hits = int(after[b"hits_device"]) - int(before[b"hits_device"])
        assert hits >= len(SIZES) - 1, f"only {hits} device hits for {len(SIZES)} gets"
        read = int(after[b"device_read_bytes"]) - int(before[b"device_read_bytes"])
        assert read % 4096 == 0, f"{read} bytes read: not whole 4 KiB blocks"
        assert _open_flags(srv.pid, device_dir / "direct.dat") & os.O_DIRECT, "not O_DIRECT"
        assert after[b"errors_device"] == b"0", after
        assert after[b"errors_checksum"] == b"0", after
    srv2 = _verify_and_restart(srv, config, appliance_factory)
    with RawConn(srv2.addr, timeout=30) as c:
        assert all(c.get(b"filler%d" % j) == filler for j in range(20)), "a filler was lost"
        # flags came back too
        c.send(b"gets d3\r\n")
        header = c.read_line()
        assert header.split()[2] == b"3", header
        c.read_line()
        assert c.read_line() == b"END\r\n"


def test_eviction_under_direct_io(tmp_path: Path, device_dir: Path,
                                  appliance_factory: ApplianceFactory) -> None:
    """Writing 3x the capacity evicts (whole-segment reclaim reads) and keeps the newest."""
    config = _config(tmp_path, device_dir / "evict.dat", device_size="32MiB",
                     segment_size="2MiB", hot_tier="1MiB")
    srv = appliance_factory(config)
    size = 8 * 1024 + 5  # records straddle block boundaries
    n = 3 * 32 * MIB // size
    start = time.monotonic()
    with RawConn(srv.addr, timeout=30) as c:
        for lo in range(0, n, 32):
            assert time.monotonic() - start < TIME_LIMIT_S, f"only {lo} sets in time"
            ids = range(lo, min(lo + 32, n))
            c.send(b"".join(b"set e%d 0 0 %d\r\n%s\r\n" % (i, size, _value(i, size))
                            for i in ids))
            for i in ids:
                line = c.read_line()
                assert line == b"STORED\r\n", f"set #{i} answered {line!r}"
        missing = [i for i in range(n - 256, n) if c.get(b"e%d" % i) != _value(i, size)]
        assert not missing, f"{len(missing)} of the newest 256 items missing: {missing[:10]}"
        stats = _stats(c)
    assert int(stats[b"evictions"]) > 0, stats
    assert int(stats[b"segments_reclaimed"]) > 0, stats
    assert stats[b"errors_device"] == b"0" and stats[b"errors_checksum"] == b"0", stats
    assert srv.terminate() == 0, srv.log()
    res = verify_index(config)
    assert res.returncode == 0, f"verify-index exited {res.returncode}:\n{res.stdout}{res.stderr}"


# Stands in for a file system that refuses O_DIRECT at open (tmpfs before
# Linux 6.6; this test cannot count on having one): open() of a path ending
# in "refused.dat" with O_DIRECT fails with EINVAL, everything else passes.
_REFUSE_SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <string.h>
static int refused(const char *p, int flags)
{
    size_t n = strlen(p);
    return (flags & O_DIRECT) && n >= 11 && !strcmp(p + n - 11, "refused.dat");
}
#define SHIM(name)                                                            \
    int name(const char *p, int flags, ...)                                   \
    {                                                                         \
        va_list ap;                                                           \
        va_start(ap, flags);                                                  \
        int mode = va_arg(ap, int);                                           \
        va_end(ap);                                                           \
        if (refused(p, flags)) {                                              \
            errno = EINVAL;                                                   \
            return -1;                                                        \
        }                                                                     \
        int (*real)(const char *, int, ...) = dlsym(RTLD_NEXT, #name);        \
        return real(p, flags, mode);                                          \
    }
SHIM(open)
SHIM(open64)
"""


def test_refused_direct_io_names_device_and_option(tmp_path: Path) -> None:
    """A device whose file system refuses O_DIRECT stops start-up with a clear message."""
    if shutil.which("gcc") is None:
        pytest.skip("needs gcc to build the open() shim")
    src, shim = tmp_path / "refuse.c", tmp_path / "refuse.so"
    src.write_text(_REFUSE_SHIM)
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(shim), str(src), "-ldl"], check=True,
                   timeout=60)
    device = tmp_path / "refused.dat"
    config = _config(tmp_path, device, device_size="16MiB", segment_size="2MiB")
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), LD_PRELOAD=str(shim))
    run = subprocess.run([sys.executable, "-m", "appliance", "run", "--config", str(config)],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode != 0, run
    out = run.stdout + run.stderr
    assert f"device {device} refuses direct I/O" in out, out
    assert "direct_io" in out and "Traceback" not in out, out


def test_page_cached_devices_write_around_the_page_cache(
        tmp_path: Path, device_dir: Path, appliance_factory: ApplianceFactory) -> None:
    """direct_io: false still writes segments O_DIRECT (a second descriptor),
    then reads them back into the page cache by readahead: 32 MiB of sets are
    paged in from the disk (a buffered write would leave them cached with no
    page-in) and end up cached, every size round-trips as a device hit read
    through it, and survives a restart."""
    device = device_dir / "cached.dat"
    config = _config(tmp_path, device, direct_io=False, hot_tier="0")
    srv = appliance_factory(config)
    value = b"v" * 4000
    with RawConn(srv.addr, timeout=30) as c:
        paged_in = _paged_in_bytes()
        for i, size in enumerate(SIZES):
            _set(c, b"d%d" % i, _value(i, size), flags=i)
        for j in range(8 * 1024):  # 32 MiB: rolls eight 4 MiB segments past them
            c.send(b"set bulk%d 0 0 %d noreply\r\n%s\r\n" % (j, len(value), value))
        assert c.cmd(b"mn") == b"MN\r\n"
        time.sleep(0.5)  # > flush_interval: the head is written too
        flags = _all_open_flags(srv.pid, device)
        assert sorted(bool(f & os.O_DIRECT) for f in flags) == [False, True], flags
        deadline = time.monotonic() + 10
        while _resident_bytes(device) < 28 * MIB and time.monotonic() < deadline:
            time.sleep(0.1)  # readahead is asynchronous
        resident = _resident_bytes(device)
        assert resident >= 28 * MIB, f"only {resident} bytes of 32 MiB written were read back"
        read_back = _paged_in_bytes() - paged_in
        assert read_back >= 24 * MIB, f"{read_back} bytes paged in: writes went through the cache"
        before = _stats(c)
        _check_all(c, "from the device")
        after = _stats(c)
        hits = int(after[b"hits_device"]) - int(before[b"hits_device"])
        assert hits == len(SIZES), f"{hits} device hits for {len(SIZES)} gets"
        assert after[b"errors_device"] == b"0" and after[b"errors_checksum"] == b"0", after
    _verify_and_restart(srv, config, appliance_factory)


def test_direct_writes_false_keeps_written_records_cached(
        tmp_path: Path, device_dir: Path, appliance_factory: ApplianceFactory) -> None:
    """direct_writes: false: one page-cached descriptor, and what was written
    stays in the page cache (device hits of recent writes need no disk)."""
    device = device_dir / "buffered.dat"
    srv = appliance_factory(_config(tmp_path, device, direct_io=False, hot_tier="0",
                                    direct_writes=False))
    value = b"w" * 4000
    with RawConn(srv.addr, timeout=30) as c:
        for j in range(4 * 1024):  # 16 MiB
            c.send(b"set w%d 0 0 %d noreply\r\n%s\r\n" % (j, len(value), value))
        assert c.cmd(b"mn") == b"MN\r\n"
        time.sleep(0.5)
        assert not _open_flags(srv.pid, device) & os.O_DIRECT
        assert _resident_bytes(device) >= 12 * MIB
        assert c.get(b"w7") == value
