"""Core benchmark: SmartSwitch against memcached 1.6 under the same load, in one run.

Starts a real memcached and the appliance side by side on loopback, drives each
with the same C load generator (bench/loadgen.c, compiled here into bench/out/)
and prints ops/s, p50 and p99 for both, with the smartswitch/memcached ratios.

Scenarios (90% get / 10% set, 32-byte keys, 50 connections):
  values 100 B and 4 KiB  x  pipeline depth 1 and 16  x
  a key space that fits the DRAM hot tier ("dram") and one whose data is ten
  times the hot tier ("device"); for the latter the appliance's `stats` are
  read before and after and the hits_dram / hits_device deltas are reported.

In the device key space a third server runs too: memcached with extstore
(`-m` the hot tier, `-o ext_path=` a file on the same disk), the peer that
keeps items on flash; both report the items they kept of those set. fio
reads the appliance's device file (4 KiB random reads, O_DIRECT, io_uring,
queue depth 16) to give the device's IOPS beside them. `--direct-io` opens
the appliance's device O_DIRECT, so its device hits are real device reads.

Usage (from the repository root):
  .venv/bin/python bench/run.py [--quick] [--duration S] [--json FILE]

See bench/README.md for how to read the output.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import yaml

# bench/ holds scripts, not a package: Python puts the script's folder first on sys.path.
import memaslap  # noqa: E402  (bench/memaslap.py: the second, external load generator)
import pinning  # noqa: E402  (bench/pinning.py: --pin-loadgen)
import run_report  # noqa: E402  (bench/run_report.py: the table)

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
OUT = BENCH / "out"
LOADGEN_SRC = BENCH / "loadgen.c"
LOADGEN_BIN = OUT / "loadgen"
DEFAULT_CONFIG = REPO / "configs" / "default.yaml"

MIB = 1024 * 1024
KEY_SIZE = 32
GET_RATIO = 0.9
CONNS = 50
# Bytes an item costs beyond key and value in a DRAM tier (headers, hash
# slot, allocator slack); used only to size the key space that must fit.
ITEM_OVERHEAD = 64
# The "dram" key space fills this share of the hot tier, leaving slack for
# the tier's own bookkeeping and for sets during the run.
DRAM_FILL = 0.5
# The "device" key space holds this many times the hot tier in key+value bytes.
DEVICE_FACTOR = 10
# Upper bound on requests/s any server reaches here, used only to size the
# appliance's device for the sets made while measuring (see _sizes).
SET_RATE_BOUND = 600_000
# Other jobs' CPU (cores) above which a run's throughput is called noisy.
NOISY_CORES = 0.3
READY_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 15.0


class BenchError(RuntimeError):
    """A server would not start, the load generator failed, or a run was invalid."""


class PrefillRefused(BenchError):
    """Every key was sent and answered, but the server refused `refused` of the sets."""

    def __init__(self, message: str, refused: int):
        super().__init__(message)
        self.refused = refused


# memcached with extstore refuses a few hundred to a thousand of its 5.08M
# prefill sets now and then (248; 151; 280; 1,058), its flusher behind a
# pipelined burst. A handful of refusals (at most this share of the keys: a
# hit% of 99.9% or more) only makes those keys miss, which the hit% column
# shows, so the bench says so and goes on. Setting every key again does not
# help there: each pass fills the extstore file further, and refusals grew
# from 280 to 474 to 1,704 over three passes. More refusals than that, from a
# server that is really full, get one more pass and then stop the bench.
PREFILL_ATTEMPTS = 2
PREFILL_REFUSED_SHARE_TOLERATED = 1e-3


@dataclasses.dataclass(frozen=True)
class Scenario:
    """One load shape, run against each server in turn.

    Attributes:
        value_size: value length in bytes.
        keyspace: "dram" (fits the hot tier) or "device" (ten times the tier).
        keys: number of distinct keys.
        depth: requests in flight per connection.
        generator: "loadgen" (bench/loadgen.c) or "memaslap" (bench/memaslap.py).
    """

    value_size: int
    keyspace: str
    keys: int
    depth: int
    generator: str = "loadgen"

    @property
    def name(self) -> str:
        """A short label such as `v100 dram(85k) d16` (`... memaslap` for that one)."""
        gen = "" if self.generator == "loadgen" else f" {self.generator}"
        return f"v{self.value_size} {self.keyspace}({_human(self.keys)}) d{self.depth}{gen}"


def _human(n: float) -> str:
    """Format a count compactly: 950, 85k, 2.5M."""
    if n >= 1e6:
        return f"{n / 1e6:.1f}M"
    if n >= 1e4:
        return f"{n / 1e3:.0f}k"
    if n >= 1e3:
        return f"{n / 1e3:.1f}k"
    return f"{n:.0f}"


def _free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build_loadgen() -> Path:
    """Compile bench/loadgen.c into bench/out/loadgen unless it is up to date.

    Returns:
        The path of the load generator binary.
    """
    OUT.mkdir(parents=True, exist_ok=True)
    newest = max(LOADGEN_SRC.stat().st_mtime, (BENCH / "lg_hist.h").stat().st_mtime)
    if LOADGEN_BIN.exists() and LOADGEN_BIN.stat().st_mtime >= newest:
        return LOADGEN_BIN
    cc = os.environ.get("CC", "cc")
    cmd = [cc, "-O2", "-pthread", "-o", str(LOADGEN_BIN), str(LOADGEN_SRC), "-lm"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if res.returncode != 0:
        raise BenchError(f"building the load generator failed:\n{res.stderr}")
    return LOADGEN_BIN


def mc_flush_all(port: int, timeout: float = 10.0) -> None:
    """`flush_all` a memcached-protocol server and wait for its OK."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(b"flush_all\r\n")
        reply = s.recv(64)
    if reply != b"OK\r\n":
        raise BenchError(f"flush_all on port {port} answered {reply!r}")


