"""--pin-loadgen, shared by the benches: the load generator on a CPU of its own.

In production the clients are other machines. On one machine, by default the
load generator and the server under test share every CPU, so a server's tail
latency also measures how its threads and the load generator's share them.
With --pin-loadgen the load generator runs (under taskset) on the last CPU
this process may use, and the servers are started bound to the others; the
threads and processes they start later inherit that. After the start,
`strays` names any server thread that runs elsewhere.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from typing import Iterable, Iterator

HELP = ("the load generator on the last CPU this process may use, every server on the "
        "others, as when the clients are other machines (default: all share every CPU)")


def add_option(p: argparse.ArgumentParser) -> None:
    """The --pin-loadgen switch."""
    p.add_argument("--pin-loadgen", action="store_true", help=HELP)


def split(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """args.loadgen_cpus and args.server_cpus (lists, so that --json can write them)."""
    cpus = sorted(os.sched_getaffinity(0))
    if args.pin_loadgen and len(cpus) < 2:
        p.error("--pin-loadgen needs at least 2 CPUs: one for the load generator, "
                "the rest for the servers")
    args.loadgen_cpus, args.server_cpus = cpus[-1:], cpus[:-1]


def cpu_list(cpus: Iterable[int]) -> str:
    """A CPU set as taskset writes it: 0,2,3."""
    return ",".join(str(c) for c in sorted(cpus))


def pinned(args: argparse.Namespace) -> bool:
    """Whether --pin-loadgen is on (benches that share run.py's load generator
    without offering the option read as off)."""
    return getattr(args, "pin_loadgen", False)


def prefix(args: argparse.Namespace) -> list[str]:
    """What goes before a load generator's command line."""
    if not pinned(args):
        return []
    return ["taskset", "-c", cpu_list(args.loadgen_cpus)]


@contextlib.contextmanager
def starting_servers(args: argparse.Namespace) -> Iterator[None]:
    """Servers started inside this block run on the servers' CPUs (they inherit this
    process's affinity); the bench itself goes back to every CPU after it."""
    if not pinned(args):
        yield
        return
    everywhere = os.sched_getaffinity(0)
    os.sched_setaffinity(0, args.server_cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, everywhere)


def strays(args: argparse.Namespace, servers: dict[str, Iterable[int]]) -> list[str]:
    """With --pin-loadgen, the threads of these servers (name: pids) allowed on other
    CPUs than the servers', in words; empty when all are where they belong."""
    if not pinned(args):
        return []
    want, out = set(args.server_cpus), []
    for name, pids in servers.items():
        for pid in pids:
            with contextlib.suppress(OSError):  # a process or thread that just ended
                for tid in os.listdir(f"/proc/{pid}/task"):
                    got = os.sched_getaffinity(int(tid))
                    if got != want:
                        out.append(f"{name} pid {pid} thread {tid} on CPUs {cpu_list(got)}")
    return out


def words(args: argparse.Namespace, generator: str) -> str:
    """Where the load generator and the servers ran, for a report."""
    return (f"{generator} pinned to CPU {cpu_list(args.loadgen_cpus)}, the servers to CPU "
            f"{cpu_list(args.server_cpus)} (--pin-loadgen)")
