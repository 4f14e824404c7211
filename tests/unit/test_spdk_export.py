"""NVMe-oF export (spdk_bindings.export) against the recorded nvmf.jsonl session.

The session exported lvol npool/export1 as namespace 1 of nqn.2016-06.io.spdk:appliance-vol1
on TCP 127.0.0.1:4420, with serial SPDK00000000000001, model appliance-lvol and 8 namespaces;
the spec below names exactly those so that the export issues the recorded requests. The
"before" states are built from recorded answers: transports from line 5 (none) or 7 (TCP),
subsystems from line 46 (discovery only) or 17 (ours, with its namespace and listener).
"""

from __future__ import annotations

import pytest

from spdk_bindings import export as X
from spdk_bindings import rpc as R
from spdk_replay import Replay, ReplayClient

WORK = "/srv/ss-test"
NQN = "nqn.2016-06.io.spdk:appliance-vol1"
SPEC = X.ExportSpec(NQN, "127.0.0.1", "4420", serial_number="SPDK00000000000001",
                    model_number="appliance-lvol", max_namespaces=8)


def client_for(**kw) -> tuple[R.SpdkRpc, Replay]:
    replay = Replay("nvmf.jsonl", WORK, **kw)
    return R.SpdkRpc(ReplayClient(replay), timeout=5.0), replay


def lvol(replay: Replay) -> dict:
    """export1's bdev as the target reported it (line 40: claimed by the subsystem)."""
    return replay.line(40)["result"][0]


def test_fresh_export_issues_the_recorded_requests_and_reads_the_nsid_back() -> None:
    rpc, replay = client_for(start=6)
    observed = X.ExportObserved.build(SPEC, replay.line(5)["result"],
                                      replay.line(46)["result"])
    plan = X.decide_export("naio0", SPEC, "npool", ["export1"], observed, {})
    assert [(s.action, s.what) for s in plan.steps] == [
        ("create", "nvmf transport TCP"), ("create", f"nvmf subsystem {NQN}"),
        ("add", f"nvmf namespace {NQN} npool/export1"), ("add", f"nvmf listener {NQN}")]
    assert plan.changes and not plan.refusals
    uuid = replay.line(4)["result"]  # bdev_lvol_create's answer: the lvol's UUID
    progress: list[str] = []
    state = X.apply_export(rpc, plan, {"export1": uuid}, progress.append)
    assert [(ex["method"], ex["params"]) for ex in replay.served] == [
        ("nvmf_create_transport", {"trtype": "TCP"}),
        ("nvmf_create_subsystem", {"nqn": NQN, "serial_number": "SPDK00000000000001",
                                   "model_number": "appliance-lvol", "allow_any_host": True,
                                   "max_namespaces": 8}),
        ("nvmf_subsystem_add_ns", {"nqn": NQN, "namespace": {"bdev_name": "npool/export1"}}),
        ("nvmf_subsystem_add_listener", {"nqn": NQN, "listen_address": {
            "trtype": "TCP", "adrfam": "IPv4", "traddr": "127.0.0.1", "trsvcid": "4420"}}),
        ("nvmf_get_subsystems", {})]
    assert state.pools["export1"].nsid == 1 and state.pools["export1"].bdev == uuid
    assert state.pools["export1"].trid == (
        f"trtype:TCP adrfam:IPv4 traddr:127.0.0.1 trsvcid:4420 subnqn:{NQN}")
    assert len(progress) == 4 and state.listen == "TCP 127.0.0.1:4420"


def test_existing_export_is_kept_and_nothing_is_sent() -> None:
    rpc, replay = client_for(start=19)
    observed = X.ExportObserved.build(SPEC, replay.line(7)["result"],
                                      replay.line(17)["result"])
    plan = X.decide_export("naio0", SPEC, "npool", ["export1"], observed,
                           {"export1": lvol(replay)})
    assert [s.action for s in plan.steps] == ["keep", "keep", "keep", "keep"]
    assert not plan.changes
    state = X.apply_export(rpc, plan, {"export1": lvol(replay)["name"]})
    assert replay.served == []
    assert state.pools["export1"].nsid == 1 and state.created == []


def test_observe_reads_transports_and_subsystems() -> None:
    # From line 7 on, the first recorded reads show the TCP transport (line 7) and the
    # complete export: our subsystem, its namespace and listener (line 17).
    rpc, replay = client_for(start=7)
    observed = X.observe_export(rpc, SPEC)
    assert set(replay.methods()) <= R.READ_METHODS
    assert observed.subsystem is not None and observed.subsystem["nqn"] == NQN
    assert [t["trtype"] for t in observed.transports] == ["TCP"]
    other = X.observe_export(rpc, X.ExportSpec("nqn.2016-06.io.smartswitch:naio0"))
    assert other.subsystem is None  # only the discovery subsystem and appliance-vol1 exist


