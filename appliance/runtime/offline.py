"""The store opened with no listeners: provisioning (whose shrink needs it) and
verify-index, with the appliance stopped.
"""

from __future__ import annotations

import logging

from appliance import StartError
from appliance.config import Config
from appliance.runtime.settings import create_dataplane, dataplane_settings
from appliance.storage import provision
from appliance.storage.serving import plan_storage, prepare_storage
from dataplane.fastpath import DataplaneError, load

log = logging.getLogger("smartswitch")


def shrink_offline(config: Config, step: provision.ShrinkPool,
                   layout: provision.Plan | None = None) -> None:
    """Shrink the memcached pool with the appliance stopped: open the store
    at its old size with no listeners, evict what no longer fits, close."""
    old = provision.PoolRegion(step.region.name, step.region.role, step.region.offset,
                               step.old, step.region.segment_size)
    device = provision.served_driver(config).open_store_device(
        config, layout or provision.Plan((), {}, {}))
    dp = create_dataplane(dataplane_settings(config, listen=False, region=old,
                                             store_device=device))
    try:
        before = dp.store_stats()["curr_items"]
        dp.shrink_pool(step.region.size)
        after = dp.store_stats()["curr_items"]
        log.info("  pool %s: %d items kept, %d evicted", step.region.name, after,
                 before - after)
    finally:
        dp.destroy()


def provision_storage(config: Config, p: provision.Plan | None = None, *,
                      dry_run: bool = False,
                      say: provision.Progress | None = None) -> provision.Plan:
    """Plan and (unless dry_run) apply provisioning; the runner's and the CLI's action.

    Every check runs before the first change, so a refused plan touches nothing.

    Raises:
        StartError: a device is missing, too small or unusable, or a change was refused.
    """
    say = say or log.info
    p = p or plan_storage(config)
    for note in p.notes:
        say(f"note: {note}")
    served = config.objects.pool if config.objects and config.objects.enabled else None
    reserved = [r.name for r in p.regions.values() if r.role == "objects" and r.name != served]
    if reserved:
        say(f"objects pools {', '.join(reserved)}: space reserved, not served (no objects "
            f"section names them)")
    if dry_run or not p.steps:
        return p
    try:
        provision.apply(p, config, shrinker=lambda step: shrink_offline(config, step, p),
                        progress=say)
    except (provision.ProvisionError, DataplaneError) as exc:
        raise StartError(f"provisioning failed: {exc}") from None
    except OSError as exc:
        raise StartError(f"provisioning failed: {exc.filename or ''}: {exc.strerror}") from None
    return p


def verify_index(config: Config) -> tuple[int, int]:
    """Open the store with no listeners and check every index entry.

    Returns:
        (checked, failed).

    Raises:
        StartError: no store there, or it is in use.
    """
    load()
    prepare_storage(config, create=False)
    layout = plan_storage(config)
    pool = config.storage.memcached_pool
    if any(getattr(s, "region", None) is not None and s.region.name == pool.name
           for s in layout.steps):
        raise StartError(f"pool {pool.name} is not provisioned as the config says "
                         f"({'; '.join(layout.lines())}); run `smartswitch provision` first")
    store_device = provision.served_driver(config).open_store_device(config, layout)
    dp = create_dataplane(dataplane_settings(config, listen=False,
                                             region=provision.memcached_region(layout, config),
                                             capacity=layout.devices[pool.device],
                                             store_device=store_device))
    try:
        return dp.verify_index()
    finally:
        dp.destroy()
