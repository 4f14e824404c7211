"""The smartswitch command: exit codes and one-line errors, no tracebacks."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from appliance import cli, runner
from appliance.config import parse_config

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


def test_store_lock_refuses_a_second_holder(tmp_path: Path) -> None:
    with runner.StoreLock(tmp_path):
        with pytest.raises(runner.StartError, match=f"in use by another smartswitch "
                                                    f"\\(pid {os.getpid()}\\)"):
            with runner.StoreLock(tmp_path):
                pass
    with runner.StoreLock(tmp_path):  # released on exit
        pass


def test_port_in_use_is_a_clear_start_error(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        config = parse_config(f"memcached:\n  tcp_port: {port}\n  udp_port: null\n",
                              base_dir=tmp_path)
        with pytest.raises(runner.StartError) as info:
            runner.check_ports_free(config)
    assert str(info.value) == (f"memcached.tcp_port: TCP 127.0.0.1:{port} is already in use by "
                               f"another process; stop it or choose another port (0 picks a "
                               f"free one)")


def test_udp_port_in_use_is_a_clear_start_error(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
        config = parse_config(f"memcached:\n  tcp_port: 0\n  udp_port: {port}\n",
                              base_dir=tmp_path)
        with pytest.raises(runner.StartError, match=r"memcached\.udp_port: UDP 127\.0\.0\.1:"):
            runner.check_ports_free(config)


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
