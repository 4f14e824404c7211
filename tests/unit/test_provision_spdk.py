"""The provisioning planner (appliance.storage.provision) and `smartswitch provision` with
kind: spdk devices, against replays of the recorded SPDK sessions (tests/unit/spdk_replay.py).

`appliance.storage.spdk.connect` is replaced by a replay client; `<WORKDIR>` of the recordings
is the test's tmp_path, where the aio backing files exist as sparse files (the planner checks
them before anything is created). Every SPDK answer is a recorded one.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance import cli
from appliance.runtime import runner
from appliance.storage import provision, serving, spdk
from appliance.config import parse_config
from spdk_bindings import export as X
from spdk_bindings import provision as P
from spdk_bindings import rpc as R
from spdk_replay import Replay, ReplayClient

MiB = 1024**2
GiB = 1024**3


def use_replay(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str,
               **kw) -> Replay:
    replay = Replay(name, str(tmp_path), **kw)
    rpc = R.SpdkRpc(ReplayClient(replay), timeout=5.0)
    monkeypatch.setattr(spdk, "connect", lambda dev: rpc)
    return replay


def sparse(path: Path, size: int = 2 * GiB) -> None:
    with open(path, "wb") as f:
        f.truncate(size)


def config(tmp_path: Path, device: str, pools: str, file_device: bool = False):
    text = ("memcached: {item_size_max: 512KiB}\n"
            # The recorded sessions are spdk_tgt's: external mode, the RPCs go to a replay.
            "storage:\n  dir: var\n  spdk: {mode: external}\n  devices:\n" + device +
            ("    - {name: local, kind: file, path: var/store.dat, size: 64MiB}\n"
             if file_device else "") + "  pools:\n" + pools)
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return parse_config(text, "c.yaml", base_dir=tmp_path), path


AIO0 = ("    - {name: aio0, kind: spdk, transport: aio, path: aio0.img, block_size: 512,\n"
        "       lvstore: pool0, export: null}\n")
AIO0_POOLS = ("    - {name: vol_thick, device: aio0, size: 1GiB, segment_size: 1MiB}\n"
              "    - {name: vol_thin, device: aio0, size: 512MiB, thin: true, role: objects,\n"
              "       segment_size: 1MiB}\n")
FAIO0 = ("    - {name: faio0, kind: spdk, transport: aio, path: fail0.img, block_size: 512,\n"
         "       lvstore: fpool, export: null}\n")


def changing(replay: Replay) -> list[tuple[str, dict]]:
    return [(ex["method"], ex["params"]) for ex in replay.served
            if ex["method"] not in R.READ_METHODS]


def test_fresh_spdk_device_is_planned_then_applied(monkeypatch, tmp_path) -> None:
    replay = use_replay(monkeypatch, tmp_path, "provisioning.jsonl")
    sparse(tmp_path / "aio0.img")
    cfg, _ = config(tmp_path, AIO0, AIO0_POOLS)
    p = provision.plan(cfg)
    assert changing(replay) == []
    assert p.lines() == [
        f"create spdk bdev aio0: aio on {tmp_path}/aio0.img, 512 B blocks",
        "create spdk lvstore pool0: on aio0, clusters of 4.0 MiB",
        "create spdk lvol pool0/vol_thick: 1.0 GiB thick (256 clusters of 4.0 MiB)",
        "create spdk lvol pool0/vol_thin: 512.0 MiB thin (128 clusters of 4.0 MiB)"]
    assert p.regions["vol_thick"] == provision.PoolRegion("vol_thick", "memcached", 0, GiB,
                                                          MiB)
    said: list[str] = []
    provision.apply(p, cfg, progress=said.append)
    assert [m for m, _ in changing(replay)] == [
        "bdev_aio_create", "bdev_lvol_create_lvstore", "bdev_lvol_create", "bdev_lvol_create"]
    assert said[0] == "spdk device aio0: 4 changes"
    assert "creating lvol pool0/vol_thick (1024 MiB)" in said
    assert p.devices["aio0"] == 511 * 4 * MiB  # read back: total_data_clusters * cluster
    assert p.regions["vol_thin"].size == 512 * MiB
    st = provision.state(cfg, p)
    assert st["devices"][0]["lvstore_uuid"] == next(
        ex["result"] for ex in replay.served if ex["method"] == "bdev_lvol_create_lvstore")
    thick = next(pool for pool in st["pools"] if pool["name"] == "vol_thick")
    created = [ex["result"] for ex in replay.served if ex["method"] == "bdev_lvol_create"]
    assert thick["bdev"] == created[0]  # the UUID bdev_lvol_create answered
    assert (thick["size"], thick["served"], thick["lvol"]) == (GiB, True, "pool0/vol_thick")


def test_second_run_has_nothing_to_do_and_sends_only_reads(monkeypatch, tmp_path) -> None:
    # failures.jsonl after its setup: faio0, lvstore fpool, lvol vol1 of 100 MiB.
    replay = use_replay(monkeypatch, tmp_path, "failures.jsonl", start=1, stop=46)
    cfg, _ = config(tmp_path, FAIO0,
                    "    - {name: vol1, device: faio0, size: 100MiB, segment_size: 1MiB}\n")
    p = provision.plan(cfg)
    assert p.steps == () and p.lines() == ["nothing to do"]
    provision.apply(p, cfg, progress=lambda line: None)
    assert changing(replay) == []
    assert p.regions["vol1"].size == 100 * MiB
    st = serving.storage_state(cfg)
    assert st["pending"] == [] and st["devices"][0]["free"] == 486 * 4 * MiB
    assert st["devices"][0]["kind"] == "spdk" and st["devices"][0]["bdev"] == "faio0"


@pytest.mark.parametrize("pools,message", [
    ("    - {name: vol1, device: faio0, size: 40MiB, segment_size: 1MiB}\n",
     "storage.pools[0].size: spdk device faio0: spdk lvol fpool/vol1: shrinking from "
     "100.0 MiB to 40.0 MiB loses items; allow shrinking to do it (set allow_shrink: true on "
     "the pool to allow it, with the appliance stopped); nothing was changed"),
    ("    - {name: vol1, device: faio0, size: 100MiB, segment_size: 1MiB}\n"
     "    - {name: big, device: faio0, size: 4GiB, role: objects, segment_size: 1MiB}\n",
     "storage.devices[0]: spdk device faio0: spdk device faio0: the pools need 1024 more "
     "clusters (4.0 GiB) but lvol store fpool has 486 free (1.9 GiB); nothing was changed"),
])
def test_refusals_name_the_yaml_path_and_touch_nothing(monkeypatch, tmp_path, pools,
                                                       message) -> None:
    replay = use_replay(monkeypatch, tmp_path, "failures.jsonl", start=1, stop=46)
    cfg, _ = config(tmp_path, FAIO0, pools)
    with pytest.raises(provision.ProvisionError) as info:
        provision.plan(cfg)
    assert str(info.value) == message
    assert changing(replay) == []


def test_allowed_shrink_of_the_served_pool_needs_the_store_shrunk_first(monkeypatch,
                                                                        tmp_path) -> None:
    replay = use_replay(monkeypatch, tmp_path, "failures.jsonl", start=1, stop=46)
    cfg, _ = config(tmp_path, FAIO0, "    - {name: vol1, device: faio0, size: 40MiB, "
                    "segment_size: 1MiB, allow_shrink: true}\n")
    p = provision.plan(cfg)
    assert p.shrinks() == ["vol1"]
    assert p.lines() == ["shrink spdk lvol fpool/vol1: 100.0 MiB -> 40.0 MiB thick (10 "
                         "clusters of 4.0 MiB); items beyond the new end are evicted"]
    with pytest.raises(provision.ProvisionError, match="appliance stopped"):
        provision.apply(p, cfg, progress=lambda line: None)
    assert changing(replay) == []


def test_missing_backing_file_stops_before_anything_is_sent(monkeypatch, tmp_path) -> None:
    replay = use_replay(monkeypatch, tmp_path, "provisioning.jsonl")
    cfg, path = config(tmp_path, AIO0, AIO0_POOLS, file_device=False)
    with pytest.raises(provision.ProvisionError) as info:
        provision.plan(cfg)
    assert str(info.value).startswith(f"storage.devices[0].path: {tmp_path}/aio0.img does not "
                                      "exist; spdk_tgt opens it as an aio bdev")
    assert changing(replay) == []
    code = cli.main(["provision", "--config", str(path)])
    assert code == cli.EXIT_CANNOT_START


def test_unreachable_target_names_the_socket(tmp_path) -> None:
    cfg, _ = config(tmp_path, AIO0.replace("export: null", f"rpc_socket: {tmp_path}/no.sock"),
                    AIO0_POOLS)
    with pytest.raises(provision.ProvisionError) as info:
        provision.plan(cfg)
    text = str(info.value)
    assert text.startswith("storage.devices[0].rpc_socket: connect failed for device 'aio0'")
    assert f"{tmp_path}/no.sock" in text


def test_grow_resizes_the_lvol_then_grows_the_store(monkeypatch, tmp_path) -> None:
    # provisioning.jsonl never listed every bdev while its lvols existed, so the "before"
    # state is built from its recorded answers, as in test_spdk_provision.py.
    replay = Replay("provisioning.jsonl", str(tmp_path), start=27)
    rpc = R.SpdkRpc(ReplayClient(replay), timeout=5.0)
    cfg, _ = config(tmp_path, AIO0, AIO0_POOLS.replace("size: 1GiB", "size: 1536MiB"))
    dev = spdk.spdk_device(cfg.storage.device("aio0"))
    base = replay.line(18)["result"]
    lvols = [replay.line(n)["result"][0] for n in (25, 26)]
    observed = P.Observed.build(dev, base + lvols, replay.line(22)["result"][0], "SPDK v26.05")
    pools = [spdk.spdk_pool(p) for p in cfg.storage.pools]
    prov = spdk.SpdkProvisioned("aio0", "storage.devices[0]", rpc,
                                P.decide(dev, pools, observed), None, cfg.storage.pools)
    regions = {"vol_thick": provision.PoolRegion("vol_thick", "memcached", 0, GiB, MiB),
               "vol_thin": provision.PoolRegion("vol_thin", "objects", 0, 512 * MiB, MiB)}
    p = provision.Plan((spdk.SpdkDeviceStep("aio0", prov),), regions, {"aio0": 0},
                       spdk={"aio0": prov})
    assert p.lines() == ["grow spdk lvol pool0/vol_thick: 1.0 GiB -> 1.5 GiB thick (384 "
                         "clusters of 4.0 MiB)"]
    grown: list[provision.GrowPool] = []
    provision.apply(p, cfg, progress=lambda line: None, grower=grown.append)
    assert changing(replay) == [("bdev_lvol_resize", {"name": "pool0/vol_thick",
                                                      "size_in_mib": 1536})]
    assert [(g.region.size, g.old) for g in grown] == [(1536 * MiB, GiB)]
    assert p.regions["vol_thick"].size == 1536 * MiB


NAIO0 = ("    - {name: naio0, kind: spdk, transport: aio, path: nvmf0.img, block_size: 512,\n"
         "       lvstore: npool}\n")


def test_cli_dry_run_prints_spdk_and_file_lines(monkeypatch, tmp_path, capsys) -> None:
    # nvmf.jsonl, read from its start: an empty bdev list, no transport, and (first
    # recorded) a subsystem list without ours.
    replay = use_replay(monkeypatch, tmp_path, "nvmf.jsonl")
    sparse(tmp_path / "nvmf0.img")
    monkeypatch.chdir(tmp_path)
    _, path = config(tmp_path, NAIO0,
                     "    - {name: items, device: local, size: 16MiB, segment_size: 1MiB}\n"
                     "    - {name: export1, device: naio0, size: 256MiB, thin: true, "
                     "role: objects, segment_size: 1MiB}\n", file_device=True)
    assert cli.main(["provision", "--config", str(path), "--dry-run"]) == cli.EXIT_OK
    out = capsys.readouterr().out.splitlines()
    nqn = "nqn.2016-06.io.smartswitch:naio0"
    serial = X.ExportSpec(nqn).serial_number
    assert out[:1] == ["plan (dry run, nothing changed):"]
    assert out[1:10] == [
        f"  create spdk bdev naio0: aio on {tmp_path}/nvmf0.img, 512 B blocks",
        "  create spdk lvstore npool: on naio0, clusters of 4.0 MiB",
        "  create spdk lvol npool/export1: 256.0 MiB thin (64 clusters of 4.0 MiB)",
        "  create nvmf transport TCP: with SPDK's defaults",
        f"  create nvmf subsystem {nqn}: serial {serial}, model 'SmartSwitch pool', any "
        "host, up to 32 namespaces",
        f"  add nvmf namespace {nqn} npool/export1: namespace for the pool's lvol",
        f"  add nvmf listener {nqn}: TCP 127.0.0.1:4420",
        f"  create file {tmp_path}/var/store.dat of 64MiB (67108864 bytes)",
        "  pool items on local at offset 1048576 size 16777216 (16MiB), segment_size 1MiB"]
    assert set(replay.methods()) <= R.READ_METHODS
    assert not (tmp_path / "var").exists()


def exported_plan(monkeypatch, tmp_path) -> tuple[provision.Plan, object]:
    """A plan whose spdk device is exported: the recorded export of npool/export1."""
    replay = Replay("nvmf.jsonl", str(tmp_path), start=6)
    rpc = R.SpdkRpc(ReplayClient(replay), timeout=5.0)
    cfg, _ = config(tmp_path, NAIO0.replace("lvstore: npool", "lvstore: npool, export_nqn: "
                                            "'nqn.2016-06.io.spdk:appliance-vol1'"),
                    "    - {name: export1, device: naio0, size: 256MiB, thin: true, "
                    "segment_size: 1MiB}\n")
    spec = X.ExportSpec("nqn.2016-06.io.spdk:appliance-vol1", serial_number="SPDK00000000000001",
                        model_number="appliance-lvol", max_namespaces=8)
    xplan = X.decide_export("naio0", spec, "npool", ["export1"], X.ExportObserved.build(
        spec, replay.line(5)["result"], replay.line(46)["result"]), {})
    dev = spdk.spdk_device(cfg.storage.device("naio0"))
    prov = spdk.SpdkProvisioned(
        "naio0", "storage.devices[0]", rpc, P.decide(dev, [], P.Observed("", None, None, {})),
        xplan, cfg.storage.pools)
    prov.exported = X.apply_export(rpc, xplan, {"export1": replay.line(4)["result"]})
    return provision.Plan((), {}, {}, spdk={"naio0": prov}), cfg


def test_runner_gets_trid_and_nsid_of_the_served_pool(monkeypatch, tmp_path) -> None:
    p, cfg = exported_plan(monkeypatch, tmp_path)
    assert spdk.spdk_target(cfg, p) == (
        "trtype:TCP adrfam:IPv4 traddr:127.0.0.1 trsvcid:4420 "
        "subnqn:nqn.2016-06.io.spdk:appliance-vol1", 1)
    monkeypatch.setenv("SPDK_DIR", str(tmp_path / "no-spdk"))  # a box without SPDK
    with pytest.raises(runner.StartError) as info:
        spdk.open_spdk_pool(cfg, p)
    assert "pool export1 is on spdk device naio0, but SPDK cannot be loaded: SPDK's shared " \
        "libraries are not" in str(info.value)


def test_runner_refuses_a_served_pool_without_export_or_provisioning(tmp_path) -> None:
    cfg, _ = config(tmp_path, FAIO0, "    - {name: vol1, device: faio0, size: 100MiB, "
                    "segment_size: 1MiB}\n")
    with pytest.raises(runner.StartError, match=r"storage\.devices\[0\]\.export: pool vol1 "
                                                r"is served from spdk device faio0"):
        spdk.spdk_target(cfg, provision.Plan((), {}, {}))
    cfg, _ = config(tmp_path, FAIO0.replace(", export: null", ""),
                    "    - {name: vol1, device: faio0, size: 100MiB, segment_size: 1MiB}\n")
    with pytest.raises(runner.StartError, match="not provisioned and exported yet"):
        spdk.spdk_target(cfg, provision.Plan((), {}, {}))


def test_start_without_the_data_path_stops_before_provisioning(monkeypatch, tmp_path) -> None:
    def no_rpc(dev):
        raise AssertionError("start-up talked to the target")

    monkeypatch.setattr(spdk, "connect", no_rpc)
    monkeypatch.setenv("SPDK_DIR", str(tmp_path / "no-spdk"))  # a box without SPDK
    cfg, _ = config(tmp_path, FAIO0.replace(", export: null", ""),
                    "    - {name: vol1, device: faio0, size: 100MiB, segment_size: 1MiB}\n")
    with pytest.raises(runner.StartError, match="SPDK cannot be loaded: SPDK's shared "
                                                 "libraries are not in"):
        runner.run(cfg)
