"""Capacity provisioning: lay the config's pools out on its devices.

Pure planning, then one applier (the shape of appliance.runtime.reload):

* ``plan(config)`` asks each device's driver to probe it (read only) and returns a
  ``Plan``: the steps that make the devices match the config (create or extend a file,
  reserve a pool, grow or shrink one, write the label; create or resize an lvol, export
  it), or raises ProvisionError naming the device and the YAML path when something is
  missing, too small or would lose data unasked. Nothing is written while planning, so a
  refused plan leaves every device untouched.
* ``apply(plan, ...)`` performs the steps in order, reporting progress; each step knows
  how to apply itself.

Device kinds plug in through ``DeviceDriver`` (appliance.storage.steps), one per
``storage.devices[].kind``: ``file`` and ``block`` carry a label
(appliance.storage.labelled); ``spdk`` devices carry none, their pools are lvols on an
SPDK target (appliance.storage.spdk, imported only when such a device is configured).
"""

from __future__ import annotations

import logging
from typing import Callable

from appliance.config import POOL_ALIGN, Config
from appliance.storage.labelled import (
    LABEL_DRIVERS,
    CreateFile,
    ExtendFile,
    ReservePool,
    WriteLabel,
    decode_label,
    encode_label,
)
from appliance.storage.steps import (
    Applying,
    DeviceDriver,
    Draft,
    Grower,
    GrowPool,
    Plan,
    PoolRegion,
    Progress,
    ProvisionError,
    Shrinker,
    ShrinkPool,
    Step,
    device_where,
)

log = logging.getLogger("smartswitch")


def _load_spdk() -> DeviceDriver:
    from appliance.storage import (
        spdk,  # spdk_bindings only when a kind: spdk device exists
    )

    return spdk.DRIVER


# kind -> its driver; the kinds in _LOADERS are imported on first use.
DRIVERS: dict[str, DeviceDriver] = dict(LABEL_DRIVERS)
_LOADERS: dict[str, Callable[[], DeviceDriver]] = {"spdk": _load_spdk}


def driver(kind: str) -> DeviceDriver | None:
    """The driver of a device kind (None: not supported)."""
    if kind not in DRIVERS and kind in _LOADERS:
        DRIVERS[kind] = _LOADERS[kind]()
    return DRIVERS.get(kind)


def served_driver(config: Config) -> DeviceDriver:
    """The driver of the device the memcached pool is on (validation knows the kind)."""
    found = driver(config.storage.device(config.storage.memcached_pool.device).kind)
    assert found is not None
    return found


def plan(config: Config) -> Plan:
    """Probe every device (read only) and plan the changes the config asks for.

    Raises:
        ProvisionError: a device is missing, too small or unusable, or the
            change would lose data unasked; nothing has been touched.
    """
    draft = Draft()
    for dev in config.storage.devices:
        kind = driver(dev.kind)
        if kind is None:
            raise ProvisionError(f"{device_where(config, dev)}: kind {dev.kind} is not "
                                 f"supported yet")
        draft.devices[dev.name] = kind.plan(config, dev, draft)
    return draft.plan()


def apply(p: Plan, config: Config, *, shrinker: Shrinker | None = None,
          progress: Progress | None = None, grower: Grower | None = None) -> None:
    """Perform a plan's steps in order.

    Args:
        p: from plan(), on the same config.
        config: the config it was planned from.
        shrinker: shrinks a store offline (the runner opens it with no
            listeners); required when the plan has a ShrinkPool step.
        progress: receives one line per step as it starts (and progress
            lines for slow ones); default: the log.
        grower: grows a pool that is being served (reload); None at start,
            where the store grows itself when opened at the larger size.
    """
    run = Applying(p, progress or log.info, shrinker, grower)
    for step in p.steps:
        run.say(step.describe())
        step.apply(run)


def state(config: Config, p: Plan | None = None) -> dict[str, object]:
    """Devices and pools for stats and the console (what the labels say)."""
    p = p or plan(config)
    devices = []
    for d in config.storage.devices:
        dev: dict[str, object] = {"name": d.name, "kind": d.kind,
                                  "path": None if d.path is None else str(d.path),
                                  "capacity": p.devices.get(d.name, 0)}
        dev.update(driver(d.kind).device_state(p, d))
        devices.append(dev)
    pools = []
    for pool in config.storage.pools:
        r = p.regions[pool.name]
        entry: dict[str, object] = {
            "name": r.name, "role": r.role, "device": pool.device, "offset": r.offset,
            "size": r.size, "segment_size": r.segment_size, "served": r.role == "memcached"}
        entry.update(driver(config.storage.device(pool.device).kind).pool_state(p, pool))
        pools.append(entry)
    return {"devices": devices, "pools": pools, "pending": p.lines() if p.steps else []}


def memcached_region(p: Plan, config: Config) -> PoolRegion:
    """The region of the one served pool."""
    return p.regions[config.storage.memcached_pool.name]


__all__ = ["ProvisionError", "Plan", "PoolRegion", "DeviceDriver", "DRIVERS", "driver",
           "served_driver", "plan", "apply", "state", "memcached_region", "encode_label",
           "decode_label", "POOL_ALIGN", "Step", "GrowPool", "ShrinkPool", "CreateFile",
           "ExtendFile", "ReservePool", "WriteLabel", "Shrinker", "Grower", "Progress"]
