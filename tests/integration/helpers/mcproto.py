"""A raw memcached text/meta protocol connection that reads replies by framing.

Every read has a deadline, so a server that hangs fails the test with a
message instead of blocking the run.
"""

from __future__ import annotations

import socket
import time
import weakref

DEFAULT_TIMEOUT_S = 10.0

# Connections not closed yet. A test that fails part-way leaves its own open,
# and the socket's ResourceWarning (an error under filterwarnings) would then
# fail whichever later test the garbage collector happens to run in:
# close_opened_since closes them at the failing test's own teardown.
_open: "weakref.WeakSet[RawConn]" = weakref.WeakSet()


class ReplyTimeout(AssertionError):
    """The server did not complete a reply in time."""


class Closed(AssertionError):
    """The server closed the connection before completing a reply."""


def open_conns() -> set[RawConn]:
    """The connections open now."""
    return set(_open)


def close_opened_since(before: set[RawConn]) -> None:
    """Close every connection opened after `before` was taken and still open."""
    for conn in open_conns() - before:
        conn.close()


class RawConn:
    """One TCP connection to a memcached-compatible server.

    Args:
        addr: (host, port).
        timeout: default seconds allowed for one reply.
    """

    def __init__(self, addr: tuple[str, int], timeout: float = DEFAULT_TIMEOUT_S) -> None:
        self.addr = addr
        self.timeout = timeout
        self.sock = socket.create_connection(addr, timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.eof = False
        _open.add(self)

    def close(self) -> None:
        self.sock.close()
        _open.discard(self)

    def __enter__(self) -> "RawConn":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self, deadline: float) -> None:
        if self.eof:
            raise Closed(f"{self.addr}: connection closed; unread {bytes(self.buf)[:200]!r}")
        left = deadline - time.monotonic()
        if left <= 0:
            raise ReplyTimeout(f"{self.addr}: no complete reply in time; "
                               f"have {bytes(self.buf)[:300]!r}")
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(262144)
        except socket.timeout:
            raise ReplyTimeout(f"{self.addr}: no complete reply in time; "
                               f"have {bytes(self.buf)[:300]!r}") from None
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.eof = True
            raise Closed(f"{self.addr}: connection closed; unread {bytes(self.buf)[:200]!r}")
        self.buf += chunk

    def read_line(self, deadline: float | None = None) -> bytes:
        """Returns one line including its \\r\\n."""
        deadline = deadline or time.monotonic() + self.timeout
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line = bytes(self.buf[:i + 2])
                del self.buf[:i + 2]
                return line
            self._fill(deadline)

    def read_exact(self, n: int, deadline: float | None = None) -> bytes:
        deadline = deadline or time.monotonic() + self.timeout
        while len(self.buf) < n:
            self._fill(deadline)
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def read_block(self, header: bytes, deadline: float) -> bytes:
        """If `header` announces a data block (VALUE/VA), reads and returns it."""
        parts = header.split()
        if parts[:1] == [b"VALUE"] and len(parts) >= 4 and parts[3].isdigit():
            return self.read_exact(int(parts[3]) + 2, deadline)
        if parts[:1] == [b"VA"] and len(parts) >= 2 and parts[1].isdigit():
            return self.read_exact(int(parts[1]) + 2, deadline)
        return b""

    def read_segments_until(self, terminators: tuple[bytes, ...],
                            timeout: float | None = None) -> list[tuple[bytes, bytes]]:
        """Reads (line, data-block) pairs until a line in `terminators`.

        Returns:
            Every (header line, data block or b"") read, the terminator last.
        """
        deadline = time.monotonic() + (timeout or self.timeout)
        out: list[tuple[bytes, bytes]] = []
        while True:
            line = self.read_line(deadline)
            out.append((line, self.read_block(line, deadline)))
            if line in terminators:
                return out

    def read_until_mn(self, timeout: float | None = None,
                      count: int = 1) -> list[tuple[bytes, bytes]]:
        """Reads every reply up to and including the `count`-th `MN` line."""
        out: list[tuple[bytes, bytes]] = []
        deadline = time.monotonic() + (timeout or self.timeout)
        for _ in range(count):
            out += self.read_segments_until((b"MN\r\n",), max(0.001, deadline - time.monotonic()))
        return out

    def call(self, data: bytes, timeout: float | None = None) -> bytes:
        """Sends `data` plus an `mn` sentinel; returns the replies before `MN`."""
        self.send(data + b"mn\r\n")
        segs = self.read_until_mn(timeout)
        return b"".join(h + d for h, d in segs[:-1])

    def cmd(self, line: bytes, timeout: float | None = None) -> bytes:
        """Sends one command line (\\r\\n added) and returns its one-line reply."""
        self.send(line + b"\r\n")
        return self.read_line(time.monotonic() + (timeout or self.timeout))

    def counters(self) -> dict[str, int]:
        """`stats`, the numeric figures only, by name."""
        self.send(b"stats\r\n")
        out: dict[str, int] = {}
        while True:
            line = self.read_line()
            if line == b"END\r\n":
                return out
            _, name, value = line.split(b" ", 2)
            if value.strip().isdigit():
                out[name.decode()] = int(value)

    def get(self, key: bytes) -> bytes | None:
        """Plain `get`; returns the value or None."""
        self.send(b"get " + key + b"\r\n")
        deadline = time.monotonic() + self.timeout
        line = self.read_line(deadline)
        if line == b"END\r\n":
            return None
        assert line.startswith(b"VALUE "), line
        data = self.read_block(line, deadline)
        end = self.read_line(deadline)
        assert end == b"END\r\n", end
        return data[:-2]

    def set(self, key: bytes, value: bytes, flags: int = 0, ttl: int = 0) -> bytes:
        """Plain `set`; returns the reply line."""
        self.send(b"set %s %d %d %d\r\n%s\r\n" % (key, flags, ttl, len(value), value))
        return self.read_line()

    def wait_closed(self, timeout: float) -> bool:
        """Reads and discards until EOF; True if the server closed within timeout."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                self._fill(deadline)
                self.buf.clear()
        except Closed:
            return True
        except ReplyTimeout:
            return False


def round_trip(addr: tuple[str, int], tag: str = "probe") -> None:
    """Asserts a fresh client can set and get a key (the server still serves)."""
    safe = "".join(ch if ch.isalnum() else "-" for ch in tag)
    key = f"rt:{safe}:{time.monotonic_ns()}".encode()
    value = b"v-" + key
    with RawConn(addr, timeout=10) as c:
        reply = c.set(key, value, flags=7)
        assert reply == b"STORED\r\n", f"round trip after {tag}: set answered {reply!r}"
        got = c.get(key)
        assert got == value, f"round trip after {tag}: get answered {got!r}"