def mc_stats(port: int, timeout: float = 5.0) -> dict[str, str]:
    """Read the general `stats` of a memcached-protocol server.

    Args:
        port: TCP port on 127.0.0.1.
        timeout: seconds before giving up.

    Returns:
        Stat name to value (as text).
    """
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(b"stats\r\n")
        buf = b""
        deadline = time.monotonic() + timeout
        while not buf.endswith(b"END\r\n"):
            if time.monotonic() > deadline:
                raise BenchError(f"stats on port {port} did not finish")
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    out: dict[str, str] = {}
    for line in buf.decode(errors="replace").splitlines():
        parts = line.split(" ", 2)
        if len(parts) == 3 and parts[0] == "STAT":
            out[parts[1]] = parts[2]
    return out


def _stat_delta(before: dict[str, str], after: dict[str, str], name: str) -> int | None:
    """after[name] - before[name] as an int, or None if the server lacks it."""
    try:
        return int(after[name]) - int(before[name])
    except (KeyError, ValueError):
        return None


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    """Wait until something accepts TCP connections on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"server exited with status {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise BenchError(f"nothing listening on port {port} after {timeout:.0f}s")


class Server:
    """A server process under test: how to reach it and how to stop it.

    Attributes:
        name: "memcached" or "smartswitch".
        port: its TCP port on 127.0.0.1.
        proc: the process.
        log: where its stdout and stderr go.
    """

    def __init__(self, name: str, port: int, proc: subprocess.Popen[bytes], log: Path):
        self.name = name
        self.port = port
        self.proc = proc
        self.log = log

    def check_alive(self) -> None:
        """Raise BenchError (with the log's tail) if the process has died."""
        if self.proc.poll() is not None:
            raise BenchError(
                f"{self.name} exited with status {self.proc.returncode}\n{self.log_tail()}"
            )

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the server's log, for error messages."""
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited within STOP_TIMEOUT_S."""
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            print(f"# {self.name} ignored SIGTERM for {STOP_TIMEOUT_S:.0f}s; killing it",
                  file=sys.stderr)
            self.proc.kill()
            self.proc.wait(5)


def start_memcached(binary: str, workers: int, mem_mib: int, tmp: Path,
                    extra: list[str] | None = None) -> Server:
    """Start memcached 1.6 on a free loopback port, TCP only.

    Args:
        binary: path of memcached.
        workers: worker threads (-t).
        mem_mib: item memory (-m), enough for the largest key space.
        tmp: directory for its log.
    """
    port = _free_port()
    log = tmp / "memcached.log"
    cmd = [binary, "-l", "127.0.0.1", "-p", str(port), "-t", str(workers),
           "-m", str(mem_mib), "-U", "0", "-c", "4096", *(extra or [])]
    if os.geteuid() == 0:
        cmd += ["-u", "root"]
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    server = Server("memcached", port, proc, log)
    try:
        _wait_port(port, proc, 15.0)
    except BenchError:
        server.stop()
        raise
    return server


def start_extstore(binary: str, workers: int, hot_tier_mib: int, ext_mib: int,
                   tmp: Path) -> Server:
    """memcached with extstore: `-m` the appliance's hot tier, the rest on a file."""
    sub = tmp / "extstore"
    sub.mkdir(exist_ok=True)
    srv = start_memcached(binary, workers, hot_tier_mib, sub,
                          ["-o", f"ext_path={sub / 'extstore.dat'}:{ext_mib}m"])
    srv.name = "extstore"
    return srv


def device_fio_iops(path: Path, args: argparse.Namespace) -> float | None:
    """fio's 4 KiB random-read IOPS on path (O_DIRECT, io_uring, QD 16), or None."""
    if shutil.which("fio") is None or not path.exists():
        return None
    size = path.stat().st_size // 4096 * 4096
    cmd = ["fio", "--name=device", f"--filename={path}", "--direct=1", "--rw=randread",
           "--bs=4k", f"--size={size}", "--norandommap", "--time_based",
           f"--runtime={max(2.0, args.duration / 2):g}", "--ioengine=io_uring",
           "--iodepth=16", "--numjobs=1", "--output-format=json"]
    with contextlib.suppress(subprocess.TimeoutExpired):
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=args.duration + 60)
        if res.returncode == 0:
            return float(json.loads(res.stdout[res.stdout.find("{"):])["jobs"][0]["read"]["iops"])
        print(f"# fio on {path} failed: {res.stderr.strip()}", file=sys.stderr)
    return None


