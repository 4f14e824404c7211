"""spdk_bindings.provision driven against replays of the recorded SPDK sessions."""

from __future__ import annotations

from decimal import Decimal

import pytest

from spdk_bindings import provision as P
from spdk_bindings import rpc as R
from spdk_replay import Replay, ReplayClient

WORK = "/srv/ss-test"
MiB = 2**20


def client_for(name: str, **kw) -> tuple[R.SpdkRpc, Replay]:
    replay = Replay(name, WORK, **kw)
    return R.SpdkRpc(ReplayClient(replay), timeout=5.0), replay


def aio0() -> P.SpdkDevice:
    return P.SpdkDevice(name="aio0", transport="aio", path=f"{WORK}/aio0.img", block_size=512,
                        lvstore="pool0")


POOLS = [P.SpdkPool("vol_thick", size=1024 * MiB), P.SpdkPool("vol_thin", size=512 * MiB,
                                                              thin=True)]


def test_fresh_provision_replays_the_recorded_sequence() -> None:
    rpc, replay = client_for("provisioning.jsonl")
    plan = P.plan_device(rpc, aio0(), POOLS)
    assert set(replay.methods()) <= R.READ_METHODS
    assert [(s.action, s.what) for s in plan.steps] == [
        ("create", "spdk bdev aio0"), ("create", "spdk lvstore pool0"),
        ("create", "spdk lvol pool0/vol_thick"), ("create", "spdk lvol pool0/vol_thin")]
    assert plan.changes and not plan.refusals
    assert plan.lines()[0].startswith("device aio0 (spdk aio, bdev aio0, lvstore pool0, SPDK v26.05")
    assert plan.lines()[3] == "  create  spdk lvol pool0/vol_thick: 1.0 GiB thick (256 clusters of 4.0 MiB)"
    replay.served.clear()
    state = P.apply_plan(rpc, plan)
    changing = [(ex["method"], ex["params"]) for ex in replay.served
                if ex["method"] not in R.READ_METHODS]
    assert changing == [
        ("bdev_aio_create", {"name": "aio0", "filename": f"{WORK}/aio0.img", "block_size": 512}),
        ("bdev_lvol_create_lvstore", {"bdev_name": "aio0", "lvs_name": "pool0",
                                      "cluster_sz": 4 * MiB}),
        ("bdev_lvol_create", {"lvs_name": "pool0", "lvol_name": "vol_thick", "size_in_mib": 1024,
                              "thin_provision": False}),
        ("bdev_lvol_create", {"lvs_name": "pool0", "lvol_name": "vol_thin", "size_in_mib": 512,
                              "thin_provision": True})]
    creates = [ex["result"] for ex in replay.served if ex["method"] == "bdev_lvol_create"]
    lvs_uuid = next(ex["result"] for ex in replay.served
                    if ex["method"] == "bdev_lvol_create_lvstore")
    assert state.capacity_bytes == 511 * 4 * MiB  # total_data_clusters * cluster_size
    assert state.lvstore_uuid == lvs_uuid
    assert state.pools["vol_thick"].bdev == creates[0]
    assert state.pools["vol_thin"].bdev == creates[1]
    assert state.pools["vol_thick"].size_bytes == 1024 * MiB
    assert state.pools["vol_thin"].size_bytes == 512 * MiB and state.pools["vol_thin"].thin
    assert state.created == ["bdev aio0", "lvstore pool0", "lvol pool0/vol_thick",
                             "lvol pool0/vol_thin"]


def faio0(**kw) -> P.SpdkDevice:
    return P.SpdkDevice(**{"name": "faio0", "transport": "aio", "path": f"{WORK}/fail0.img",
                           "block_size": 512, "lvstore": "fpool", **kw})


def test_second_run_changes_nothing_and_reads_only() -> None:
    # failures.jsonl after its setup: faio0 with lvstore fpool holding vol1 (100 MiB).
    rpc, replay = client_for("failures.jsonl", start=1, stop=46)
    plan = P.plan_device(rpc, faio0(), [P.SpdkPool("vol1", size=100 * MiB)])
    assert not plan.changes and not plan.refusals
    assert [s.action for s in plan.steps] == ["keep", "keep", "keep"]
    served = len(replay.served)
    state = P.apply_plan(rpc, plan)
    assert len(replay.served) == served  # nothing more was sent
    assert set(replay.methods()) <= R.READ_METHODS
    assert state.pools["vol1"].size_bytes == 100 * MiB and state.created == []
    assert state.free_bytes == 486 * 4 * MiB


