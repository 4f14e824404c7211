"""Reload decisions, routing tables, the health monitor: pure logic with fake data planes."""

import threading
from pathlib import Path
from typing import Any

import pytest

from appliance.proxy import routing
from appliance.runtime import reload
from appliance.proxy.health import HealthMonitor
from appliance.config import Config, parse_config
from appliance.config.yaml_source import ConfigError
from dataplane import fastpath

BASE = """\
memcached:
  tcp_port: 11211
  workers: 2
backends:
  - {name: mc1, host: 127.0.0.1, port: 11212}
  - {name: mc2, host: 127.0.0.1, port: 11213, failure_policy: failover, failover_pool: spare}
spare_pools:
  spare:
    - {name: s1, host: 127.0.0.1, port: 11300}
"""


def cfg(text: str, tmp_path: Path, source: str | None = None) -> Config:
    return parse_config(text, source, base_dir=tmp_path)


# ------------------------------------------------------------ routing table


def test_routing_settings_indexes_rings_and_enums(tmp_path: Path) -> None:
    config = cfg(BASE + "routing:\n  hash: fnv1a_64\n  admission: never\n"
                 "  local_ttl_max: 2m\n  allow_flush_all: true\n", tmp_path)
    table = routing.routing_settings(config, {("mc2", "127.0.0.1", 11213): "down"})
    assert table is not None
    assert [b.name for b in table.backends] == ["mc1", "mc2", "s1"]
    mc1, mc2, s1 = table.backends
    assert (mc1.policy, mc1.failover_ring, mc1.initial_state) == (0, -1, 0)
    assert (mc2.policy, mc2.failover_ring, mc2.initial_state) == (2, 1, 1)  # failover, down
    assert (s1.connect_timeout_ms, s1.request_timeout_ms, s1.failure_limit) == (200, 500, 3)
    assert [r.name for r in table.rings] == ["backends", "spare"]
    primary, spare = table.rings
    assert {i for _, i in primary.points} == {0, 1}
    assert {i for _, i in spare.points} == {2}
    assert list(primary.points) == sorted(primary.points)
    assert len(primary.points) == 320  # 160 per equal-weight back end
    assert (table.hash, table.admission, table.local_ttl_max_s) == (4, 2, 120)
    assert (table.admission_window_ms, table.admission_max_bytes) == (10_000, 256 * 1024)
    assert table.allow_flush_all is True
    assert routing.routing_settings(cfg("", tmp_path)) is None


def test_modula_rings_list_members(tmp_path: Path) -> None:
    config = cfg(BASE + "routing:\n  distribution: modula\n", tmp_path)
    table = routing.routing_settings(config)
    assert table is not None
    assert [r.members for r in table.rings] == [(0, 1), (2,)]
    assert table.rings[0].distribution == 1


def test_latency_percentile_reads_bucket_upper_bounds() -> None:
    hist = [0] * 32
    assert fastpath.latency_percentile(hist, 0.5) == 0
    hist[3] = 90   # < 8 us
    hist[10] = 10  # < 1024 us
    assert fastpath.latency_percentile(hist, 0.5) == 8
    assert fastpath.latency_percentile(hist, 0.9) == 8
    assert fastpath.latency_percentile(hist, 0.99) == 1024


# ---------------------------------------------------------- reload decisions


@pytest.mark.parametrize(("edit", "path", "fragment"), [
    (("tcp_port: 11211", "tcp_port: 11311"), "memcached.tcp_port", "(11211 -> 11311)"),
    (("workers: 2", "workers: 4"), "memcached.workers", "(2 -> 4)"),
    (("workers: 2", "workers: 2\n  listen: ::1"), "memcached.listen", "(127.0.0.1 -> ::1)"),
    (("memcached:", "storage:\n  hot_tier: 1MiB\nmemcached:"), "storage.hot_tier",
     "(67108864 -> 1048576)"),
    (("memcached:", "objects:\n  listen: 127.0.0.1:9091\nmemcached:"), "objects.listen[1]",
     "(8081 -> 9091)"),
])
def test_fixed_settings_are_refused_by_name(tmp_path: Path, edit: tuple[str, str], path: str,
                                            fragment: str) -> None:
    old = cfg(BASE, tmp_path)
    new = cfg(BASE.replace(*edit), tmp_path)
    err = reload.refused_change(old, new)
    assert err is not None and err.path == path
    assert fragment in err.message and "restart smartswitch" in err.message


def test_segment_size_is_fixed(tmp_path: Path) -> None:
    storage = ("storage:\n  devices:\n    - {name: d, path: d.dat, size: 64MiB}\n  pools:\n"
               "    - {name: p, device: d, segment_size: %s}\n")
    old = cfg(BASE + storage % "2MiB", tmp_path)
    new = cfg(BASE + storage % "4MiB", tmp_path)
    err = reload.refused_change(old, new)
    assert err is not None and err.path == "storage.pools[0].segment_size"
    assert reload.line_in(BASE + storage % "4MiB", err.path) == 14