def appliance_config(tmp: Path, workers: int, hot_tier_mib: int, device_mib: int,
                     direct_io: bool = False, objects: bool = False,
                     direct_writes: bool = True) -> Path:
    """Write the appliance's bench config, derived from configs/default.yaml.

    Only what the bench needs differs from the embedded default: an ephemeral
    TCP port, UDP off, no console, the worker count, the hot tier and a device sized for
    the largest key space, everything under tmp. Without `objects` the memcached pool
    has the whole device and nothing listens for objects (the memcached benches are
    measured as before objects existed); with it, default.yaml's objects pool and
    section stay, on an ephemeral port.

    Returns:
        The path of the written config.
    """
    cfg: dict[str, Any] = yaml.safe_load(DEFAULT_CONFIG.read_text())
    mc = cfg["memcached"]
    mc["listen"] = "127.0.0.1"
    mc["tcp_port"] = 0
    mc["udp_port"] = None
    mc["workers"] = workers
    st = cfg["storage"]
    st["dir"] = str(tmp / "var")
    st["hot_tier"] = f"{hot_tier_mib}MiB"
    dev = st["devices"][0]
    dev["path"] = str(tmp / "var" / "store.dat")
    dev["size"] = f"{device_mib}MiB"
    if direct_io:
        dev["direct_io"] = True
    if not direct_writes:
        dev["direct_writes"] = False
    if objects:
        cfg["objects"]["listen"] = "127.0.0.1:0"  # 8081 may be taken
    else:
        cfg["objects"] = None
        st["pools"] = [dict(p, size="100%") for p in st["pools"] if p["role"] == "memcached"]
    cfg["console"]["enabled"] = False  # not measured; and 8080 may be taken
    path = tmp / "smartswitch.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def start_appliance(python: str, config: Path, tmp: Path) -> Server:
    """Start `python -m appliance run --config CONFIG` and learn its TCP port.

    The port comes from the stderr line containing `ready tcp=127.0.0.1:PORT`.

    Raises:
        BenchError: it exited or did not become ready within READY_TIMEOUT_S.
    """
    log = tmp / "smartswitch.log"
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    with open(log, "wb") as fh:
        proc = subprocess.Popen([python, "-m", "appliance", "run", "--config", str(config)],
                                stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=str(tmp), env=env)
    server = Server("smartswitch", 0, proc, log)
    deadline = time.monotonic() + READY_TIMEOUT_S
    try:
        while True:
            for line in log.read_text(errors="replace").splitlines():
                marker = line.find("ready tcp=")
                if marker >= 0:
                    addr = line[marker + len("ready tcp="):].split()[0]
                    server.port = int(addr.rsplit(":", 1)[1])
                    _wait_port(server.port, proc, 10.0)
                    return server
            server.check_alive()
            if time.monotonic() > deadline:
                raise BenchError(f"smartswitch not ready after {READY_TIMEOUT_S:.0f}s\n"
                                 f"{server.log_tail()}")
            time.sleep(0.1)
    except BaseException:
        server.stop()
        raise


