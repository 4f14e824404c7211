"""Start and stop the processes the integration tests talk to.

Two kinds of server: a real memcached 1.6 (the reference) and the SmartSwitch
appliance (`python -m appliance run --config FILE`). Both are started in their
own session so that stopping them never signals the test runner, both log to
a file under the test's tmp_path, and both are stopped by pid only.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[3]
MEMCACHED_BIN = "/usr/bin/memcached"
READY_RE = re.compile(rb"ready tcp=(\S+):(\d+) udp=(?:(\S+):(\d+)|\S+)")
READY_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 20.0


def free_port() -> int:
    """Returns a port that is free for both TCP and UDP on 127.0.0.1 right now."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            t.bind(("127.0.0.1", 0))
            port = t.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                try:
                    u.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no port free for both TCP and UDP after 50 tries")


def tail(path: Path, limit: int = 8000) -> str:
    """Returns the last `limit` bytes of a log file as text (empty if absent)."""
    try:
        data = path.read_bytes()
    except OSError:
        return ""
    return data[-limit:].decode("utf-8", "replace")


@dataclass
class Server:
    """A running server process and where it listens.

    Attributes:
        name: "memcached" or "appliance", for messages.
        proc: the process.
        host: the address it serves on.
        port: its TCP port.
        udp_port: its UDP port, or None when UDP is off.
        log_path: where its stdout and stderr go.
        config_path: the appliance's config (None for memcached).
    """

    name: str
    proc: subprocess.Popen[bytes]
    host: str
    port: int
    udp_port: int | None
    log_path: Path
    config_path: Path | None = None
    stopped_rc: int | None = field(default=None)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def addr(self) -> tuple[str, int]:
        return (self.host, self.port)

    def log(self) -> str:
        return tail(self.log_path)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def terminate(self, timeout: float = STOP_TIMEOUT_S) -> int:
        """Sends SIGTERM and waits; falls back to SIGKILL. Returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                if self.name == "appliance":
                    # Its SIGUSR1 handler writes every thread's stack to the log.
                    self.proc.send_signal(signal.SIGUSR1)
                    time.sleep(1.0)
                self.proc.kill()
                self.proc.wait(10)
                raise AssertionError(
                    f"{self.name} pid {self.pid} ignored SIGTERM for {timeout}s; "
                    f"killed. Log:\n{self.log()}"
                ) from None
        self.stopped_rc = self.proc.returncode
        return self.proc.returncode

    def kill9(self) -> None:
        """SIGKILL and reap."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self.stopped_rc = self.proc.returncode

    def rss_kib(self) -> int:
        """Resident set size from /proc/PID/status, in KiB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError(f"no VmRSS for pid {self.pid}")


def _wait_tcp_version(host: str, port: int, deadline: float) -> bool:
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=1.0) as s:
                s.sendall(b"version\r\n")
                if s.recv(100).startswith(b"VERSION "):
                    return True
        except OSError:
            time.sleep(0.05)
    return False


def start_memcached(log_dir: Path, extra_args: tuple[str, ...] = ()) -> Server:
    """Starts /usr/bin/memcached on loopback and waits until it answers `version`.

    Args:
        log_dir: directory for its log file.
        extra_args: more memcached options (e.g. ("-I", "2m")).

    Returns:
        The running server; the caller must stop it.
    """
    last_log = ""
    for attempt in range(5):
        port = free_port()
        log_path = log_dir / f"memcached-{port}.log"
        args = [MEMCACHED_BIN, "-l", "127.0.0.1", "-p", str(port), "-U", str(port),
                "-u", "root", "-m", "64", *extra_args]
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        srv = Server("memcached", proc, "127.0.0.1", port, port, log_path)
        if _wait_tcp_version("127.0.0.1", port, time.monotonic() + 10):
            return srv
        srv.kill9()
        last_log = srv.log()
        _ = attempt
    raise AssertionError(f"memcached never answered `version`. Log:\n{last_log}")


def appliance_config(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    """Builds a small test config; `overrides` replace whole sections or keys.

    Keyword names are "section__key" (e.g. memcached__udp_reply_rate="1KiB")
    or "device_size", "segment_size", "hot_tier".
    """
    var = tmp_path / "var"
    cfg: dict[str, Any] = {
        "memcached": {
            "listen": "127.0.0.1",
            "tcp_port": 0,
            "udp_port": 0,
            "workers": 2,
            "max_connections": 4096,
            "idle_timeout": "0s",
            "item_size_max": "1MiB",
            "udp_reply_rate": "4MiB",
            "udp_reply_burst": "512KiB",
        },
        "storage": {
            "dir": str(var),
            "hot_tier": overrides.pop("hot_tier", "8MiB"),
            "flush_interval": "200ms",
            "devices": [{
                "name": "local",
                "kind": "file",
                "path": str(var / "store.dat"),
                "size": overrides.pop("device_size", "64MiB"),
            }],
            "pools": [{
                "name": "items",
                "device": "local",
                "size": "100%",
                "role": "memcached",
                "segment_size": overrides.pop("segment_size", "4MiB"),
            }],
        },
        "logging": {"level": "info"},
        # Tests that want the console turn it on (tests/web/); the default
        # port 8080 would collide between concurrent tests.
        "console": {"enabled": False},
    }
    for name, value in overrides.items():
        section, key = name.split("__", 1)
        cfg[section][key] = value
    return cfg


def write_config(tmp_path: Path, **overrides: Any) -> Path:
    """Writes appliance_config(tmp_path, **overrides) to tmp_path/appliance.yaml."""
    path = tmp_path / "appliance.yaml"
    path.write_text(yaml.safe_dump(appliance_config(tmp_path, **overrides), sort_keys=False))
    return path


def _appliance_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def start_appliance(config_path: Path, log_path: Path | None = None,
                    timeout: float = READY_TIMEOUT_S, prefix: tuple[str, ...] = ()) -> Server:
    """Runs `python -m appliance run --config FILE` and waits for its ready line.

    Args:
        config_path: the YAML config.
        log_path: where stdout/stderr go (appended to, so restarts keep history).
        timeout: seconds to wait for the `ready tcp=... udp=...` line.
        prefix: a command to run it under (e.g. `ip netns exec NS`).

    Returns:
        The running server; the caller must stop it.

    Raises:
        AssertionError: the process exited or never logged its ready line;
            the message holds its log.
    """
    log_path = log_path or config_path.parent / "appliance.log"
    start_offset = log_path.stat().st_size if log_path.exists() else 0
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", "appliance", "run", "--config", str(config_path)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            cwd=config_path.parent, env=_appliance_env(), start_new_session=True)
    deadline = time.monotonic() + timeout
    while True:
        with open(log_path, "rb") as f:
            f.seek(start_offset)
            text = f.read()
        m = READY_RE.search(text)
        if m:
            udp = int(m.group(4)) if m.group(4) else None
            return Server("appliance", proc, m.group(1).decode(), int(m.group(2)),
                          udp, log_path, config_path)
        if proc.poll() is not None:
            raise AssertionError(
                f"appliance exited with {proc.returncode} before its ready line. "
                f"Log:\n{tail(log_path)}")
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait(10)
            raise AssertionError(
                f"appliance logged no ready line within {timeout}s. Log:\n{tail(log_path)}")
        time.sleep(0.05)


def verify_index(config_path: Path, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """Runs `python -m appliance verify-index --config FILE` (appliance stopped)."""
    return subprocess.run(
        [sys.executable, "-m", "appliance", "verify-index", "--config", str(config_path)],
        capture_output=True, text=True, timeout=timeout, cwd=config_path.parent,
        env=_appliance_env(), check=False)
