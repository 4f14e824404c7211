"""Provisioning planner (appliance.storage.provision) on real files, without a data plane."""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path

import pytest

from appliance.storage import provision
from appliance.config import LABEL_BYTES, ConfigError, parse_config, percent_bytes

MiB = 1024**2


def config_text(items: str = "50%", objs: str | None = None, device: str = "64MiB",
                extra: str = "", kind: str = "file", path: str = "var/dev.dat") -> str:
    size = f", size: {device}" if device else ""
    text = (f"memcached: {{item_size_max: 512KiB}}\n"
            f"storage:\n  dir: var\n  devices:\n"
            f"    - {{name: d, kind: {kind}, path: {path}{size}}}\n"
            f"  pools:\n    - {{name: items, device: d, size: {items}, segment_size: 2MiB"
            f"{extra}}}\n")
    if objs:
        text += (f"    - {{name: objs, device: d, size: {objs}, role: objects, "
                 f"segment_size: 1MiB}}\n")
    return text


def load(tmp_path: Path, text: str):
    return parse_config(text, "c.yaml", base_dir=tmp_path)


def provisioned(tmp_path: Path, text: str) -> provision.Plan:
    config = load(tmp_path, text)
    p = provision.plan(config)
    provision.apply(p, config, progress=lambda line: None)
    return p


def snapshot(path: Path) -> tuple[bytes, int]:
    return path.read_bytes(), path.stat().st_mtime_ns


def kinds(p: provision.Plan) -> list[str]:
    return [type(s).__name__ for s in p.steps]


def test_fresh_plan_creates_file_reserves_pools_and_writes_label(tmp_path: Path) -> None:
    config = load(tmp_path, config_text(objs="16MiB"))
    p = provision.plan(config)
    assert kinds(p) == ["CreateFile", "ReservePool", "ReservePool", "WriteLabel"]
    assert not (tmp_path / "var").exists(), "planning must not touch anything"
    items, objs = p.regions["items"], p.regions["objs"]
    assert items.offset == LABEL_BYTES and items.size == percent_bytes(64 * MiB, Decimal(50))
    assert objs.offset % MiB == 0 and objs.offset >= items.end
    assert "create file" in p.lines()[0] and "64MiB" in p.lines()[0]
    assert p.lines()[2].endswith("(objects)")
    provision.apply(p, config, progress=lambda line: None)
    dev = tmp_path / "var" / "dev.dat"
    assert dev.stat().st_size == 64 * MiB
    assert provision.decode_label(dev.read_bytes()[:4096], "x") == sorted(
        [items, objs], key=lambda r: r.offset)


def test_rerun_is_a_no_op_and_changes_no_byte(tmp_path: Path) -> None:
    text = config_text(objs="8MiB")
    provisioned(tmp_path, text)
    dev = tmp_path / "var" / "dev.dat"
    before = snapshot(dev)
    again = provision.plan(load(tmp_path, text))
    assert again.steps == () and again.lines() == ["nothing to do"]
    provision.apply(again, load(tmp_path, text), progress=lambda line: None)
    assert snapshot(dev) == before


def test_grow_keeps_offsets_and_extends_the_file(tmp_path: Path) -> None:
    first = provisioned(tmp_path, config_text(items="16MiB"))
    p = provision.plan(load(tmp_path, config_text(items="40MiB", device="128MiB")))
    assert kinds(p) == ["ExtendFile", "WriteLabel", "GrowPool"]
    assert p.regions["items"].offset == first.regions["items"].offset
    assert p.regions["items"].size == 40 * MiB
    assert "grow pool items on d from 16MiB to 40MiB" in p.lines()
    grown: list[provision.GrowPool] = []
    provision.apply(p, load(tmp_path, config_text(items="40MiB", device="128MiB")),
                    progress=lambda line: None, grower=grown.append)
    assert [g.region.size for g in grown] == [40 * MiB]
    assert (tmp_path / "var" / "dev.dat").stat().st_size == 128 * MiB


def test_grow_blocked_by_the_next_pool_is_refused(tmp_path: Path) -> None:
    provisioned(tmp_path, config_text(items="16MiB", objs="8MiB"))
    dev = tmp_path / "var" / "dev.dat"
    before = snapshot(dev)
    with pytest.raises(provision.ProvisionError,
                       match=r"storage\.pools\[0\]\.size: pool cannot grow to 24MiB on d"):
        provision.plan(load(tmp_path, config_text(items="24MiB", objs="8MiB")))
    assert snapshot(dev) == before


def test_shrink_is_refused_unless_allowed(tmp_path: Path) -> None:
    provisioned(tmp_path, config_text(items="32MiB"))
    dev = tmp_path / "var" / "dev.dat"
    before = snapshot(dev)
    with pytest.raises(provision.ProvisionError) as err:
        provision.plan(load(tmp_path, config_text(items="16MiB")))
    assert str(err.value).startswith("storage.pools[0].size: shrinking pool items from 32MiB "
                                     "to 16MiB would evict items; refused (set allow_shrink")
    assert snapshot(dev) == before


def test_allowed_shrink_calls_the_shrinker_before_the_label(tmp_path: Path) -> None:
    provisioned(tmp_path, config_text(items="32MiB"))
    text = config_text(items="16MiB", extra=", allow_shrink: true")
    p = provision.plan(load(tmp_path, text))
    assert kinds(p) == ["ShrinkPool", "WriteLabel"]
    calls: list[tuple[int, int]] = []
    provision.apply(p, load(tmp_path, text), progress=lambda line: None,
                    shrinker=lambda s: calls.append((s.old, s.region.size)))
    assert calls == [(32 * MiB, 16 * MiB)]
    assert provision.plan(load(tmp_path, text)).steps == ()


