"""Start-up rules of the console in the real `smartswitch run` process."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import yaml
from integration.helpers.procs import REPO_ROOT, appliance_config


def run(tmp_path: Path, console: dict[str, object]) -> subprocess.CompletedProcess[str]:
    cfg = appliance_config(tmp_path)
    cfg["console"] = console
    path = tmp_path / "appliance.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return subprocess.run([sys.executable, "-m", "appliance", "run", "--config", str(path)],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path,
                          env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"},
                          check=False)


def test_non_loopback_console_without_auth_is_refused(tmp_path: Path) -> None:
    r = run(tmp_path, {"listen": "0.0.0.0:0"})
    assert r.returncode == 2
    assert "console.listen: the console refuses to listen on 0.0.0.0:0" in r.stderr
    assert ":" in r.stderr.split("console.listen")[0]  # file:line first


def test_console_port_in_use_stops_start_up(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = run(tmp_path, {"listen": f"127.0.0.1:{port}"})
    assert r.returncode == 2
    assert f"console.listen 127.0.0.1:{port}: cannot listen" in r.stderr
    assert " ready tcp=" not in r.stderr
