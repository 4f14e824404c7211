"""Differential test: the same seeded command stream to the appliance and to a
real memcached 1.6, replies compared byte for byte (cas values by behaviour).

Each batch of 1-8 pipelined commands ends with `mn`, whose `MN` marks the end
of the batch's replies; replies are read by framing (VALUE/VA blocks by their
length), with a deadline, so a hang fails instead of blocking. On a
difference the message names the seed, the command indexes, the commands and
both replies. SS_DIFF_SEED and SS_DIFF_COUNT override the seeds and length.
"""

from __future__ import annotations

import collections
import os
import random
import time

import pytest

from .helpers.diffgen import Canon, Command, Generator
from .helpers.mcproto import Closed, RawConn, ReplyTimeout
from .helpers.procs import Server, start_memcached

DEFAULT_SEEDS = [1, 2, 3]
DEFAULT_COUNT = 3000
BATCH_TIMEOUT_S = 10.0
RUN_TIME_LIMIT_S = 240.0

Segs = list[tuple[bytes, bytes]]


# memcached's LRU maintainer and crawler threads take item references at
# times of their own; an incr/decr whose result is shorter is rewritten in
# place (space padded) only when nobody else holds a reference. Without those
# threads the reference memcached pads every time, deterministically.
REFERENCE_ARGS = ("-o", "no_lru_maintainer,no_lru_crawler")


