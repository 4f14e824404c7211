"""Object requests in switch mode: the objects listener is a kernel socket on the
service address, reached through the exception path (the tap) like TCP memcached,
while the fast path keeps answering memcached over UDP."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable

import pytest

from .helpers.netns import VIP
from .test_switch import OBJECTS_PORT, Rig, rig  # noqa: F401  (rig: a fixture)

pytestmark = [pytest.mark.netns, pytest.mark.dpdk]


def http(r: Rig, request: bytes) -> bytes:
    """One request from the client namespace; the whole answer (Connection: close)."""
    s = r.lab.socket("cl", socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(10)
    try:
        s.connect((VIP, OBJECTS_PORT))
        s.sendall(request)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out
    finally:
        s.close()


def test_objects_through_the_exception_path(rig: Callable[..., Rig]) -> None:
    r = rig("l3", storage={"objects": True})
    body = os.urandom(300_000)
    put = http(r, b"PUT /default/sw HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(body) + body)
    assert put.startswith(b"HTTP/1.1 200 "), put[:200]
    got = http(r, b"GET /default/sw HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, _, data = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and data == body, head
    # The fast path still answers memcached over UDP beside it.
    assert r.tcp(VIP, b"set sw:k 0 0 2\r\nhi\r\n") == b"STORED\r\n"
    reply, _ = r.get(b"get sw:k\r\n")
    assert reply == b"VALUE sw:k 0 2\r\nhi\r\nEND\r\n"
