"""A seeded generator of memcached commands for the differential test.

The generator produces text and meta commands (valid and malformed) over a
small key space so that commands interact. A command is a list of byte parts
and CasRef placeholders: cas values differ between servers, so each server
is fed back its own cas values (see Canon), and replies are compared after
every server's cas values are renamed to canonical tokens in order of first
appearance.
"""

from __future__ import annotations

import base64
import random
import re
import time
from dataclasses import dataclass, field

KEY_MAX = 250  # memcached protocol.txt: "the key must not exceed 250 characters"
LONG_KEY = b"L" * (KEY_MAX - 1) + b"z"
TOO_LONG_KEY = b"T" * (KEY_MAX + 1)
KEYS = [b"k%d" % i for i in range(8)] + [b"num", b"a:b/c-d_e", LONG_KEY]
OVER_ITEM_SIZE_MAX = 1024 * 1024 + 64  # refused by memcached -I 1m and item_size_max 1MiB

_CAS_LINE_CODES = {b"VA", b"HD", b"EN", b"NF", b"NS", b"EX"}
_CAS_TOKEN = re.compile(rb"^c(\d+)$")
_NUMBER = re.compile(rb"^[ \t\n\v\f\r]*\+?([0-9]+)(?:[ \t\n\v\f\r\x00]|$)")


def reads_past_value(v: bytes) -> bool:
    """Whether memcached 1.6.18's incr/decr reads memory after this value.

    safe_strtoull() rejects a result that looks negative as int64 only if
    strchr(value, '-') finds a sign, and the item's value is not NUL
    terminated: for a number in [2^63, 2^64) with neither '-' nor NUL in it,
    the scan runs on through the slab chunk's stale bytes (earlier items'
    data), so memcached answers "non-numeric" or not by leftover memory.
    Such values are fine to store and read, not to do arithmetic on.
    """
    m = _NUMBER.match(v)
    if not m or b"-" in v or b"\x00" in v:
        return False
    return 2**63 <= int(m.group(1)) < 2**64


@dataclass(frozen=True)
class CasRef:
    """A cas value in a command: a canonical token, rendered per server.

    Attributes:
        token: canonical token (b"#3"), or None for `bogus` itself.
        bogus: used when the server never showed this token; far above any
            counter a server reaches in one run, so it never matches.
    """

    token: bytes | None
    bogus: int


Part = bytes | CasRef


@dataclass
class Command:
    """One command: its parts and a short kind name for statistics."""

    kind: str
    parts: list[Part]
    isolate: bool = False

    def render(self, canon: "Canon") -> bytes:
        out = []
        for p in self.parts:
            out.append(canon.raw_for(p) if isinstance(p, CasRef) else p)
        return b"".join(out)

    def show(self) -> str:
        text = b"".join(p if isinstance(p, bytes) else
                        (p.token or b"%d" % p.bogus) for p in self.parts)
        if len(text) > 400:
            text = text[:300] + b"...(%d bytes)..." % len(text) + text[-60:]
        return repr(text)