def run_loadgen(port: int, sc: Scenario, args: argparse.Namespace, *,
                prefill: bool = False) -> dict[str, Any]:
    """Run the load generator once against 127.0.0.1:port.

    Args:
        port: the server's TCP port.
        sc: the load shape.
        args: command-line options (duration, warmup, threads, connections).
        prefill: set every key once (pipelined) and measure only briefly.

    Returns:
        The load generator's JSON result.
    """
    duration, warmup = (0.2, 0.0) if prefill else (args.duration, args.warmup)
    cmd = [*pinning.prefix(args), str(LOADGEN_BIN), "--port", str(port),
           "--threads", str(args.loadgen_threads),
           "--conns", str(args.conns), "--depth", str(16 if prefill else sc.depth),
           "--get-ratio", str(args.get_ratio), "--key-size", str(KEY_SIZE),
           "--keys", str(sc.keys), "--value-size", str(sc.value_size),
           "--duration", str(duration), "--warmup", str(warmup),
           "--seed", str(args.seed)]
    if prefill:
        cmd += ["--prefill", "--prefill-timeout", str(args.prefill_timeout)]
    limit = duration + warmup + (args.prefill_timeout if prefill else 0) + 30
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=limit)
    except subprocess.TimeoutExpired as e:
        raise BenchError(f"loadgen overran its {limit:.0f}s bound") from e
    if res.returncode != 0:
        raise BenchError(f"loadgen failed ({res.returncode}): {res.stderr.strip()} "
                         f"{res.stdout.strip()}")
    out: dict[str, Any] = json.loads(res.stdout)
    if prefill:
        pf = out["prefill"]
        if pf["sets"] != sc.keys or pf["errors"] or out["conn_errors"]:
            why = (f"prefill of {sc.keys} keys incomplete on port {port}: {pf}, "
                   f"conn_errors={out['conn_errors']} {res.stderr.strip()}")
            if pf["sets"] == sc.keys and not out["conn_errors"]:
                raise PrefillRefused(why, int(pf["errors"]))
            raise BenchError(why)
    return out


def prefill(srv: "Server", sc: Scenario, args: argparse.Namespace) -> None:
    """Set every key of sc once on srv; again if the server refused more than a
    handful of the sets.

    Raises:
        BenchError: the load generator failed, or the server refused more than
            PREFILL_REFUSED_SHARE_TOLERATED of the sets in every one of
            PREFILL_ATTEMPTS.
    """
    for attempt in range(1, PREFILL_ATTEMPTS + 1):
        try:
            run_loadgen(srv.port, sc, args, prefill=True)
            return
        except PrefillRefused as e:
            if e.refused <= sc.keys * PREFILL_REFUSED_SHARE_TOLERATED:
                print(f"# {srv.name} refused {e.refused} of {sc.keys} sets of the prefill; "
                      "going on: those keys miss, and the hit% column counts them",
                      file=sys.stderr)
                return
            if attempt < PREFILL_ATTEMPTS:
                print(f"# {srv.name} refused sets of the prefill ({e}); setting every key "
                      "again", file=sys.stderr)
                continue
            raise BenchError(f"{srv.name} refused sets in all {PREFILL_ATTEMPTS} prefills "
                             f"of {sc.keys} keys; see {srv.log}: {e}") from e


