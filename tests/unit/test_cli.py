"""The smartswitch command: exit codes and one-line errors, no tracebacks."""

import os
import re
import signal
import socket
import time
import subprocess
import sys
from pathlib import Path

import pytest

from appliance import cli, runner
from appliance.config import parse_config
from dataplane import fastpath

REPO = Path(__file__).resolve().parents[2]


def smartswitch(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "appliance", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def test_check_default_yaml_succeeds() -> None:
    result = smartswitch("check", "configs/default.yaml")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "configs/default.yaml: ok"
    assert lines[1].startswith("memcached tcp=127.0.0.1:11211 udp=127.0.0.1:11211 workers=auto")
    assert len(lines) == 2
    assert result.stderr == ""


def test_check_bad_file_exits_2_with_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("memcached:\n  listen: 127.0.0.1\n  tcp_port: lots\n")
    result = smartswitch("check", str(bad))
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"{bad}:3: memcached.tcp_port: expected a port number from 0 to 65535, got 'lots'"]


@pytest.mark.parametrize(("content", "fragment"), [
    (None, "no such file"),
    ("memcached:\n\tworkers: 2\n", ":2: YAML syntax error"),
    ("storage:\n  pools:\n    - name: p\n      device: nowhere\n",
     ":4: storage.pools[0].device: expected the name of a device"),
])
def test_errors_are_one_line_without_traceback(tmp_path: Path, content: str | None,
                                               fragment: str) -> None:
    path = tmp_path / "c.yaml"
    if content is not None:
        path.write_text(content)
    for args in (("check", str(path)), ("run", "--config", str(path)),
                 ("verify-index", "--config", str(path))):
        result = smartswitch(*args)
        assert result.returncode == 2, args
        assert "Traceback" not in result.stderr
        assert len(result.stderr.splitlines()) == 1, result.stderr
        assert fragment in result.stderr


def test_check_without_subcommand_is_usage_error() -> None:
    result = smartswitch()
    assert result.returncode == 2
    assert "usage: smartswitch" in result.stderr


def test_main_returns_exit_code_in_process(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                           ) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("logging:\n  level: loud\n")
    assert cli.main(["check", str(bad)]) == 2
    assert capsys.readouterr().err.startswith(f"{bad}:2: logging.level:")
    assert cli.main(["check", str(REPO / "configs" / "default.yaml")]) == 0


def test_verify_index_without_store_refuses(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("storage:\n  dir: ./nothing-here\n")
    result = smartswitch("verify-index", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    # Either the build is missing or there is no store: both say so in one line.
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert not (tmp_path / "nothing-here").exists()


def test_unusable_device_is_a_clear_start_error(tmp_path: Path) -> None:
    (tmp_path / "dev").mkdir()
    config = parse_config("storage:\n  dir: s\n  devices:\n    - {name: d, path: dev, size: 1GiB}"
                          "\n  pools:\n    - {name: p, device: d}\n", base_dir=tmp_path)
    with pytest.raises(runner.StartError,
                       match=r"storage\.devices\[0\]\.path: .*/dev is not a regular file"):
        runner.prepare_storage(config)
    assert (tmp_path / "s" / "index").is_dir()


def test_endpoint_brackets_ipv6() -> None:
    assert runner.endpoint("::1", 11211) == "[::1]:11211"
    assert runner.endpoint("127.0.0.1", 5) == "127.0.0.1:5"
    assert runner.endpoint("127.0.0.1", None) == "off"


def _built() -> bool:
    try:
        fastpath.load()
    except fastpath.DataplaneError:
        return False
    return True


needs_dataplane = pytest.mark.skipif(not _built(), reason="dataplane._fastpath not built "
                                     "(`make build`); CI builds it")

READY = re.compile(r"ready tcp=127\.0\.0\.1:(\d+) udp=127\.0\.0\.1:(\d+)")


def write_small_config(tmp_path: Path, tcp_port: int = 0, name: str = "c.yaml") -> Path:
    path = tmp_path / name
    path.write_text(
        f"memcached:\n  tcp_port: {tcp_port}\n  udp_port: 0\n  workers: 1\n"
        "storage:\n  dir: ./var\n  hot_tier: 1MiB\n  devices:\n"
        "    - {name: d, path: ./var/store.dat, size: 16MiB}\n"
        "  pools:\n    - {name: p, device: d, segment_size: 2MiB}\n")
    return path


@needs_dataplane
def test_run_serves_until_sigterm_then_verify_index(tmp_path: Path) -> None:
    config = write_small_config(tmp_path)
    log = tmp_path / "run.log"
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "appliance", "run", "--config",
                                 str(config)], cwd=tmp_path, env=env, stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 20
        while not (m := READY.search(log.read_text())):
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        port = int(m.group(1))
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"set k 0 0 2\r\nhi\r\n")
            assert sock.recv(100) == b"STORED\r\n"
        # While it runs the store is locked: a second opener is refused.
        busy = smartswitch("verify-index", "--config", str(config), cwd=tmp_path)
        assert busy.returncode == 2
        assert "in use" in busy.stderr and len(busy.stderr.splitlines()) == 1
        # So is a second appliance on the same port.
        other = write_small_config(tmp_path, tcp_port=port, name="other.yaml")
        clash = smartswitch("run", "--config", str(other), cwd=tmp_path / "var")
        assert clash.returncode == 2
        assert f"127.0.0.1:{port}" in clash.stderr and "Traceback" not in clash.stderr
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    text = log.read_text()
    assert len(READY.findall(text)) == 1
    assert "stopping: SIGTERM" in text and text.rstrip().endswith("stopped")
    verified = smartswitch("verify-index", "--config", str(config), cwd=tmp_path)
    assert verified.returncode == 0, verified.stderr
    assert "checked 1 entries, 0 failed" in verified.stdout