@pytest.fixture
def reference(tmp_path, request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """The reference memcached for the differential test."""
    srv = start_memcached(tmp_path, REFERENCE_ARGS)
    try:
        yield srv
    finally:
        srv.kill9()
        if getattr(request.node, "rep_call", None) is None or request.node.rep_call.failed:
            print(f"----- reference memcached log -----\n{srv.log()}")


@pytest.fixture
def reference2(tmp_path):  # type: ignore[no-untyped-def]
    """A second reference memcached, for the harness self-check."""
    srv = start_memcached(tmp_path, REFERENCE_ARGS)
    try:
        yield srv
    finally:
        srv.kill9()


def _seeds() -> list[int]:
    env = os.environ.get("SS_DIFF_SEED")
    return [int(s) for s in env.split(",")] if env else DEFAULT_SEEDS


def _count() -> int:
    return int(os.environ.get("SS_DIFF_COUNT", DEFAULT_COUNT))


class Side:
    """One server under comparison: its connection and cas mapping."""

    def __init__(self, srv: Server) -> None:
        self.srv = srv
        self.canon = Canon()
        self.conn = RawConn(srv.addr, timeout=BATCH_TIMEOUT_S)

    def reconnect(self) -> None:
        self.conn.close()
        self.conn = RawConn(self.srv.addr, timeout=BATCH_TIMEOUT_S)

    def read(self, count: int) -> Segs:
        try:
            return self.conn.read_until_mn(BATCH_TIMEOUT_S, count)
        except Closed:
            return [(b"<connection closed>", b"")]
        except ReplyTimeout as exc:
            return [(b"<timeout: %s>" % str(exc).encode()[-300:], b"")]


def _fmt(segs: Segs) -> str:
    out = []
    for head, data in segs:
        out.append(repr(head))
        if data:
            out.append(f"  <{len(data) - 2} data bytes: {data[:60]!r}...>")
    return "\n    ".join(out)


def _send_all(sides: list[Side], payloads: list[bytes], rng: random.Random) -> None:
    """Sends each side its payload, sometimes cut into fragments (same cuts)."""
    size = min(len(p) for p in payloads)
    if rng.random() < 0.1 and size > 4:
        cuts = sorted(rng.sample(range(1, size), min(3, size - 1)))
        bounds = list(zip([0] + cuts, cuts + [None]))
        for lo, hi in bounds:
            for side, p in zip(sides, payloads):
                side.conn.send(p[lo:hi] if hi is not None else p[lo:])
            time.sleep(0.002)
    else:
        for side, p in zip(sides, payloads):
            side.conn.send(p)


def _next_batch(gen: Generator, size: int, held: list[Command]) -> list[Command]:
    """Up to `size` commands; a command marked `isolate` goes in a batch alone."""
    batch: list[Command] = []
    if held:
        batch.append(held.pop())
        if batch[0].isolate:
            return batch
    while len(batch) < size:
        c = gen.next()
        if c.isolate and batch:
            held.append(c)
            break
        batch.append(c)
        if c.isolate:
            break
    return batch


def run_differential(ref: Server, test: Server, seed: int, count: int) -> collections.Counter[str]:
    """Sends `count` commands from seed to both servers and asserts equal replies.

    Returns:
        How often each kind of command and each reply code occurred.
    """
    gen = Generator(seed)
    rng = random.Random(seed ^ 0x5EED)
    a, b = Side(ref), Side(test)
    stats: collections.Counter[str] = collections.Counter()
    a.conn.call(b"flush_all\r\n")
    b.conn.call(b"flush_all\r\n")
    start = time.monotonic()
    index = 0
    held: list[Command] = []
    try:
        while index < count:
            assert time.monotonic() - start < RUN_TIME_LIMIT_S, (
                f"seed {seed}: only {index} of {count} commands in {RUN_TIME_LIMIT_S}s")
            gen.begin_batch()
            batch = _next_batch(gen, rng.randint(1, 8), held)
            payloads = [b"".join(c.render(s.canon) for c in batch) + b"mn\r\n" for s in (a, b)]
            _send_all([a, b], payloads, rng)
            # `mn` commands inside the batch answer MN too; the sentinel is the last.
            n_mn = 1 + sum(c.kind == "mn" for c in batch)
            ra, rb = a.canon.apply(a.read(n_mn)), b.canon.apply(b.read(n_mn))
            if ra != rb:
                cmds = "\n".join(f"  [{index + i}] {c.kind}: {c.show()}"
                                 for i, c in enumerate(batch))
                pytest.fail(
                    f"difference: seed {seed}, commands {index}..{index + len(batch) - 1} "
                    f"(reproduce: SS_DIFF_SEED={seed} SS_DIFF_COUNT={index + len(batch)})\n"
                    f"commands:\n{cmds}\n"
                    f"{ref.name} replied:\n    {_fmt(ra)}\n"
                    f"{test.name} replied:\n    {_fmt(rb)}")
            if ra[-1][0] != b"MN\r\n":
                # Both closed or both timed out the same way: carry on afresh.
                a.reconnect()
                b.reconnect()
            gen.observe(ra)
            for c in batch:
                stats["cmd:" + c.kind] += 1
            for head, _ in ra[:-1]:
                stats["reply:" + head.split(b" ")[0].strip().decode("latin-1")[:24]] += 1
            index += len(batch)
    finally:
        a.conn.close()
        b.conn.close()
    return stats


def _coverage_ok(stats: collections.Counter[str]) -> None:
    """The stream must really exercise hits, stores, cas and errors."""
    for reply in ("VALUE", "STORED", "NOT_STORED", "EXISTS", "NOT_FOUND", "DELETED", "TOUCHED",
                  "ERROR", "CLIENT_ERROR", "VA", "HD", "EN", "NF", "NS", "EX", "OK"):
        assert stats["reply:" + reply] > 0, f"no {reply} reply in the stream: {stats}"


@pytest.mark.parametrize("seed", _seeds())
def test_differential_against_memcached(reference: Server, appliance: Server, seed: int) -> None:
    stats = run_differential(reference, appliance, seed, _count())
    _coverage_ok(stats)


def test_differential_harness_is_deterministic(reference: Server, reference2: Server) -> None:
    """Two real memcacheds must agree on the stream; else the harness is at fault."""
    stats = run_differential(reference, reference2, 99, 1500)
    _coverage_ok(stats)
