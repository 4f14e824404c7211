"""Fixtures for the console tests: a real appliance in this process, and its console.

The API tests need the aiohttp application in-process (aiohttp's test
client), so ``Appliance`` builds what ``appliance.runtime.runner.run`` builds, with
the real C data plane, its worker threads serving memcached on a free
loopback port, and the control facade; only the signal handling and the
ready line are left out. Proxy-mode fixtures put real memcached back ends
behind it. (This directory has no __init__.py: a package named ``web`` here
would shadow the console's own ``web`` package.)
"""

from __future__ import annotations

import http.client
import logging
import socket
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from integration.helpers.procs import (  # noqa: E402
    Server,
    appliance_config,
    start_memcached,
)

from appliance.runtime import offline  # noqa: E402
from appliance.runtime.settings import dataplane_settings  # noqa: E402
from appliance.storage import provision, serving  # noqa: E402
from appliance.config import passwords  # noqa: E402
from appliance.proxy.health import HealthMonitor  # noqa: E402
from appliance.config import load_config  # noqa: E402
from appliance.runtime.control import Control, EventLog  # noqa: E402
from appliance.runtime.reload import Reloader  # noqa: E402
from dataplane.fastpath import Dataplane  # noqa: E402

PASSWORD = "correct horse battery staple"
TOKEN = "test-token-0123456789abcdefghij"
# Cheap scrypt parameters: tests log in many times on a shared 2-core box.
PASSWORD_HASH = passwords.hash_password(PASSWORD, log2_n=10)
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


@dataclass
class Appliance:
    """A running appliance in this process."""

    config_path: Path
    dp: Dataplane
    control: Control
    threads: list[threading.Thread]
    tcp_port: int
    backends: list[Server] = field(default_factory=list)
    objects_port: int | None = None

    def mc(self, payload: bytes, expect: bytes = b"\r\n") -> bytes:
        """Send memcached text to the appliance; read until expect ends the reply."""
        with socket.create_connection(("127.0.0.1", self.tcp_port), timeout=5) as s:
            s.sendall(payload)
            data = b""
            while not data.endswith(expect):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            return data

    def http(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        """One object request to the appliance's HTTP listener: (status, body)."""
        assert self.objects_port is not None, "this appliance serves no objects"
        conn = http.client.HTTPConnection("127.0.0.1", self.objects_port, timeout=5)
        try:
            conn.request(method, path, body=body)
            r = conn.getresponse()
            return r.status, r.read()
        finally:
            conn.close()

    def stop(self) -> None:
        logging.getLogger("smartswitch").removeHandler(self.control.events_log)
        self.dp.stop()
        for t in self.threads:
            t.join(10)
        self.dp.destroy()


def with_objects(cfg: dict[str, Any], buckets: tuple[str, ...] = ("default",)) -> None:
    """Give a test config an objects pool beside the items pool, and an HTTP listener."""
    storage = cfg["storage"]
    storage["devices"][0]["size"] = "128MiB"
    storage["pools"] = [
        {"name": "items", "device": "local", "size": "50%", "segment_size": "4MiB"},
        {"name": "objects", "device": "local", "size": "50%", "role": "objects",
         "segment_size": "4MiB"}]
    cfg["objects"] = {"listen": "127.0.0.1:0", "buckets": [{"name": b} for b in buckets]}


def write_config(tmp_path: Path, *, auth: bool = True, backends: list[Server] | None = None,
                 objects: bool = False, **extra: Any) -> Path:
    cfg = appliance_config(tmp_path, device_size="32MiB", segment_size="2MiB",
                           memcached__udp_port=None)
    if objects:
        with_objects(cfg, ("default", "media"))
    cfg["console"] = {"enabled": True, "listen": "127.0.0.1:0"}
    if auth:
        cfg["console"]["auth"] = {"password_hash": PASSWORD_HASH, "tokens": [TOKEN]}
    if backends:
        cfg["backends"] = [{"name": f"mc{i + 1}", "host": "127.0.0.1", "port": b.port}
                           for i, b in enumerate(backends)]
        cfg["backend_defaults"] = {"retry_after": "60s"}
    cfg.update(extra)
    path = tmp_path / "appliance.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def start(config_path: Path) -> Appliance:
    """What appliance.runtime.runner.run does, minus signals: data plane, workers, control."""
    config = load_config(config_path, base_dir=config_path.parent)
    serving.prepare_storage(config)
    layout = offline.provision_storage(config)
    pool = config.storage.memcached_pool
    settings = dataplane_settings(config, region=provision.memcached_region(layout, config),
                                  capacity=layout.devices[pool.device],
                                  objects=serving.objects_settings(config, layout))
    dp = Dataplane.create(settings)
    monitor = HealthMonitor(dp, config.all_backends) if config.proxy else None
    reloader = Reloader(dp, config, monitor, base_dir=config_path.parent)
    reloader.apply_initial()
    threads = [threading.Thread(target=dp.run_worker, args=(i,), daemon=True)
               for i in range(settings.workers)]
    for t in threads:
        t.start()
    events = EventLog()
    logger = logging.getLogger("smartswitch")
    logger.addHandler(events)  # as runner.run does
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    control = Control(dp, reloader, monitor, events)
    port = dp.bound_port(False)
    assert port is not None
    return Appliance(config_path, dp, control, threads, port, objects_port=dp.objects_port())


@pytest.fixture
def appliance(tmp_path: Path) -> Iterator[Appliance]:
    """Standalone, with a password and a token configured."""
    a = start(write_config(tmp_path))
    try:
        yield a
    finally:
        a.stop()


@pytest.fixture
def open_appliance(tmp_path: Path) -> Iterator[Appliance]:
    """Standalone, loopback, no auth configured."""
    a = start(write_config(tmp_path, auth=False))
    try:
        yield a
    finally:
        a.stop()


@pytest.fixture
def objects_appliance(tmp_path: Path) -> Iterator[Appliance]:
    """Standalone with auth, serving objects in two local buckets (default, media)."""
    a = start(write_config(tmp_path, objects=True))
    try:
        yield a
    finally:
        a.stop()


@pytest.fixture
def proxy_appliance(tmp_path: Path) -> Iterator[Appliance]:
    """Proxy mode in front of two real memcached back ends."""
    servers = [start_memcached(tmp_path), start_memcached(tmp_path)]
    try:
        a = start(write_config(tmp_path, backends=servers))
        a.backends = servers
        try:
            yield a
        finally:
            a.stop()
    finally:
        for s in servers:
            s.kill9()