def test_shrink_without_a_shrinker_stops(tmp_path: Path) -> None:
    provisioned(tmp_path, config_text(items="32MiB"))
    text = config_text(items="16MiB", extra=", allow_shrink: true")
    with pytest.raises(provision.ProvisionError, match="appliance stopped"):
        provision.apply(provision.plan(load(tmp_path, text)), load(tmp_path, text),
                        progress=lambda line: None)


def test_config_that_does_not_fit_names_the_pool(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load(tmp_path, config_text(items="60MiB", objs="8MiB"))
    assert str(err.value).startswith("c.yaml:8: storage.pools[1].size: pools on device 'd' "
                                     "need 69MiB")


def test_device_smaller_than_its_label_is_refused(tmp_path: Path) -> None:
    provisioned(tmp_path, config_text(items="40MiB", objs="16MiB", device="64MiB"))
    with pytest.raises(ConfigError):  # the config alone already can't hold both pools
        load(tmp_path, config_text(items="40MiB", objs="16MiB", device="32MiB"))
    with pytest.raises(provision.ProvisionError, match="ends at .* but the device holds"):
        provision.plan(load(tmp_path, config_text(items="12MiB", device="32MiB",
                                                  extra=", allow_shrink: true")))


def test_missing_block_device_is_named_and_nothing_is_created(tmp_path: Path) -> None:
    config = load(tmp_path, config_text(kind="block", device="", path="/dev/no-such-disk"))
    with pytest.raises(provision.ProvisionError,
                       match=r"storage\.devices\[0\]\.path: block device /dev/no-such-disk "
                             r"does not exist"):
        provision.plan(config)
    assert not (tmp_path / "var").exists()


def test_regular_file_as_block_device_is_refused(tmp_path: Path) -> None:
    (tmp_path / "img").write_bytes(b"")
    config = load(tmp_path, config_text(kind="block", device="", path="img"))
    with pytest.raises(provision.ProvisionError, match="is not a block device"):
        provision.plan(config)


def test_block_pool_percent_is_unresolved_until_probed(tmp_path: Path) -> None:
    config = load(tmp_path, config_text(kind="block", device="", path="/dev/x", items="25%"))
    pool = config.storage.memcached_pool
    assert not pool.resolved and pool.size_percent == Decimal(25)


def test_percent_math() -> None:
    assert percent_bytes(64 * MiB, Decimal(100)) == 63 * MiB
    assert percent_bytes(64 * MiB, Decimal(50)) == 31 * MiB  # 31.5 rounded down to a MiB
    assert percent_bytes(1024**3, Decimal("12.5")) == 127 * MiB
    assert percent_bytes(LABEL_BYTES, Decimal(100)) == 0


def test_two_halves_fit_exactly(tmp_path: Path) -> None:
    p = provision.plan(load(tmp_path, config_text(items="50%", objs="50%")))
    assert p.regions["objs"].end <= 64 * MiB
    assert p.regions["objs"].offset == p.regions["items"].end


def test_percent_over_100_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"add up to 110% of it"):
        load(tmp_path, config_text(items="60%", objs="50%"))


def test_segment_size_change_is_refused(tmp_path: Path) -> None:
    provisioned(tmp_path, config_text())
    text = config_text().replace("segment_size: 2MiB", "segment_size: 4MiB")
    with pytest.raises(provision.ProvisionError,
                       match=r"storage\.pools\[0\]\.segment_size: .* recreating the pool"):
        provision.plan(load(tmp_path, text))


def test_foreign_data_and_old_stores_are_never_overwritten(tmp_path: Path) -> None:
    dev = tmp_path / "var" / "dev.dat"
    dev.parent.mkdir()
    dev.write_bytes(b"not ours" + bytes(8000))
    with pytest.raises(provision.ProvisionError, match="not a SmartSwitch device label"):
        provision.plan(load(tmp_path, config_text()))
    dev.write_bytes(b"SSSPOOL1" + bytes(8000))
    with pytest.raises(provision.ProvisionError, match="formatted before device labels"):
        provision.plan(load(tmp_path, config_text()))
    assert dev.read_bytes()[:8] == b"SSSPOOL1"


def test_damaged_label_is_refused(tmp_path: Path) -> None:
    provisioned(tmp_path, config_text())
    dev = tmp_path / "var" / "dev.dat"
    with open(dev, "r+b") as f:
        f.seek(40)
        f.write(b"X")
    with pytest.raises(provision.ProvisionError, match="damaged"):
        provision.plan(load(tmp_path, config_text()))


def test_dropped_pool_keeps_its_space(tmp_path: Path) -> None:
    first = provisioned(tmp_path, config_text(items="16MiB", objs="8MiB"))
    p = provision.plan(load(tmp_path, config_text(items="16MiB")))
    assert p.steps == ()
    assert any("objs" in n and "stays reserved" in n for n in p.notes)
    assert p.regions["objs"] == first.regions["objs"]


def test_state_lists_devices_and_pools(tmp_path: Path) -> None:
    text = config_text(objs="8MiB")
    provisioned(tmp_path, text)
    st = provision.state(load(tmp_path, text))
    assert [d["name"] for d in st["devices"]] == ["d"]
    assert [(p["name"], p["served"]) for p in st["pools"]] == [("items", True),
                                                              ("objs", False)]
    assert st["pending"] == []

