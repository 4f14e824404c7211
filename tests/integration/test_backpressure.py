"""A client that pipelines many large gets and reads slowly cannot make the
appliance buffer replies without bound: the protocol stops taking commands
once a few MiB of replies are queued and resumes when they drain."""

from __future__ import annotations

import socket
import time

from .conftest import ApplianceFactory

VALUE_BYTES = 900 * 1024
GETS = 300  # 300 x 900 KiB = 264 MiB of replies if nothing held back
DEADLINE_S = 60.0


def test_pipelined_large_gets_keep_memory_bounded(appliance_factory: ApplianceFactory) -> None:
    srv = appliance_factory()
    value = b"v" * VALUE_BYTES
    with socket.create_connection(srv.addr, timeout=10) as s:
        s.sendall(b"set big 0 0 %d\r\n%s\r\n" % (len(value), value))
        assert s.recv(64) == b"STORED\r\n"

    rss_start = srv.rss_kib()
    rss_peak = rss_start
    expected = GETS * (len(b"VALUE big 0 %d\r\n" % VALUE_BYTES) + VALUE_BYTES + 2 + 5)
    received = 0
    tail = b""
    with socket.create_connection(srv.addr, timeout=10) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        s.sendall(b"get big\r\n" * GETS)
        deadline = time.monotonic() + DEADLINE_S
        # Read slowly at first, so replies back up in the server.
        while received < expected and time.monotonic() < deadline:
            chunk = s.recv(256 * 1024)
            if not chunk:
                break
            received += len(chunk)
            tail = (tail + chunk)[-16:]
            if received < expected // 4:
                time.sleep(0.002)
            rss_peak = max(rss_peak, srv.rss_kib())
    assert received == expected, f"got {received} of {expected} reply bytes"
    assert tail.endswith(b"\r\nEND\r\n")
    growth_mib = (rss_peak - rss_start) / 1024
    # One connection may hold the high-water mark of queued output plus one
    # reply and its buffers; 264 MiB would be queued without backpressure.
    assert growth_mib < 48, f"RSS grew {growth_mib:.0f} MiB while a client read slowly"
