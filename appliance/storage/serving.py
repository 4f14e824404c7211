"""The served pool's storage at start-up, and the storage state the console shows.

What the runner and the CLI ask of storage before and while the data plane runs: make
its directories (``prepare_storage``), plan provisioning (``plan_storage``), the store's
part of the data-plane settings (``store_settings``), and the devices and pools with
their live figures (``storage_state``). Whatever differs per device kind is asked of the
kind's driver (appliance.storage.provision.served_driver).
"""

from __future__ import annotations

import socket
from typing import Any

from appliance import StartError
from appliance.config import LABEL_BYTES, Config
from appliance.storage import provision
from appliance.storage.steps import device_where
from dataplane.fastpath import (BUCKET_KINDS, FLASH_ADMISSIONS, BucketSettings, Dataplane, ObjectsSettings,
                                StoreSettings)


def prepare_storage(config: Config, *, create: bool = True) -> None:
    """Create storage.dir, its index directory and the device's directory,
    and make sure the device file can be opened for reading and writing.

    Args:
        config: the validated config.
        create: False only checks (verify-index must not create a store).

    Raises:
        StartError: naming the setting, the path and what to do.
    """
    storage = config.storage
    for what, path in (("storage.dir", storage.dir), ("storage.dir", storage.index_dir)):
        if create:
            try:
                path.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StartError(f"{what}: cannot create {path}: {exc.strerror}; create it "
                                 f"or point {what} at a writable place") from None
        elif not path.is_dir():
            raise StartError(f"{what}: there is no store at {path}; nothing to verify "
                             f"(start smartswitch with this config first)")
    pool = storage.memcached_pool
    device = storage.device(pool.device)
    if not create and not provision.served_driver(config).may_hold_store(device):
        where = f"{device_where(config, device)}.path"
        raise StartError(f"{where}: {device.path} does not exist; nothing to verify")


def plan_storage(config: Config) -> provision.Plan:
    """The provisioning plan (read only); StartError when it can't be done."""
    try:
        return provision.plan(config)
    except provision.ProvisionError as exc:
        raise StartError(f"{config.source or 'config'}: {exc}") from None
    except OSError as exc:
        raise StartError(f"cannot probe the storage devices: {exc}") from None


def store_settings(config: Config, *, region: provision.PoolRegion | None = None,
                   capacity: int | None = None, device: Any = None) -> StoreSettings:
    """The store's part of struct ss_dataplane_settings (pure: touches no file).

    Args:
        config: the validated config.
        region: the memcached pool's place on its device (from the provisioning plan);
            default: the first pool after the label.
        capacity: the device's size (from the plan), which sizes the index map so the
            pool can grow to the whole device without a restart.
        device: the `struct ss_device *` the pool's driver opened (open_store_device),
            given to the store as ss_store_settings.device; None: the store opens the
            device's path.
    """
    mc = config.memcached
    storage = config.storage
    pool = storage.memcached_pool
    dev = storage.device(pool.device)
    offset = region.offset if region is not None else LABEL_BYTES
    nbytes = region.size if region is not None else int(pool.size)
    capacity = capacity or dev.size or offset + nbytes
    # The device pointer goes in ss_store_settings.device (added with the SPDK data path).
    extra = {} if device is None else {"device": device}
    return StoreSettings(
        index_dir=str(storage.index_dir),
        device_path=provision.served_driver(config).store_path(dev, pool),
        device_bytes=nbytes,
        segment_bytes=pool.segment_size,
        hot_bytes=storage.hot_tier,
        item_size_max=mc.item_size_max,
        # LMDB's map is address space, not memory; small items can take more
        # index than device bytes (ss_index.c derives 2x + 64MiB the same way).
        index_map_bytes=2 * capacity + 64 * 1024**2,
        flush_interval_ms=storage.flush_interval,
        device_offset=offset,
        pool_name=pool.name,
        direct_io=bool(dev.direct_io),
        direct_writes=dev.direct_writes,
        **extra,
    )


def objects_settings(config: Config, layout: provision.Plan) -> ObjectsSettings | None:
    """The HTTP listener and the objects pool's store (pure), or None when off.

    The objects pool is a store of its own beside the memcached pool's: its own index
    directory (storage.dir/index-<pool>), its item size the chunk size.
    """
    o = config.objects
    if o is None or not o.enabled:
        return None
    storage = config.storage
    pool = next(p for p in storage.pools if p.name == o.pool)
    dev = storage.device(pool.device)
    region = layout.regions[pool.name]
    capacity = layout.devices.get(pool.device) or region.end
    drv = provision.driver(dev.kind)
    assert drv is not None  # validation knows the kind
    store = StoreSettings(
        index_dir=str(storage.dir / f"index-{pool.name}"),
        device_path=drv.store_path(dev, pool),
        device_bytes=region.size,
        segment_bytes=pool.segment_size,
        hot_bytes=o.hot_tier,
        item_size_max=o.chunk_size,
        index_map_bytes=2 * capacity + 64 * 1024**2,
        flush_interval_ms=storage.flush_interval,
        device_offset=region.offset,
        pool_name=pool.name,
        direct_io=bool(dev.direct_io),
        direct_writes=dev.direct_writes,
    )
    return ObjectsSettings(
        listen_host=o.host, port=o.port, store=store, chunk_bytes=o.chunk_size,
        max_object_bytes=o.max_object_size, max_head_bytes=o.max_header_size,
        max_fields=o.max_headers, max_uri_bytes=o.max_uri_size,
        request_timeout_ms=o.request_timeout, keepalive_timeout_ms=o.keepalive_timeout,
        buckets=tuple(_bucket_settings(i, b) for i, b in enumerate(o.buckets)))


def _bucket_settings(i: int, b: Any) -> BucketSettings:
    """One bucket for C; an origin's host name is resolved here, once, at start."""
    if b.origin is None:
        return BucketSettings(name=b.name, kind=BUCKET_KINDS[b.kind])
    host, port, _, tls = b.origin
    try:
        addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][4][0]
    except OSError as exc:
        raise StartError(f"objects.buckets[{i}].origin: cannot resolve {host}: {exc}; use an "
                         "address, or a name this host resolves") from None
    cred = b.origin_credentials
    return BucketSettings(name=b.name, kind=BUCKET_KINDS[b.kind], origin_addr=addr,
                          origin_port=port, origin_path=b.origin_path, origin_host=b.origin_host_field,
                          origin_timeout_ms=b.origin_timeout, default_ttl_s=b.default_ttl // 1000,
                          flash_admission=FLASH_ADMISSIONS[b.flash_admission_or_default],
                          s3_access_key_id=cred.access_key_id if cred else None,
                          s3_secret_access_key=cred.secret_access_key if cred else None,
                          s3_region=cred.region if cred else None, origin_tls=int(tls),
                          origin_tls_name=host if tls else None,
                          origin_ca_file=str(b.origin_ca_file) if b.origin_ca_file else None)


def storage_state(config: Config, dp: Dataplane | None = None) -> dict[str, Any]:
    """Devices, pools and provisioning state for stats and the console.

    The label side comes from the devices (read only); the served pool's
    live figures (segments used, grows) from the data plane when given.
    """
    try:
        out: dict[str, Any] = provision.state(config)
    except provision.ProvisionError as exc:
        out = {"devices": [], "pools": [], "pending": [], "error": str(exc)}
    if dp is not None:
        live = dp.storage_state()
        for pool in out["pools"]:
            if pool["served"]:
                pool.update({k: v for k, v in live.items() if k != "offset"})
    return out
