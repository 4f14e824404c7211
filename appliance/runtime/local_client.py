"""Talking to this appliance's own listeners from the same host.

The console's key actions and `smartswitch route` send one memcached command
to the running appliance; the console CLI finds its REST address. Each needs
the address a wildcard listen is reached at, and the first reply line.
"""

from __future__ import annotations

import socket

# A listener on every address is reached through loopback.
_WILDCARD_TO_LOOPBACK = {"0.0.0.0": "127.0.0.1", "::": "::1"}
_REPLY_LINE_MAX = 4096


def reachable_host(listen: str) -> str:
    """The address to connect to for a listener bound to `listen`."""
    return _WILDCARD_TO_LOOPBACK.get(listen, listen)


def first_reply_line(host: str, port: int, command: bytes, timeout: float) -> str:
    """Send one memcached command; its reply's first line (without CRLF).

    Raises:
        OSError: nothing listening, or no answer within timeout.
    """
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(command)
        reply = b""
        while b"\r\n" not in reply and len(reply) < _REPLY_LINE_MAX:
            chunk = sock.recv(_REPLY_LINE_MAX)
            if not chunk:
                break
            reply += chunk
    return reply.split(b"\r\n", 1)[0].decode("utf-8", "replace")