def test_mode_switch_is_refused(tmp_path: Path) -> None:
    standalone = cfg("memcached:\n  tcp_port: 11211\n  workers: 2\n", tmp_path)
    err = reload.refused_change(standalone, cfg(BASE, tmp_path))
    assert err is not None and err.path == "backends"
    assert "standalone to proxy mode needs a restart" in err.message
    err = reload.refused_change(cfg(BASE, tmp_path), standalone)
    assert err is not None and "proxy mode to standalone" in err.message


def test_live_changes_are_allowed_and_described(tmp_path: Path) -> None:
    old = cfg(BASE, tmp_path)
    new = cfg(BASE.replace("port: 11212}", "port: 11212, weight: 3}")
              .replace("  - {name: mc2", "  - {name: mc3, host: 127.0.0.1, port: 11214}\n"
                       "  - {name: mc2")
              + "routing:\n  hash: crc32\nlogging:\n  level: debug\n", tmp_path)
    assert reload.refused_change(old, new) is None
    assert reload.describe_changes(old, new) == [
        "back end mc1: weight 1 -> 3",
        "back end mc3 127.0.0.1:11214 added",
        "routing.hash: md5 -> crc32",
        "logging.level: info -> debug",
    ]
    assert reload.describe_changes(old, old) == []
    fewer = cfg(BASE.replace("  - {name: mc1, host: 127.0.0.1, port: 11212}\n", ""), tmp_path)
    assert reload.describe_changes(old, fewer) == ["back end mc1 127.0.0.1:11212 removed"]


# ------------------------------------------------------------------ Reloader


class FakePlane:
    """Stands in for Dataplane: a routing table and per-back-end states."""

    def __init__(self) -> None:
        self.tables: list[Any] = []
        self.states: list[str] = []
        self.failures: list[int] = []
        self.refuse: str | None = None

    def set_routing(self, table: Any) -> None:
        if self.refuse:
            raise fastpath.InvalidArgumentError(self.refuse, 22)
        self.tables.append(table)
        self.states = [fastpath.BACKEND_STATES[b.initial_state] for b in table.backends]
        self.failures = [0] * len(self.states)

    def backend_stats(self, index: int) -> dict[str, Any]:
        return {"state": self.states[index], "consecutive_failures": self.failures[index]}

    def backend_set_state(self, index: int, state: str) -> None:
        self.states[index] = state


def running(tmp_path: Path, text: str = BASE) -> tuple[Path, FakePlane, HealthMonitor,
                                                      reload.Reloader]:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    config = parse_config(text, str(path), base_dir=tmp_path)
    dp = FakePlane()
    monitor = HealthMonitor(dp, config.all_backends, prober=lambda *a: False)
    reloader = reload.Reloader(dp, config, monitor, base_dir=tmp_path)
    reloader.apply_initial()
    monitor.tick()
    return path, dp, monitor, reloader


def test_reload_applies_and_carries_states(tmp_path: Path, log_lines: list[str]) -> None:
    path, dp, monitor, reloader = running(tmp_path)
    dp.states[1] = "down"    # mc2
    dp.states[0] = "ejected"  # mc1, by an operator
    monitor.tick()
    # mc2 moves (new port: a new identity); mc1 stays; mc3 arrives first.
    path.write_text(BASE.replace("  - {name: mc1", "  - {name: mc3, host: 127.0.0.1, "
                                 "port: 11214}\n  - {name: mc1").replace("11213", "11215"))
    result = reloader.reload()
    assert result.ok, result.message
    assert result.message == f"reloaded {path}: 2 changes"
    assert result.changes == ["back end mc3 127.0.0.1:11214 added",
                              "back end mc2: port 11213 -> 11215"]
    table = dp.tables[-1]
    assert [(b.name, fastpath.BACKEND_STATES[b.initial_state]) for b in table.backends] == [
        ("mc3", "up"), ("mc1", "ejected"), ("mc2", "up"), ("s1", "up")]
    assert reloader.config.backends[0].name == "mc3"
    assert monitor.tick() == []  # the swap itself is no state change
    assert f"INFO reloaded {path}: 2 changes" in log_lines