def test_percent_sizes_come_from_the_capacity_read_back() -> None:
    rpc, replay = client_for("failures.jsonl", start=1, stop=46)
    observed = P.observe(rpc, faio0())
    plan = P.decide(faio0(), [P.SpdkPool("vol1", percent=Decimal("5"))], observed)
    # 5% of 511 clusters is 25 clusters (100 MiB): exactly vol1's size.
    assert [s.action for s in plan.steps][-1] == "keep"
    plan = P.decide(faio0(), [P.SpdkPool("vol1", percent=Decimal("10"))], observed)
    assert str(plan.steps[-1]).startswith("grow    spdk lvol fpool/vol1: 100.0 MiB -> 204.0 MiB")


def observed_after_creates(replay: Replay, lvstore_line: int, vol_lines: list[int]) -> P.Observed:
    """State after provisioning.jsonl's creates, from its recorded answers."""
    base = replay.line(18)["result"]  # aio0, claimed by the lvstore
    lvols = [replay.line(n)["result"][0] for n in vol_lines]
    return P.Observed.build(aio0(), base + lvols, replay.line(lvstore_line)["result"][0],
                            "SPDK v26.05")


def test_grow_resizes_and_reads_back() -> None:
    rpc, replay = client_for("provisioning.jsonl", start=27)
    observed = observed_after_creates(replay, 22, [25, 26])
    pools = [P.SpdkPool("vol_thick", size=1536 * MiB), POOLS[1]]
    plan = P.decide(aio0(), pools, observed)
    assert [s.action for s in plan.steps] == ["keep", "keep", "grow", "keep"]
    state = P.apply_plan(rpc, plan)
    assert [(ex["method"], ex["params"]) for ex in replay.served][0] == (
        "bdev_lvol_resize", {"name": "pool0/vol_thick", "size_in_mib": 1536})
    assert state.pools["vol_thick"].size_bytes == 1536 * MiB
    assert state.free_bytes == 124 * 4 * MiB


def test_shrink_is_refused_unless_allowed() -> None:
    rpc, replay = client_for("provisioning.jsonl", start=30)
    observed = observed_after_creates(replay, 29, [28, 26])
    pools = [P.SpdkPool("vol_thick", size=512 * MiB), POOLS[1]]
    plan = P.decide(aio0(), pools, observed)
    assert plan.refusals and "shrinking from 1.5 GiB to 512.0 MiB" in plan.refusals[0]
    with pytest.raises(P.ProvisionError, match="aio0"):
        P.apply_plan(rpc, plan)
    assert replay.served == []
    plan = P.decide(aio0(), pools, observed, allow_shrink=True)
    state = P.apply_plan(rpc, plan)
    assert replay.served[0]["params"] == {"name": "pool0/vol_thick", "size_in_mib": 512}
    assert state.pools["vol_thick"].size_bytes == 512 * MiB
    assert state.free_bytes == 380 * 4 * MiB


def test_pools_that_do_not_fit_are_refused_before_anything_is_sent() -> None:
    rpc, replay = client_for("failures.jsonl", start=1, stop=46)
    plan = P.plan_device(rpc, faio0(), [P.SpdkPool("vol1", size=100 * MiB),
                                        P.SpdkPool("too_big", size=4096 * MiB)])
    assert plan.refusals and "1024 more clusters" in plan.refusals[-1]
    assert "486 free" in plan.refusals[-1]
    with pytest.raises(P.ProvisionError):
        P.apply_plan(rpc, plan)
    assert set(replay.methods()) <= R.READ_METHODS