def plan(args: argparse.Namespace) -> dict[int, list[Scenario]]:
    """The scenarios to run, grouped by value size (one server pair per group)."""
    groups: dict[int, list[Scenario]] = {}
    hot = args.hot_tier_mib * MIB
    for value in args.values:
        dram_keys = int(hot * DRAM_FILL / (KEY_SIZE + value + ITEM_OVERHEAD))
        device_keys = int(hot * DEVICE_FACTOR / (KEY_SIZE + value))
        scs = []
        for space, keys in (("dram", dram_keys), ("device", device_keys)):
            if space not in args.keyspaces:
                continue
            for depth in args.depths:
                scs.append(Scenario(value, space, keys, depth))
        # The external generator on the DRAM key space, in the same run.
        if "dram" in args.keyspaces and "memaslap" in args.generators:
            scs += [Scenario(value, "dram", dram_keys, depth, "memaslap")
                    for depth in args.depths]
        groups[value] = scs
    return groups


def _sizes(scs: list[Scenario], args: argparse.Namespace) -> tuple[int, int]:
    """memcached -m and the appliance device size (MiB) for a group of scenarios.

    Both must hold the largest key space without evicting, or the comparison
    turns into one of eviction policies. memcached's slab classes waste up to
    ~25% and overwrites reuse memory. The appliance's device is a log: every
    set appends, and old copies are only reclaimed with their segment, which
    is FIFO eviction of live items too; so the device also needs room for
    every set made while measuring, bounded here by SET_RATE_BOUND. The file
    is sparse, so the size costs nothing until written. memaslap's sets are
    of new keys (its window moves on), so with it memcached must also hold
    one run's sets (each run starts with flush_all), or it evicts what
    memaslap reads back and answers misses, doing less work than a server
    that keeps them.
    """
    top = max(scs, key=lambda s: s.keys)
    item = KEY_SIZE + top.value_size + ITEM_OVERHEAD
    sets_per_run = SET_RATE_BOUND * (1 - args.get_ratio) * (args.duration + args.warmup)
    held = top.keys + (sets_per_run if any(s.generator == "memaslap" for s in scs) else 0)
    mem_mib = math.ceil(held * item * 1.4 / MIB) + 64
    runs = len(scs) * args.repeat
    sets = sets_per_run * runs
    written = sum({s.keyspace: s.keys for s in scs}.values()) + sets
    dev_mib = max(1024, math.ceil(written * item * 1.5 / MIB), args.hot_tier_mib * 4)
    return mem_mib, dev_mib


@contextlib.contextmanager
def servers(args: argparse.Namespace, scs: list[Scenario], tmp: Path) -> Iterator[list[Server]]:
    """Start memcached and the appliance for a group of scenarios; stop both after."""
    mem_mib, dev_mib = _sizes(scs, args)
    started: list[Server] = []
    try:
        with pinning.starting_servers(args):
            _start_servers(args, scs, tmp, mem_mib, dev_mib, started)
        stray = pinning.strays(args, {s.name: [s.proc.pid] for s in started})
        if stray:
            raise BenchError(f"--pin-loadgen: threads off the servers' CPUs: {stray}")
        yield started
    finally:
        for s in reversed(started):
            with contextlib.suppress(Exception):
                s.stop()


