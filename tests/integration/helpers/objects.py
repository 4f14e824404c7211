"""An appliance serving object requests, and small HTTP helpers for the object tests."""

from __future__ import annotations

import http.client
import re
import socket
from pathlib import Path
from typing import Any

import yaml

from .procs import Server, appliance_config, start_appliance

OBJECTS_RE = re.compile(r"objects=http://127\.0\.0\.1:(\d+)/")


def objects_config(tmp_path: Path, device_size: str = "256MiB", items: str = "32MiB",
                   objects_size: str = "200MiB",
                   buckets: tuple[str | dict[str, Any], ...] = ("default", "photos"),
                   device: Path | None = None, segment_size: str = "4MiB",
                   **objects: Any) -> Path:
    """A config with a small items pool and most of the device for objects; with
    `device`, the store is there and opened O_DIRECT (device reads bypass the page
    cache, so chunk reads go through the worker's io_uring)."""
    cfg = appliance_config(tmp_path, device_size=device_size)
    if device is not None:
        cfg["storage"]["devices"][0].update({"path": str(device), "direct_io": True})
    cfg["storage"]["pools"] = [
        {"name": "items", "device": "local", "size": items, "segment_size": "4MiB"},
        {"name": "objects", "device": "local", "size": objects_size, "role": "objects",
         "segment_size": segment_size},
    ]
    cfg["objects"] = {"listen": "127.0.0.1:0",
                      "buckets": [b if isinstance(b, dict) else {"name": b} for b in buckets],
                      **objects}
    path = tmp_path / "appliance.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def start_objects(config: Path, timeout: float = 60) -> tuple[Server, int]:
    """The appliance and its objects port (from the ready line)."""
    srv = start_appliance(config, timeout=timeout)
    found = OBJECTS_RE.findall(srv.log())  # the log keeps earlier runs: the last one
    assert found, srv.log()
    return srv, int(found[-1])


def request(port: int, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """One request on a fresh connection: (status, headers lower-cased, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data
    finally:
        conn.close()


def raw(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send bytes as they are; everything the server answers until it closes or idles."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        out = b""
        while True:
            try:
                got = s.recv(65536)
            except TimeoutError:
                break
            if not got:
                break
            out += got
        return out


def statuses(reply: bytes) -> list[int]:
    """The status codes of every response in a byte stream, in order."""
    return [int(m) for m in re.findall(rb"HTTP/1\.1 (\d{3}) ", reply)]