def test_bdev_claimed_by_something_else_is_refused() -> None:
    rpc, replay = client_for("failures.jsonl", start=1, stop=46)
    plan = P.plan_device(rpc, faio0(lvstore="no_such_lvs"), [P.SpdkPool("x", size=8 * MiB)])
    assert plan.refusals == ["spdk bdev faio0: is claimed (read_many_write_one) by something "
                             "other than lvol store no_such_lvs; SmartSwitch will not touch a "
                             "bdev it did not provision"]
    assert set(replay.methods()) <= R.READ_METHODS


def test_bdev_on_another_file_is_refused() -> None:
    rpc, _ = client_for("failures.jsonl", start=1, stop=46)
    dev = faio0(path=f"{WORK}/other.img")
    plan = P.plan_device(rpc, dev, [P.SpdkPool("vol1", size=100 * MiB)])
    assert "exists but is aio bdev on /srv/ss-test/fail0.img" in plan.refusals[0]


@pytest.mark.parametrize("transport,message", [
    ("aio", "No such file or directory"), ("uring", "Unable to create URING bdev.")])
def test_missing_backing_file_names_rpc_device_and_spdk_text(transport, message) -> None:
    rpc, _ = client_for("failures.jsonl", start=1, stop=46)
    name = "missing0" if transport == "aio" else "missing1"
    dev = P.SpdkDevice(name=name, transport=transport, path=f"{WORK}/does-not-exist.img",
                       block_size=512)
    plan = P.plan_device(rpc, dev, [P.SpdkPool("items", size=64 * MiB)])
    with pytest.raises(R.SpdkRpcError) as info:
        P.apply_plan(rpc, plan)
    text = str(info.value)
    assert f"bdev_{transport}_create" in text and repr(name) in text and message in text


@pytest.mark.parametrize("dev,code", [
    (P.SpdkDevice(name="nvme_pcie0", transport="pcie", traddr="0000:99:00.0"), R.ENODEV),
    (P.SpdkDevice(name="nvme_tcp_dead", transport="tcp", traddr="127.0.0.1", trsvcid=4999,
                  subnqn="nqn.2016-06.io.spdk:nothing-here"), R.EIO)])
def test_nvme_attach_failures(dev, code) -> None:
    rpc, _ = client_for("failures.jsonl", start=1, stop=46)
    plan = P.plan_device(rpc, dev, [P.SpdkPool("items", size=64 * MiB)])
    assert plan.steps[0].action == "attach"
    with pytest.raises(R.SpdkRpcError) as info:
        P.apply_plan(rpc, plan)
    assert info.value.code == code and info.value.method == "bdev_nvme_attach_controller"
    assert repr(dev.name) in str(info.value)


def test_nvme_attach_without_bdev_is_detached_and_reported() -> None:
    # nvmf.jsonl: the target attaching its own export created no bdev (the NGUID pitfall).
    rpc, replay = client_for("nvmf.jsonl")
    dev = P.SpdkDevice(name="loop0", transport="tcp", traddr="127.0.0.1", trsvcid="4420",
                       subnqn="nqn.2016-06.io.spdk:appliance-vol1")
    plan = P.plan_device(rpc, dev, [P.SpdkPool("items", size=64 * MiB)])
    with pytest.raises(P.ProvisionError, match="created bdevs \\[\\], not 'loop0n1'"):
        P.apply_plan(rpc, plan)
    assert replay.methods()[-2:] == ["bdev_nvme_attach_controller",
                                     "bdev_nvme_detach_controller"]


def test_device_and_pool_from_config_mappings() -> None:
    dev = P.SpdkDevice.from_config({"name": "nvme0", "kind": "spdk", "transport": "tcp",
                                    "traddr": "127.0.0.1", "trsvcid": 4420,
                                    "subnqn": "nqn.2016-06.io.spdk:cnode1", "size": None})
    assert (dev.bdev, dev.controller, dev.lvstore, dev.trsvcid) == (
        "nvme0n1", "nvme0", "ss_nvme0", "4420")
    pool = P.SpdkPool.from_config({"name": "items", "size": 123, "size_percent": Decimal(60)})
    assert pool.percent == 60 and pool.size is None
    with pytest.raises(P.ProvisionError, match="block_size"):
        P.SpdkDevice(name="f", transport="aio", path="/x")
