"""kill -9 during a write-heavy load: after a restart nothing corrupt is served.

Every value is self-describing (key, sequence number, checksum) and every
value ever sent is remembered per key, so whatever the restarted appliance
serves for a key must be one of the values written for it, whole, with the
flags it was written with.
"""

from __future__ import annotations

import random
import threading
import time
import zlib
from pathlib import Path

from .conftest import ApplianceFactory
from .helpers.mcproto import RawConn
from .helpers.procs import verify_index, write_config

N_KEYS = 2000
MAX_WRITES = 60_000
LOAD_TIME_LIMIT_S = 60.0
KILL_AFTER_WRITES = 10_000
N_WRITERS = 3


def make_value(key: bytes, seq: int, rng: random.Random) -> bytes:
    """key|seq|len|padding|crc32 of all before it."""
    size = rng.choice([20, 100, 1000, 4000, 30000]) + rng.randint(0, 64)
    body = b"%s|%d|%d|" % (key, seq, size)
    pad = max(0, size - len(body))
    body += (b"%x" % (seq * 2654435761 % 2**32)) * (pad // 8 + 1)
    body = body[:len(body) - (len(body) - size)] if len(body) > size else body
    return body + b"|%08x" % zlib.crc32(body)


def check_value(key: bytes, value: bytes) -> str | None:
    """Returns why a value is not a whole, intact value for `key`, or None."""
    body, sep, crc = value.rpartition(b"|")
    if not sep or crc != b"%08x" % zlib.crc32(body):
        return "checksum mismatch"
    if not body.startswith(key + b"|"):
        return "value of another key"
    return None


class Writer(threading.Thread):
    """Pipelines sets over one connection until stopped or the server dies."""

    def __init__(self, addr: tuple[str, int], wid: int, written: dict[bytes, dict[bytes, int]],
                 lock: threading.Lock, stop: threading.Event, counter: list[int]) -> None:
        super().__init__(daemon=True)
        self.addr, self.wid, self.written, self.lock = addr, wid, written, lock
        self.stop, self.counter = stop, counter
        self.error: BaseException | None = None

    def run(self) -> None:
        rng = random.Random(self.wid)
        start = time.monotonic()
        seq = self.wid * 10**9
        try:
            conn = RawConn(self.addr, timeout=10)
        except OSError as exc:
            self.error = exc
            return
        try:
            while not self.stop.is_set() and time.monotonic() - start < LOAD_TIME_LIMIT_S:
                batch = []
                with self.lock:
                    if self.counter[0] >= MAX_WRITES:
                        return
                    for _ in range(20):
                        seq += 1
                        key = b"c%d" % rng.randrange(N_KEYS)
                        value = make_value(key, seq, rng)
                        flags = seq % 2**32
                        self.written.setdefault(key, {})[value] = flags
                        batch.append(b"set %s %d 0 %d\r\n%s\r\n" % (key, flags, len(value), value))
                    self.counter[0] += len(batch)
                conn.send(b"".join(batch))
                for _ in batch:
                    line = conn.read_line()
                    if line != b"STORED\r\n":
                        self.error = AssertionError(f"set answered {line!r}")
                        return
        except (OSError, AssertionError) as exc:
            if not self.stop.is_set():
                self.error = exc
        finally:
            conn.close()


def test_kill9_during_writes_serves_nothing_corrupt(tmp_path: Path,
                                                    appliance_factory: ApplianceFactory) -> None:
    config = write_config(tmp_path, device_size="256MiB", segment_size="2MiB", hot_tier="8MiB")
    srv = appliance_factory(config)
    written: dict[bytes, dict[bytes, int]] = {}
    lock = threading.Lock()
    stop = threading.Event()
    counter = [0]
    writers = [Writer(srv.addr, w, written, lock, stop, counter) for w in range(N_WRITERS)]
    for w in writers:
        w.start()
    deadline = time.monotonic() + LOAD_TIME_LIMIT_S
    while counter[0] < KILL_AFTER_WRITES and time.monotonic() < deadline:
        assert all(w.error is None for w in writers), [w.error for w in writers]
        time.sleep(0.05)
    assert counter[0] >= KILL_AFTER_WRITES, f"only {counter[0]} writes before the deadline"
    stop.set()
    srv.kill9()  # in the middle of the load: the writers are still sending
    for w in writers:
        w.join(15)
        assert not w.is_alive(), "a writer did not notice the server died"

    srv2 = appliance_factory(config)
    bad: list[str] = []
    served = 0
    with RawConn(srv2.addr, timeout=30) as c:
        keys = sorted(written)
        for lo in range(0, len(keys), 100):
            chunk = keys[lo:lo + 100]
            c.send(b"get " + b" ".join(chunk) + b"\r\n")
            while True:
                line = c.read_line()
                if line == b"END\r\n":
                    break
                _, key, flags, size = line.split()
                value = c.read_block(line, time.monotonic() + 30)[:-2]
                assert len(value) == int(size)
                served += 1
                why = check_value(key, value)
                if why is None and value not in written.get(key, {}):
                    why = "never written for this key"
                if why is None and written[key][value] != int(flags):
                    why = f"flags {int(flags)} but written with {written[key][value]}"
                if why:
                    bad.append(f"{key!r}: {why}: {value[:80]!r}")
        # The restarted appliance still takes writes.
        assert c.set(b"after-crash", b"ok") == b"STORED\r\n"
        assert c.get(b"after-crash") == b"ok"
    assert not bad, f"{len(bad)} bad values after kill -9 (first 10):\n" + "\n".join(bad[:10])
    assert served > 0, "nothing survived the crash; a crash should not lose flushed segments"
    assert srv2.terminate() == 0
    res = verify_index(config)
    assert res.returncode == 0, f"verify-index exited {res.returncode}:\n{res.stdout}\n{res.stderr}"