def _start_servers(args: argparse.Namespace, scs: list[Scenario], tmp: Path, mem_mib: int,
                   dev_mib: int, started: list[Server]) -> None:
    """Start the servers the options name, each appended to `started` at once (so
    that servers() stops it whatever fails next)."""
    if "memcached" in args.servers:
        started.append(start_memcached(args.memcached, args.workers, mem_mib, tmp))
    if "smartswitch" in args.servers:
        if args.standin:
            # a second memcached in the appliance's seat, to test the bench itself
            sub = tmp / "standin"
            sub.mkdir(exist_ok=True)
            standin = start_memcached(args.memcached, args.workers, mem_mib, sub)
            standin.name = "smartswitch"
            started.append(standin)
        else:
            cfg = appliance_config(tmp, args.workers, args.hot_tier_mib, dev_mib,
                                   args.direct_io, direct_writes=not args.page_cached_writes)
            started.append(start_appliance(args.python, cfg, tmp))
    if "extstore" in args.servers and any(s.keyspace == "device" for s in scs):
        started.append(start_extstore(args.memcached, args.workers, args.hot_tier_mib,
                                      dev_mib, tmp))


def start_perf(srv: Server, sc: Scenario, args: argparse.Namespace,
               rep: int) -> tuple[subprocess.Popen[bytes], Path] | None:
    """With --perf, sample the server's CPU (call graphs) during its first run.

    Returns:
        The perf process and its output file, or None when not profiling.
    """
    if not args.perf or rep != 0 or srv.name not in args.perf_servers:
        return None
    perf_bin = shutil.which("perf")
    if not perf_bin:
        print("# --perf: no perf binary on PATH; not profiling", file=sys.stderr)
        return None
    out = OUT / f"perf-{srv.name}-{sc.name.replace(' ', '_')}.data"
    span = args.warmup + args.duration
    proc = subprocess.Popen([perf_bin, "record", "-q", "-F", "499", "-g", "-p",
                             str(srv.proc.pid), "-o", str(out), "--", "sleep", f"{span:g}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, out


def finish_perf(proc: subprocess.Popen[bytes], out: Path) -> None:
    """Wait for perf, then print the server's hottest symbols to stderr."""
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
    rep = subprocess.run(["perf", "report", "-i", str(out), "--stdio", "--no-children",
                          "--sort", "dso,symbol", "-g", "none", "--percent-limit", "1.5"],
                         capture_output=True, text=True, timeout=120)
    lines = [ln for ln in rep.stdout.splitlines() if ln.strip() and not ln.startswith("#")]
    print(f"# perf profile {out.name} (self time, >= 1.5%):", file=sys.stderr)
    for ln in lines[:25]:
        print(f"#   {ln.strip()}", file=sys.stderr)


CLK_TCK = os.sysconf("SC_CLK_TCK")


def _proc_cpu_s(pid: int) -> float:
    """CPU seconds (user + system, all threads) a live process has used."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _proc_switches(pid: int) -> int:
    """Context switches (voluntary and not, all live threads) a process has made."""
    total = 0
    for status in Path(f"/proc/{pid}/task").glob("*/status"):
        with contextlib.suppress(OSError):  # a thread that just ended
            for line in status.read_text().splitlines():
                name, _, value = line.partition(":")
                if name.endswith("ctxt_switches"):  # voluntary_ and nonvoluntary_
                    total += int(value)
    return total


def _machine_busy_s() -> float:
    """CPU seconds the whole machine has spent not idle, summed over CPUs."""
    with open("/proc/stat") as fh:
        vals = [int(v) for v in fh.readline().split()[1:]]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
    # guest time is already counted in user time
    return (sum(vals[:8]) - idle) / CLK_TCK


def measure(srv: Server, sc: Scenario, args: argparse.Namespace, rep: int,
            tmp: Path) -> dict[str, Any]:
    """One measured run of a scenario against one server, with its stats deltas."""
    if sc.generator == "memaslap":
        # memaslap draws fresh random keys every run: without this, runs pile
        # keys up until memcached evicts (and misses) while the appliance
        # serves them from its device, and the two do different work.
        mc_flush_all(srv.port)
    before = mc_stats(srv.port)
    perf = start_perf(srv, sc, args, rep)
    srv_cpu0, busy0 = _proc_cpu_s(srv.proc.pid), _machine_busy_s()
    lg0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        if sc.generator == "memaslap":
            res = memaslap.run(srv.port, sc.value_size, sc.keys, sc.depth, args, tmp)
        else:
            res = run_loadgen(srv.port, sc, args)
    finally:
        lg1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        srv_cpu1, busy1 = _proc_cpu_s(srv.proc.pid), _machine_busy_s()
        if perf:
            finish_perf(*perf)
    after = mc_stats(srv.port)
    # CPU per request is steadier than ops/s on a shared machine; the CPU the
    # rest of the machine burnt meanwhile says how much noise to expect.
    span = res["seconds"] + args.warmup
    srv_cpu = srv_cpu1 - srv_cpu0
    lg_cpu = (lg1.ru_utime + lg1.ru_stime) - (lg0.ru_utime + lg0.ru_stime)
    res["cpu"] = {
        "server_s": srv_cpu,
        "server_us_per_op": 1e6 * srv_cpu / (res["ops_per_sec"] * span) if res["ops"] else None,
        "loadgen_s": lg_cpu,
        "others_cores": max(0.0, (busy1 - busy0) - srv_cpu - lg_cpu) / span,
    }
    srv.check_alive()
    row: dict[str, Any] = {"scenario": sc.name, **dataclasses.asdict(sc),
                           "server": srv.name, "rep": rep, "result": res}
    with contextlib.suppress(ValueError, KeyError):
        row["items"] = int(after["curr_items"])
    row["stats_delta"] = {
        name: _stat_delta(before, after, name)
        for name in ("get_hits", "get_misses", "hits_dram", "hits_device",
                     "evictions", "device_reads")
    }
    print(f"# {sc.name:28s} {srv.name:11s} #{rep} {res['ops_per_sec']:>10,.0f} ops/s "
          f"p50 {res['p50_us']:.0f}us p99 {res['p99_us']:.0f}us "
          f"errors {res['errors']} server {res['cpu']['server_us_per_op'] or 0:.1f} us-cpu/op "
          f"others {res['cpu']['others_cores']:.2f} cores", file=sys.stderr)
    return row


def run_group(args: argparse.Namespace, scs: list[Scenario], tmp: Path) -> list[dict[str, Any]]:
    """Run one value size's scenarios against every server; return result rows."""
    rows: list[dict[str, Any]] = []
    with servers(args, scs, tmp) as srvs:
        prefilled: set[tuple[str, str]] = set()
        for sc in scs:
            here = [s for s in srvs if s.name != "extstore" or sc.keyspace == "device"]
            for srv in here:
                srv.check_alive()
                if sc.generator == "loadgen" and (srv.name, sc.keyspace) not in prefilled:
                    t0 = time.monotonic()
                    prefill(srv, sc, args)
                    print(f"# prefilled {sc.keys} keys of {sc.value_size} B into {srv.name} "
                          f"in {time.monotonic() - t0:.1f}s", file=sys.stderr)
                    prefilled.add((srv.name, sc.keyspace))
                    if srv.name == "smartswitch" and sc.keyspace == "device":
                        iops = device_fio_iops(tmp / "var" / "store.dat", args)
                        if iops is not None:
                            rows.append({"fio": True, "scenario": sc.name, "iops": iops})
            # Alternate which server goes first so drift on a shared machine
            # (other jobs, thermal, page cache) does not favour one of them.
            for rep in range(args.repeat):
                for srv in (here if rep % 2 == 0 else list(reversed(here))):
                    rows.append(measure(srv, sc, args, rep, tmp))
    return rows


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; see the module docstring."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 100 B values only, 16 MiB hot tier, 2 s runs")
    p.add_argument("--duration", type=float, help="measured seconds per run (default 5)")
    p.add_argument("--warmup", type=float, help="unmeasured seconds before each run (default 2)")
    p.add_argument("--repeat", type=int, help="runs per scenario and server, "
                   "alternating which goes first; medians are reported (default 3)")
    p.add_argument("--json", type=Path, help="also write every result to this file")
    p.add_argument("--values", type=int, nargs="+", help="value sizes (default 100 4096)")
    p.add_argument("--depths", type=int, nargs="+", default=[1, 16])
    p.add_argument("--keyspaces", nargs="+", choices=["dram", "device"],
                   default=["dram", "device"])
    p.add_argument("--generators", nargs="+", choices=["loadgen", "memaslap"],
                   default=["loadgen", "memaslap"],
                   help="load generators: ours (every key space) and memaslap (the DRAM one)")
    p.add_argument("--servers", nargs="+", choices=["memcached", "smartswitch", "extstore"],
                   default=["memcached", "smartswitch", "extstore"],
                   help="extstore runs in the device key space only")
    p.add_argument("--page-cached-writes", action="store_true",
                   help="the appliance writes its segments through the page cache "
                        "(direct_writes: false)")
    p.add_argument("--direct-io", action="store_true",
                   help="open the appliance's device O_DIRECT (its device hits are real reads)")
    p.add_argument("--hot-tier-mib", type=int, help="appliance DRAM tier (default 64)")
    p.add_argument("--workers", type=int, default=2, help="server worker threads (2)")
    p.add_argument("--loadgen-threads", type=int, default=1)
    p.add_argument("--conns", type=int, default=CONNS)
    p.add_argument("--get-ratio", type=float, default=GET_RATIO,
                   help="share of gets (0.9); the issue's scenarios use 0.9")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--prefill-timeout", type=float, default=300.0)
    p.add_argument("--memcached", default=shutil.which("memcached") or "/usr/bin/memcached")
    p.add_argument("--python", default=sys.executable,
                   help="interpreter that runs `-m appliance` (default: this one)")
    p.add_argument("--perf", action="store_true",
                   help="profile each server's first run of every scenario with perf "
                   "(bench/out/perf-*.data; top symbols printed)")
    p.add_argument("--perf-servers", nargs="+", choices=["memcached", "smartswitch"],
                   default=["smartswitch"], help="whom --perf profiles (smartswitch)")
    p.add_argument("--standin", action="store_true",
                   help="test the bench itself: a second memcached plays smartswitch")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (logs, config)")
    pinning.add_option(p)
    args = p.parse_args(argv)
    pinning.split(p, args)
    quick = args.quick
    if args.duration is None:
        args.duration = 2.0 if quick else 5.0
    if args.warmup is None:
        args.warmup = 0.5 if quick else 2.0
    if args.repeat is None:
        args.repeat = 1 if quick else 3
    if args.values is None:
        args.values = [100] if quick else [100, 4096]
    if args.hot_tier_mib is None:
        args.hot_tier_mib = 16 if quick else 64
    return args


def _on_sigterm(signum: int, frame: object) -> None:
    """Turn SIGTERM into KeyboardInterrupt so the servers are stopped on the way out."""
    raise KeyboardInterrupt(f"signal {signum}")


def finish(args: argparse.Namespace, tmp: Path, status: int, rows: list[dict[str, Any]],
           results: dict[str, Any]) -> None:
    """The end of every bench script: --json gets the machine, the options,
    the rows and `results`; the temp dir goes unless --keep or a failure."""
    if args.json:
        args.json.write_text(json.dumps({
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
            "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "rows": rows, **results}, indent=2))
    if args.keep or status:
        print(f"# logs and configs kept in {tmp}", file=sys.stderr)
    else:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 on success, 1 if a server or the load generator failed."""
    args = parse_args(argv)
    # SIGTERM must unwind through the `finally` that stops the servers.
    signal.signal(signal.SIGTERM, _on_sigterm)
    build_loadgen()
    tmp = Path(tempfile.mkdtemp(prefix="ss-bench-"))
    rows: list[dict[str, Any]] = []
    status = 0
    try:
        for value, scs in plan(args).items():
            gdir = tmp / f"v{value}"
            gdir.mkdir()
            rows += run_group(args, scs, gdir)
    except (BenchError, KeyboardInterrupt) as e:
        print(f"bench: {e}", file=sys.stderr)
        status = 1
    finally:
        summaries = run_report.report(rows, args, KEY_SIZE, NOISY_CORES) if rows else []
        finish(args, tmp, status, rows, {"summaries": summaries})
    return status


if __name__ == "__main__":
    sys.exit(main())