def test_bad_reload_is_refused_and_old_config_kept(tmp_path: Path,
                                                   log_lines: list[str]) -> None:
    path, dp, _, reloader = running(tmp_path)
    before = reloader.config
    path.write_text(BASE.replace("port: 11300", "port: 0"))
    result = reloader.reload()
    assert not result.ok and isinstance(result.error, ConfigError)
    assert result.message == (
        f"reload refused, still running the previous config: {path}:9: "
        "spare_pools.spare[0].port: expected a port number from 1 to 65535, got 0")
    assert f"ERROR {result.message}" in log_lines
    path.write_text(BASE.replace("tcp_port: 11211", "tcp_port: 11311"))
    result = reloader.reload()
    assert str(result.error) == (f"{path}:2: memcached.tcp_port: can't change while running "
                                 "(11211 -> 11311); restart smartswitch to apply it")
    dp.refuse = "routing: ring is empty"
    path.write_text(BASE.replace("port: 11212}", "port: 11212, weight: 2}"))
    result = reloader.reload()
    assert not result.ok and "routing: ring is empty" in result.message
    assert reloader.config is before and len(dp.tables) == 1
    assert (reloader.reloads, reloader.refused) == (0, 3)
    path.unlink()
    assert "no such file" in reloader.reload().message or \
        "cannot read" in reloader.reload().message


def test_module_reload_uses_the_installed_reloader(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        reload.reload()
    path, _, _, reloader = running(tmp_path)
    reload.install(reloader)
    try:
        assert reload.reload(path).ok
    finally:
        reload.install(None)


# ------------------------------------------------------------ health monitor


def test_monitor_logs_changes_and_restores_after_probe(tmp_path: Path,
                                                       log_lines: list[str]) -> None:
    _, dp, monitor, _ = running(tmp_path)
    now = [100.0]
    answers = {11213: False}
    probes: list[int] = []

    def prober(host: str, port: int, connect_s: float, reply_s: float) -> bool:
        probes.append(port)
        assert (connect_s, reply_s) == (0.2, 0.5)
        return answers[port]

    monitor.clock = lambda: now[0]
    monitor.prober = prober
    dp.states[1], dp.failures[1] = "down", 3
    assert monitor.tick() == ["backend mc2 127.0.0.1:11213 down after 3 failures"]
    assert monitor.probe_due() == 0 and probes == []  # not before retry_after
    now[0] += 1.0
    assert monitor.probe_due() == 0 and probes == [11213]
    assert monitor.probe_due() == 0 and probes == [11213]  # next one in another second
    answers[11213] = True
    now[0] += 1.0
    assert monitor.probe_due() == 1 and dp.states[1] == "up"
    assert monitor.tick() == ["backend mc2 127.0.0.1:11213 restored"]
    dp.states[0] = "draining"
    assert monitor.tick() == ["backend mc1 127.0.0.1:11212 draining"]
    assert monitor.state_changes == 3
    assert monitor.changes_by_backend == {"mc2": 2, "mc1": 1}
    assert "WARNING backend mc2 127.0.0.1:11213 down after 3 failures" in log_lines
    assert "INFO backend mc2 127.0.0.1:11213 restored" in log_lines


def test_prober_crash_is_loud(tmp_path: Path, log_lines: list[str]) -> None:
    _, dp, monitor, _ = running(tmp_path)

    def broken(*args: Any) -> bool:
        raise RuntimeError("boom")

    monitor.prober = broken
    dp.states[0] = "down"
    monitor.tick()
    for w in monitor._watches:
        w.next_probe = 0.0
    stopping = threading.Event()
    crashed: list[str] = []
    thread = threading.Thread(target=monitor.run, args=(stopping, crashed.append))
    thread.start()
    thread.join(5)
    stopping.set()
    assert crashed == ["back-end prober failed"]
    assert "CRITICAL back-end prober failed: boom" in log_lines


def test_probe_version_against_a_stub_server() -> None:
    import socket

    from appliance.proxy.health import probe_version

    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        port = srv.getsockname()[1]

        def answer() -> None:
            conn, _ = srv.accept()
            with conn:
                assert conn.recv(100) == b"version\r\n"
                conn.sendall(b"VERSION 1.6.18\r\n")

        t = threading.Thread(target=answer)
        t.start()
        assert probe_version("127.0.0.1", port, 1.0, 1.0)
        t.join(5)
    # Nobody listens there any more.
    assert not probe_version("127.0.0.1", port, 0.2, 0.2)


def test_a_change_before_the_first_tick_is_logged(tmp_path: Path) -> None:
    config = cfg(BASE, tmp_path)
    dp = FakePlane()
    dp.set_routing(routing.routing_settings(config))
    monitor = HealthMonitor(dp, config.all_backends, prober=lambda *a: False)
    dp.states[0], dp.failures[0] = "down", 3
    assert monitor.tick() == ["backend mc1 127.0.0.1:11212 down after 3 failures"]


def test_proxy_mode_refused_without_set_routing(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from appliance.runtime import runner

    monkeypatch.setattr(runner, "load", lambda: (None, None))
    monkeypatch.setattr(runner, "proxy_available", lambda: False)
    with pytest.raises(runner.StartError, match=r"^backends: proxy mode needs a data plane "
                       r"built with ss_dataplane_set_routing"):
        runner.run(cfg(BASE, tmp_path))
    assert not (tmp_path / "var").exists()  # refused before touching storage
