"""The smartswitch command: exit codes and one-line errors, no tracebacks."""

import errno
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import pytest

from appliance import cli
from appliance.runtime import offline, runner
from appliance.runtime.settings import dataplane_settings
from appliance.storage import serving
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
    serving.prepare_storage(config)
    with pytest.raises(runner.StartError,
                       match=r"storage\.devices\[0\]\.path: .*/dev is not a regular file"):
        offline.provision_storage(config)
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
        # SIGHUP does not pretend to reload: it says so and keeps serving.
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "SIGHUP" not in log.read_text():
            assert time.monotonic() < deadline and proc.poll() is None, log.read_text()
            time.sleep(0.05)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"get k\r\n")
            assert sock.recv(100) == b"VALUE k 0 2\r\nhi\r\nEND\r\n"
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


class FakeDataplane:
    """Stands in for dataplane.fastpath.Dataplane in Supervisor tests."""

    def __init__(self, housekeep_fails_after: int | None = None,
                 worker_fails: bool = False) -> None:
        self.stopped = threading.Event()
        self.housekeeps = 0
        self.housekeep_fails_after = housekeep_fails_after
        self.worker_fails = worker_fails

    def run_worker(self, worker_id: int) -> None:
        if self.worker_fails and worker_id == 1:
            fastpath._check(-errno.EIO, "worker 1")
        self.stopped.wait(10)

    def housekeep(self) -> None:
        self.housekeeps += 1
        if self.housekeep_fails_after is not None and \
                self.housekeeps > self.housekeep_fails_after:
            fastpath._check(-errno.ENOSPC, "housekeeping")  # raises, as C's -ENOSPC would

    def stop(self) -> None:
        self.stopped.set()

    def bound_port(self, udp: bool) -> int | None:
        return None if udp else 4242


def supervise(tmp_path: Path, dp: FakeDataplane, stop_after: float | None = None) -> int:
    settings = dataplane_settings(parse_config("memcached:\n  listen: ::1\n",
                                               base_dir=tmp_path))
    sup = runner.Supervisor(dp, 2)  # type: ignore[arg-type]
    if stop_after is not None:
        threading.Timer(stop_after, sup.request_stop, args=("test",)).start()
    code = sup.serve(settings)
    assert sup.joined
    return code


def test_supervisor_clean_stop(tmp_path: Path, log_lines: list[str]) -> None:
    assert supervise(tmp_path, FakeDataplane(), stop_after=0.35) == 0
    assert log_lines[0].startswith("INFO ready tcp=[::1]:4242 udp=off workers=2 ")
    assert log_lines[-1] == "INFO stopping: test"


def test_supervisor_housekeeping_failure_exits_nonzero(tmp_path: Path,
                                                       log_lines: list[str]) -> None:
    dp = FakeDataplane(housekeep_fails_after=2)
    assert supervise(tmp_path, dp) == 1
    assert dp.housekeeps == 3 and dp.stopped.is_set()
    assert "CRITICAL housekeeping failed: housekeeping: No space left on device; free space " \
        "on the file system or shrink the pool" in log_lines
    assert "ERROR stopping: housekeeping failed" in log_lines


def test_supervisor_worker_failure_exits_nonzero(tmp_path: Path, log_lines: list[str]) -> None:
    assert supervise(tmp_path, FakeDataplane(worker_fails=True)) == 1
    assert any(line.startswith("CRITICAL worker 1 failed") for line in log_lines)


def test_stale_build_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    import dataplane

    fake = types.SimpleNamespace(lib=types.SimpleNamespace(ss_abi_version=lambda: 99), ffi=None)
    monkeypatch.setitem(sys.modules, "dataplane._fastpath", fake)
    monkeypatch.setattr(dataplane, "_fastpath", fake, raising=False)
    monkeypatch.setattr(fastpath, "_lib", None)
    expected = fastpath.EXPECTED_ABI_VERSION
    with pytest.raises(fastpath.DataplaneUnavailable,
                       match=rf"stale build \(ABI 99, this code expects {expected}\); rebuild "
                             r"it with `make build`"):
        fastpath.load()


@pytest.mark.parametrize(("rc", "cls", "text"), [
    (-errno.ENOSPC, fastpath.OutOfSpaceError, "x: No space left on device; free space"),
    (-errno.EIO, fastpath.DeviceIOError, "x: Input/output error; check the device"),
    (-errno.EBUSY, fastpath.StoreBusyError, "x: Device or resource busy; stop the other"),
    (-errno.ENOTSUP, fastpath.DataplaneError, "x: Operation not supported"),
])
def test_errno_table(rc: int, cls: type, text: str) -> None:
    with pytest.raises(cls) as info:
        fastpath._check(rc, "x")
    assert type(info.value) is cls
    assert str(info.value).startswith(text)
    assert info.value.errno == -rc
    assert fastpath._check(7, "x") == 7