def test_listener_on_another_address_is_added() -> None:
    rpc, replay = client_for(start=19)
    observed = X.ExportObserved.build(SPEC, replay.line(7)["result"],
                                      replay.line(17)["result"])
    spec = X.ExportSpec(NQN, "127.0.0.1", "4421")
    plan = X.decide_export("naio0", spec, "npool", ["export1"], observed,
                           {"export1": lvol(replay)})
    assert [(s.action, s.what) for s in plan.steps][-1] == ("add", f"nvmf listener {NQN}")


def test_transport_that_appeared_meanwhile_fails_with_spdk_text() -> None:
    # The plan saw no transport (line 5), but the target has one by line 8.
    rpc, replay = client_for(start=8)
    observed = X.ExportObserved.build(SPEC, replay.line(5)["result"],
                                      replay.line(46)["result"])
    plan = X.decide_export("naio0", SPEC, "npool", ["export1"], observed, {})
    with pytest.raises(R.SpdkRpcError) as info:
        X.apply_export(rpc, plan, {"export1": replay.line(4)["result"]})
    text = str(info.value)
    assert info.value.code == R.INTERNAL_ERROR
    assert "nvmf_create_transport failed for device 'naio0'" in text
    assert "Transport type 'TCP' already exists" in text


def test_namespace_for_a_missing_lvol_fails_with_spdk_text() -> None:
    rpc, replay = client_for(start=12)
    observed = X.ExportObserved.build(SPEC, replay.line(7)["result"],
                                      replay.line(46)["result"] + [
                                          dict(replay.line(17)["result"][1], namespaces=[])])
    plan = X.decide_export("naio0", SPEC, "npool", ["no_such_vol"], observed, {})
    assert [s.action for s in plan.steps] == ["keep", "keep", "add", "keep"]
    with pytest.raises(R.SpdkRpcError) as info:
        X.apply_export(rpc, plan, {})
    assert info.value.method == "nvmf_subsystem_add_ns"
    assert info.value.is_(R.INVALID_PARAMS, "Invalid parameters")
    assert "'naio0'" in str(info.value)


def test_lvol_exported_by_another_subsystem_is_refused() -> None:
    rpc, replay = client_for(start=19)
    observed = X.ExportObserved.build(X.ExportSpec("nqn.2016-06.io.smartswitch:naio0"),
                                      replay.line(7)["result"], replay.line(17)["result"])
    spec = X.ExportSpec("nqn.2016-06.io.smartswitch:naio0")
    plan = X.decide_export("naio0", spec, "npool", ["export1"], observed,
                           {"export1": lvol(replay)})
    assert plan.refusals == [
        "nvmf namespace nqn.2016-06.io.smartswitch:naio0 npool/export1: lvol npool/export1 "
        "is claimed (exclusive_write) by something other than this subsystem (exported "
        "elsewhere?); SmartSwitch will not export it twice"]
    with pytest.raises(X.ProvisionError, match="naio0"):
        X.apply_export(rpc, plan, {})
    assert replay.served == []


def test_namespace_no_pool_names_is_noted_and_left_alone() -> None:
    rpc, replay = client_for(start=19)
    observed = X.ExportObserved.build(SPEC, replay.line(7)["result"],
                                      replay.line(17)["result"])
    plan = X.decide_export("naio0", SPEC, "npool", [], observed, {})
    assert [s.action for s in plan.steps] == ["keep", "keep", "note", "keep"]
    assert "no pool of this config; left alone" in plan.steps[2].detail


def test_spec_defaults() -> None:
    spec = X.ExportSpec("nqn.2016-06.io.smartswitch:nvme0", "::1", 4420)
    assert spec.adrfam == "IPv6" and spec.trsvcid == "4420"
    assert len(spec.serial_number) == 20 and spec.serial_number.startswith("SS")
    assert spec.trid.endswith("traddr:::1 trsvcid:4420 subnqn:nqn.2016-06.io.smartswitch:nvme0")


@pytest.mark.parametrize("call,match", [
    (lambda r: r.nvmf_create_subsystem("cnode1"), "nqn must be a string starting with 'nqn.'"),
    (lambda r: r.nvmf_create_subsystem(NQN, serial_number="x" * 21), "at most 20"),
    (lambda r: r.nvmf_subsystem_add_ns(NQN, {"bdev": "x"}), "unknown namespace keys"),
    (lambda r: r.nvmf_subsystem_add_ns(NQN, {"bdev_name": "x", "nguid": "12"}), "32 hex"),
    (lambda r: r.nvmf_subsystem_add_listener(NQN, {"trtype": "TCP"}), "traddr"),
    (lambda r: r.nvmf_subsystem_add_listener(NQN, {"trtype": "TCP", "traddr": "127.0.0.1",
                                                   "trsvcid": 4420}), "trsvcid"),
])
def test_malformed_nvmf_requests_are_refused_before_sending(call, match) -> None:
    rpc, replay = client_for()
    with pytest.raises(ValueError, match=match):
        call(rpc)
    assert replay.served == []
