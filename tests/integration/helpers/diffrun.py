"""The differential harness: the same seeded command stream to two servers, replies
compared byte for byte (cas values by behaviour: each side's are renamed to canonical
tokens in order of first appearance, helpers/diffgen.py's Canon).

Each batch of 1-8 pipelined commands ends with `mn`, whose `MN` marks the end of the
batch's replies; replies are read by framing (VALUE/VA blocks by their length), with a
deadline, so a hang fails instead of blocking. On a difference the message names the
seed, the command indexes, the connection, the commands and both replies.
SS_DIFF_SEED and SS_DIFF_COUNT override the seeds and length (seeds(), count()).
Used by test_differential.py (standalone) and test_proxy_differential.py.
"""

from __future__ import annotations

import collections
import os
import random
import time

import pytest

from .diffgen import Command, Generator, Canon
from .mcproto import Closed, RawConn, ReplyTimeout
from .procs import Server

BATCH_TIMEOUT_S = 10.0
RUN_TIME_LIMIT_S = 240.0

Segs = list[tuple[bytes, bytes]]

# memcached's LRU maintainer and crawler threads take item references at
# times of their own; an incr/decr whose result is shorter is rewritten in
# place (space padded) only when nobody else holds a reference. Without those
# threads the reference memcached pads every time, deterministically.
REFERENCE_ARGS = ("-o", "no_lru_maintainer,no_lru_crawler")


def seeds(default: list[int]) -> list[int]:
    env = os.environ.get("SS_DIFF_SEED")
    return [int(s) for s in env.split(",")] if env else default


def count(default: int) -> int:
    return int(os.environ.get("SS_DIFF_COUNT", default))


class Side:
    """One server under comparison: its connections and cas mapping. `conn` is the
    connection the current batch goes to (use())."""

    def __init__(self, srv: Server, nconns: int = 1) -> None:
        self.srv = srv
        self.canon = Canon()
        self.conns = [RawConn(srv.addr, timeout=BATCH_TIMEOUT_S) for _ in range(nconns)]
        self.current = 0

    @property
    def conn(self) -> RawConn:
        return self.conns[self.current]

    def use(self, i: int) -> None:
        self.current = i

    def reconnect(self) -> None:
        self.conn.close()
        self.conns[self.current] = RawConn(self.srv.addr, timeout=BATCH_TIMEOUT_S)

    def close(self) -> None:
        for c in self.conns:
            c.close()

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


def _words(c: Command) -> set[bytes]:
    """The words of a command's first line after its name: its keys, among others."""
    first = c.parts[0] if c.parts and isinstance(c.parts[0], bytes) else b""
    return set(first.split(b"\r\n", 1)[0].split()[1:])


def _history_of(batch: list[Command], history: list[tuple[int, Command]],
                most: int = 40) -> str:
    """The last `most` earlier commands that share a word (a key) with the batch,
    or flush everything (noreply writes pipelined just before a batch matter too,
    so the last few commands are always shown)."""
    words = set().union(*(_words(c) for c in batch))
    recent = history[-8:][0][0] if history else 0
    hits = [f"  [{i}] {c.kind}: {c.show()}" for i, c in history
            if _words(c) & words or c.kind.startswith("flush") or i >= recent]
    return "\n".join(hits[-most:]) or "  (none)"


def run_differential(ref: Server, test: Server, seed: int, count: int, nconns: int = 1,
                     gen: Generator | None = None) -> collections.Counter[str]:
    """Sends `count` commands from seed to both servers and asserts equal replies.

    With nconns > 1 each batch goes to one of that many connections, the same on
    both sides (batches stay in order: each waits for the last one's replies).

    Returns:
        How often each kind of command and each reply code occurred.
    """
    gen = gen or Generator(seed)
    rng = random.Random(seed ^ 0x5EED)
    a, b = Side(ref, nconns), Side(test, nconns)
    stats: collections.Counter[str] = collections.Counter()
    a.conn.call(b"flush_all\r\n")
    b.conn.call(b"flush_all\r\n")
    start = time.monotonic()
    index = 0
    held: list[Command] = []
    history: list[tuple[int, Command]] = []
    try:
        while index < count:
            assert time.monotonic() - start < RUN_TIME_LIMIT_S, (
                f"seed {seed}: only {index} of {count} commands in {RUN_TIME_LIMIT_S}s")
            gen.begin_batch()
            which = rng.randrange(nconns)
            a.use(which)
            b.use(which)
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
                    f"on connection {which + 1} of {nconns} "
                    f"(reproduce: SS_DIFF_SEED={seed} SS_DIFF_COUNT={index + len(batch)})\n"
                    f"commands:\n{cmds}\n"
                    f"earlier commands naming these keys:\n{_history_of(batch, history)}\n"
                    f"{ref.name} replied:\n    {_fmt(ra)}\n"
                    f"{test.name} replied:\n    {_fmt(rb)}")
            if ra[-1][0] != b"MN\r\n":
                # Both closed or both timed out the same way: carry on afresh.
                a.reconnect()
                b.reconnect()
            gen.observe(ra)
            for i, c in enumerate(batch):
                stats["cmd:" + c.kind] += 1
                history.append((index + i, c))
            for head, _ in ra[:-1]:
                stats["reply:" + head.split(b" ")[0].strip().decode("latin-1")[:24]] += 1
            index += len(batch)
    finally:
        a.close()
        b.close()
    return stats


def coverage_ok(stats: collections.Counter[str]) -> None:
    """The stream must really exercise hits, stores, cas and errors."""
    for reply in ("VALUE", "STORED", "NOT_STORED", "EXISTS", "NOT_FOUND", "DELETED", "TOUCHED",
                  "ERROR", "CLIENT_ERROR", "VA", "HD", "EN", "NF", "NS", "EX", "OK"):
        assert stats["reply:" + reply] > 0, f"no {reply} reply in the stream: {stats}"