@dataclass
class Canon:
    """One server's mapping between its raw cas values and canonical tokens."""

    raw2tok: dict[bytes, bytes] = field(default_factory=dict)
    tok2raw: dict[bytes, bytes] = field(default_factory=dict)

    def tok(self, raw: bytes) -> bytes:
        t = self.raw2tok.get(raw)
        if t is None:
            t = b"#%d" % (len(self.raw2tok) + 1)
            self.raw2tok[raw] = t
            self.tok2raw[t] = raw
        return t

    def raw_for(self, ref: CasRef) -> bytes:
        if ref.token is not None and ref.token in self.tok2raw:
            return self.tok2raw[ref.token]
        return b"%d" % ref.bogus

    def line(self, line: bytes) -> bytes:
        """Renames the cas values in one reply line."""
        parts = line[:-2].split(b" ") if line.endswith(b"\r\n") else line.split(b" ")
        if parts[0] == b"VALUE" and len(parts) == 5:
            parts[4] = self.tok(parts[4])
        elif parts[0] in _CAS_LINE_CODES:
            for i in range(1, len(parts)):
                m = _CAS_TOKEN.match(parts[i])
                if m and not (parts[0] == b"VA" and i == 1):
                    parts[i] = b"c" + self.tok(m.group(1))
        else:
            return line
        return b" ".join(parts) + (b"\r\n" if line.endswith(b"\r\n") else b"")

    def apply(self, segs: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        return [(self.line(h), d) for h, d in segs]


class Generator:
    """Seeded command stream. Call observe() with each canonical reply.

    owner_flags: mg also asks t (remaining lifetime) and h (hit before), which a
    caching proxy must get from the owner. t is deterministic only if no item's
    remaining lifetime depends on when each server's clock ticks over (two
    memcacheds' seconds turn at different instants), so TTLs are then only 0
    (never expires: t-1) or already past (the item is gone). l (seconds since
    the last access) turns with the clock in every case and is never asked.
    """

    def __init__(self, seed: int, owner_flags: bool = False) -> None:
        self.r = random.Random(seed)
        self.owner_flags = owner_flags
        self.last_cas: dict[bytes, bytes] = {}
        self.recent_cas: list[bytes] = []
        self.now = int(time.time())
        self.read_in_batch: set[bytes] = set()
        # Keys that may hold a value reads_past_value() is true for (a
        # superset): incr/decr/ma avoid them.
        self.past_value: set[bytes] = set()
        # Keys that may hold a big number ending in a NUL: one arithmetic
        # command is deterministic, its in-place result (space padded over
        # the NUL) may no longer be.
        self.nul_big: set[bytes] = set()

    def begin_batch(self) -> None:
        """Starts a pipelined batch (see arith_key)."""
        self.read_in_batch = set()

    def arith_key(self) -> bytes | None:
        """A key for incr/decr/ma that no earlier command of the batch reads.

        memcached rewrites a shrunk incr/decr result in place, padded with
        spaces, only when no pending reply still references the item, and
        otherwise stores a new unpadded item; which one happens depends on
        socket timing when the same batch read the key before. Keeping such
        keys out makes memcached deterministic: it always pads.
        """
        for _ in range(20):
            k = self.key()
            if k not in self.read_in_batch and k not in self.past_value:
                if k in self.nul_big:
                    self.nul_big.discard(k)
                    self.past_value.add(k)
                return k
        return None

    def stored(self, key: bytes, v: bytes | None, certain: bool) -> None:
        """Tracks a command that may store v (None: an unknown value) at key.

        certain: the command replaces the value whatever the key held (set,
        plain ms, delete); otherwise the old value may remain.
        """
        if certain:
            self.past_value.discard(key)
            self.nul_big.discard(key)
        if v is None or reads_past_value(v):
            self.past_value.add(key)
        elif reads_past_value(v.split(b"\x00", 1)[0]):
            self.nul_big.add(key)

    # ----- random pieces -----

    def key(self) -> bytes:
        return self.r.choice(KEYS)

    def value(self) -> bytes:
        r = self.r.random()
        if r < 0.30:
            return bytes(self.r.choice(b"abcdefghij") for _ in range(self.r.randint(0, 40)))
        if r < 0.65:
            return self.r.choice([b"0", b"1", b"42", b"007", b"99", b"100", b"18446744073709551615",
                                  b"18446744073709551614", b"12345678901234567890123", b"-5",
                                  b"10 ", b"1a", b"18446744073709551615\x00",
                                  b"9223372036854775808\x00", b"18446744073709551614 -"])
        if r < 0.80:
            return self.r.randbytes(self.r.randint(0, 200))
        if r < 0.97:
            return bytes(self.r.choice(b"xyz0123\r\n") for _ in range(self.r.randint(200, 3000)))
        return self.r.randbytes(self.r.randint(3000, 70000))

    def flags(self) -> bytes:
        return b"%d" % self.r.choice([0, 0, 1, 7, 65535, 2**31, 2**32 - 1, self.r.getrandbits(32)])

    def ttl(self) -> bytes:
        """TTLs that cannot expire during a run: 0, large, absolute, negative, past."""
        if self.owner_flags:
            return b"%d" % self.r.choice([0, 0, 0, -1, -self.r.randint(2, 10**6),
                                          self.r.randint(2592001, 10**9)])  # absolute, past
        return b"%d" % self.r.choice([
            0, 0, 0, self.r.randint(3600, 100000), 2592000, self.now + 10**6,
            -1, -self.r.randint(2, 10**6), 2592001, self.r.randint(2592001, 10**9)])

    def lifetime(self) -> int:
        """A positive TTL in seconds that outlasts a run (0, for ever, with owner_flags:
        see the class)."""
        return 0 if self.owner_flags else self.r.randint(3600, 10**5)

    def noreply(self, p: float = 0.15) -> bytes:
        return b" noreply" if self.r.random() < p else b""

    def cas(self, key: bytes) -> CasRef:
        r = self.r.random()
        bogus = self.r.randint(10**15, 10**16)
        if r < 0.55 and key in self.last_cas:
            return CasRef(self.last_cas[key], bogus)
        if r < 0.8 and self.recent_cas:
            return CasRef(self.r.choice(self.recent_cas[-20:]), bogus)
        return CasRef(None, bogus)

    def opaque(self) -> bytes:
        return b"O" + bytes(self.r.choice(b"abcXYZ019") for _ in range(self.r.randint(1, 20)))

    # ----- commands -----

    def storage(self) -> Command:
        cmd = self.r.choice([b"set"] * 4 + [b"add", b"replace", b"append", b"prepend"])
        k, v = self.key(), self.value()
        # append/prepend can make a number of any two parts.
        self.stored(k, v if cmd in (b"set", b"add", b"replace") else None, cmd == b"set")
        head = b"%s %s %s %s %d" % (cmd, k, self.flags(), self.ttl(), len(v))
        return Command(cmd.decode(), [head + self.noreply() + b"\r\n" + v + b"\r\n"])

    def cas_cmd(self) -> Command:
        k, v = self.key(), self.value()
        self.stored(k, v, False)
        head = b"cas %s %s %s %d " % (k, self.flags(), self.ttl(), len(v))
        return Command("cas", [head, self.cas(k), self.noreply() + b"\r\n" + v + b"\r\n"])

    def retrieval(self) -> Command:
        cmd = self.r.choice([b"get", b"get", b"gets", b"gets", b"gat", b"gats"])
        n = self.r.randint(1, 4) if self.r.random() < 0.9 else self.r.randint(10, 40)
        chosen = [self.key() for _ in range(n)]
        self.read_in_batch.update(chosen)
        keys = b" ".join(chosen)
        if cmd in (b"gat", b"gats"):
            return Command(cmd.decode(), [b"%s %s %s\r\n" % (cmd, self.ttl(), keys)])
        return Command(cmd.decode(), [b"%s %s\r\n" % (cmd, keys)])

    def delete(self) -> Command:
        k = self.key()
        tail = self.r.choice([b"", b"", b" 0", b" noreply", b" 0 noreply", b" 5", b" x y"])
        if tail not in (b" 5", b" x y"):
            self.stored(k, b"", True)
        return Command("delete", [b"delete %s%s\r\n" % (k, tail)])

    def arith(self) -> Command:
        cmd = self.r.choice([b"incr", b"decr"])
        key = self.arith_key()
        if key is None:
            return self.touch()
        delta = self.r.choice([b"0", b"1", b"1", b"5", b"100", b"18446744073709551615",
                               b"9223372036854775808", b"abc", b"-1", b"18446744073709551616"])
        if cmd == b"incr" and delta in (b"18446744073709551615", b"9223372036854775808"):
            self.past_value.add(key)
        return Command(cmd.decode(), [b"%s %s %s%s\r\n" % (cmd, key, delta, self.noreply())])

    def touch(self) -> Command:
        return Command("touch", [b"touch %s %s%s\r\n" % (self.key(), self.ttl(), self.noreply())])

    def misc(self) -> Command:
        r = self.r.random()
        if r < 0.3:
            self.past_value.clear()
            self.nul_big.clear()
            return Command("flush_all", [b"flush_all" + self.r.choice([b"", b" 0"]) +
                                         self.noreply(0.3) + b"\r\n"])
        if r < 0.8:
            return Command("verbosity", [b"verbosity %d%s\r\n" % (self.r.randint(0, 1),
                                                                   self.noreply(0.3))])
        return Command("mn", [b"mn\r\n"])

    def _meta_key(self, k: bytes | None = None) -> tuple[bytes, list[bytes]]:
        k = k or self.key()
        if self.r.random() < 0.1:
            return base64.b64encode(k), [b"b"]
        return k, []

    def _pick(self, options: list[bytes], lo: int, hi: int) -> list[bytes]:
        return self.r.sample(options, self.r.randint(lo, min(hi, len(options))))

    def mg(self) -> Command:
        k, extra = self._meta_key()
        self.read_in_batch.add(base64.b64decode(k) if extra else k)
        flags = [b"v", b"v", b"f", b"s", b"k", b"c", b"h", b"q", b"O"]
        if self.owner_flags:
            flags += [b"t", b"t", b"h"]
        opts = self._pick(flags, 0, 5)
        parts: list[Part] = [b"mg " + k]
        for o in extra + opts:
            parts.append(b" " + (self.opaque() if o == b"O" else o))
        r = self.r.random()
        if r < 0.1:
            parts.append(b" T" + self.ttl())
        elif r < 0.15:
            parts.append(b" N%d" % self.lifetime())
        elif r < 0.2:
            parts.append(b" R%d" % self.r.choice([30, 10**7]))
        parts.append(b"\r\n")
        return Command("mg", parts)

    def ms(self) -> Command:
        k, extra = self._meta_key()
        v = self.value()
        parts: list[Part] = [b"ms %s %d" % (k, len(v))]
        opts = self._pick([b"F", b"T", b"C", b"q", b"O", b"k", b"c", b"I", b"M"], 0, 4)
        for o in extra + opts:
            if o == b"F":
                parts.append(b" F" + self.flags())
            elif o == b"T":
                parts.append(b" T" + self.ttl())
            elif o == b"C":
                parts += [b" C", self.cas(k)]
            elif o == b"O":
                parts.append(b" " + self.opaque())
            elif o == b"M":
                parts.append(b" M" + self.r.choice([b"E", b"A", b"P", b"R", b"S", b"e", b"a",
                                                     b"s"]))
                if self.r.random() < 0.2:
                    parts.append(b" N%d" % self.lifetime())
            else:
                parts.append(b" " + o)
        mode = next((p for p in parts if isinstance(p, bytes) and p.startswith(b" M")), b" MS")
        key = base64.b64decode(k) if extra else k
        # (lower-case modes are refused: nothing stored, nothing to track)
        if mode in (b" MA", b" MP"):
            self.stored(key, None, False)
        elif mode in (b" ME", b" MR", b" MS"):
            self.stored(key, v, b"C" not in opts and mode == b" MS")
        parts.append(b"\r\n" + v + b"\r\n")
        return Command("ms", parts)

    def md(self) -> Command:
        k, extra = self._meta_key()
        parts: list[Part] = [b"md " + k]
        opts = self._pick([b"q", b"C", b"I", b"T", b"k", b"O"], 0, 3)
        if b"C" not in opts and b"I" not in opts:
            self.stored(base64.b64decode(k) if extra else k, b"", True)
        for o in extra + opts:
            if o == b"C":
                parts += [b" C", self.cas(k)]
            elif o == b"T":
                parts.append(b" T%d" % self.lifetime())
            elif o == b"O":
                parts.append(b" " + self.opaque())
            else:
                parts.append(b" " + o)
        parts.append(b"\r\n")
        return Command("md", parts)

    def ma(self) -> Command:
        key = self.arith_key()
        if key is None:
            return self.md()
        k, extra = self._meta_key(key)
        parts: list[Part] = [b"ma " + k]
        for o in extra + self._pick([b"N", b"J", b"D", b"T", b"M", b"q", b"O", b"k", b"c",
                                     b"v", b"C"], 0, 5):
            if o == b"N":
                parts.append(b" N%d" % self.r.choice([0, self.lifetime()]))
            elif o == b"J":
                j = self.r.choice([0, 7, 2**64 - 1])
                if j >= 2**63:
                    self.past_value.add(key)
                parts.append(b" J%d" % j)
            elif o == b"D":
                d = self.r.choice([0, 1, 10, 2**64 - 1])
                if d >= 2**63:
                    self.past_value.add(key)
                parts.append(b" D%d" % d)
            elif o == b"T":
                parts.append(b" T%d" % self.lifetime())
            elif o == b"M":
                parts.append(b" M" + self.r.choice([b"I", b"i", b"+", b"D", b"d", b"-"]))
            elif o == b"C":
                parts += [b" C", self.cas(k)]
            elif o == b"O":
                parts.append(b" " + self.opaque())
            else:
                parts.append(b" " + o)
        parts.append(b"\r\n")
        return Command("ma", parts)

    def malformed(self) -> Command:
        k = self.key()
        choices = [
            b"foo\r\n", b"bogus with args\r\n", b"GET k0\r\n", b"getz k0\r\n", b"\r\n",
            b"   \r\n", b"get\r\n", b"set k0\r\n", b"set k0 0 0\r\n", b"incr k0\r\n",
            b"touch k0\r\n", b"cas k0 0 0 1\r\nx\r\n",
            b"set %s abc 0 1\r\nx\r\n" % k, b"set %s 0 abc 1\r\nx\r\n" % k,
            b"set %s 0 0 abc\r\nx\r\n" % k, b"set %s -1 0 1\r\nx\r\n" % k,
            b"set %s 4294967296 0 1\r\nx\r\n" % k,
            b"set %s 0 0 -1\r\n" % k, b"set %s 0 0 3\r\nxxxyy\r\n" % k,
            b"append %s 0 0 2\r\nabcd\r\n" % k, b"incr %s abc\r\n" % k,
            b"decr %s -3\r\n" % k, b"touch %s abc\r\n" % k, b"gat abc %s\r\n" % k,
            b"set %s 0 0 1\r\nx\r\n" % TOO_LONG_KEY, b"delete %s\r\n" % TOO_LONG_KEY,
            b"incr %s 1\r\n" % TOO_LONG_KEY, b"touch %s 10\r\n" % TOO_LONG_KEY,
            b"mg %s v\r\n" % TOO_LONG_KEY, b"ms %s 1\r\nx\r\n" % TOO_LONG_KEY,
            b"mg\r\n", b"ms %s\r\n" % k, b"ms %s abc\r\n" % k, b"ms %s 2 MZ\r\nab\r\n" % k,
            b"ms %s 2\r\nabcd\r\n" % k, b"ma %s Dabc\r\n" % k, b"mg %s v v\r\n" % k,
            b"verbosity\r\n", b"flush_all abc\r\n", b"delete\r\n",
        ]
        if self.r.random() < 0.1:
            # A retrieval with a too-long key: memcached drops every reply
            # still queued on the connection (conn_release_items), including
            # earlier pipelined commands' replies, which depends on timing;
            # such a command is sent alone so only its own replies are at stake.
            line = self.r.choice([b"get %s\r\n", b"gets k0 %s\r\n", b"get k1 %s k2\r\n",
                                  b"gat 0 k3 %s\r\n"]) % TOO_LONG_KEY
            return Command("malformed_get", [line], isolate=True)
        if self.r.random() < 0.05:
            # memcached drops the key's item for a set or an ms too large to
            # store, and keeps it for the other storage commands.
            big = OVER_ITEM_SIZE_MAX
            head = self.r.choice([b"set %s 0 0 %d", b"set %s 0 0 %d", b"add %s 0 0 %d",
                                  b"append %s 0 0 %d", b"ms %s %d", b"ms %s %d MA",
                                  b"ms %s %d q"]) % (k, big)
            if head.startswith((b"set", b"ms")):
                self.stored(k, b"", True)
            return Command("too_large", [head + b"\r\n" + b"B" * big + b"\r\n"])
        return Command("malformed", [self.r.choice(choices)])

    def next(self) -> Command:
        r = self.r.random()
        for limit, make in ((0.24, self.storage), (0.30, self.cas_cmd), (0.50, self.retrieval),
                            (0.56, self.delete), (0.63, self.arith), (0.67, self.touch),
                            (0.69, self.misc), (0.76, self.mg), (0.83, self.ms),
                            (0.87, self.md), (0.92, self.ma)):
            if r < limit:
                return make()
        return self.malformed()

    def observe(self, segs: list[tuple[bytes, bytes]]) -> None:
        """Learns canonical cas tokens (and their keys) from a canonical reply."""
        for head, _ in segs:
            parts = head.split()
            if parts[:1] == [b"VALUE"] and len(parts) == 5:
                self.last_cas[parts[1]] = parts[4]
                self.recent_cas.append(parts[4])
            elif parts[:1] and parts[0] in _CAS_LINE_CODES:
                toks = [p[1:] for p in parts[1:] if p.startswith(b"c#")]
                keys = [p[1:] for p in parts[1:] if p.startswith(b"k")]
                if toks:
                    self.recent_cas.append(toks[0])
                    if keys:
                        key = keys[0]
                        if b"b" in parts[1:]:
                            try:
                                key = base64.b64decode(key)
                            except ValueError:
                                continue
                        self.last_cas[key] = toks[0]
