"""The data plane's settings as Python sees them: one frozen dataclass per C settings
struct (dataplane/include/ss_dataplane.h, ss_store.h, ss_objects.h), field for field, the
ranges Python checks before cffi would wrap or raise, and their translation to cdata.
dataplane/fastpath.py creates the data plane from them (and re-exports them).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class StoreSettings:
    """struct ss_store_settings (field for field)."""

    index_dir: str
    device_path: str
    device_bytes: int
    segment_bytes: int
    hot_bytes: int
    item_size_max: int
    index_map_bytes: int
    flush_interval_ms: int
    # Appended for issue 4 (provisioning): the pool's place on its device.
    device_offset: int = 0
    pool_name: str = "items"
    # Appended (direct I/O): open the device O_DIRECT (storage.devices[].direct_io).
    direct_io: bool = False
    # Appended (direct segment writes): without direct_io, write the log's
    # segments O_DIRECT all the same (storage.devices[].direct_writes).
    direct_writes: bool = True
    # Appended (SPDK data path): an opened device (cdata `void *`, from
    # spdk_bindings.datapath.SpdkDataPath.open_namespace) used instead of
    # device_path; Dataplane.create hands it to C, which owns it from then on.
    device: Any = None


@dataclass(frozen=True)
class BucketSettings:
    """struct ss_bucket_settings (field for field); kind: BUCKET_KINDS."""

    name: str
    kind: int = 0
    origin_addr: str | None = None
    origin_port: int = 0
    origin_path: str | None = None
    origin_host: str | None = None
    origin_timeout_ms: int = 0
    default_ttl_s: int = 0
    flash_admission: int = 0
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = field(default=None, repr=False)
    s3_region: str | None = None
    origin_tls: int = 0
    origin_tls_name: str | None = None
    origin_ca_file: str | None = None


BUCKET_KINDS = {"local": 0, "http": 1, "s3": 2}
# enum ss_flash_admission: when a cached bucket's fetched copy goes to flash.
FLASH_ADMISSIONS = {"miss": 0, "second_request": 1}


@dataclass(frozen=True)
class ObjectsSettings:
    """struct ss_objects_settings (field for field); the buckets as a tuple."""

    listen_host: str
    port: int
    store: StoreSettings
    chunk_bytes: int
    max_object_bytes: int
    max_head_bytes: int
    max_fields: int
    max_uri_bytes: int
    request_timeout_ms: int
    keepalive_timeout_ms: int
    buckets: tuple[BucketSettings, ...] = ()


@dataclass(frozen=True)
class DataplaneSettings:
    """struct ss_dataplane_settings (field for field). Ports: -1 = none, 0 = any."""

    listen_host: str
    tcp_port: int
    udp_port: int
    workers: int
    max_connections: int
    idle_timeout_s: int
    tcp_backlog: int
    udp_reply_bytes_per_sec: int
    udp_reply_burst_bytes: int
    version: str
    store: StoreSettings
    # Appended (object requests): the HTTP listener and objects pool; None = off.
    objects: ObjectsSettings | None = None


_UINT32 = (0, 2**32 - 1)
_UINT64 = (0, 2**64 - 1)
_RANGES: dict[str, tuple[int, int]] = {
    "tcp_port": (-1, 65535),
    "port": (0, 65535),
    "chunk_bytes": (4096, 2**31),
    "max_object_bytes": (1, 2**63),
    "udp_port": (-1, 65535),
    "workers": (1, 1024),
    "max_connections": (1, 2**32 - 1),
    "idle_timeout_s": _UINT32,
    "tcp_backlog": (1, 65535),
    "udp_reply_bytes_per_sec": _UINT32,
    "udp_reply_burst_bytes": _UINT32,
    "device_bytes": (1, 2**64 - 1),
    "segment_bytes": (1, 2**32 - 1),
    "hot_bytes": _UINT64,
    "item_size_max": (1, 2**32 - 1),
    "index_map_bytes": _UINT64,
    "flush_interval_ms": _UINT32,
    "device_offset": _UINT64,
}


def _fill(target: Any, source: Any, cstr: Any) -> None:
    """Copy a settings dataclass into its C struct; None stays NULL or 0."""
    for f in dataclasses.fields(source):
        value = getattr(source, f.name)
        if value is None:
            continue  # NULL (ffi.new zeroes the struct)
        setattr(target, f.name, cstr(value) if isinstance(value, str) else value)


def _objects_cdata(ffi: Any, keep: list[Any], cstr: Any, o: ObjectsSettings) -> Any:
    """struct ss_objects_settings * for o, its buckets in an array kept alive with it."""
    c = ffi.new("struct ss_objects_settings *")
    keep.append(c)
    for f in dataclasses.fields(o):
        if f.name in ("store", "buckets"):
            continue
        value = getattr(o, f.name)
        setattr(c, f.name, cstr(value) if isinstance(value, str) else value)
    _fill(c.store, o.store, cstr)
    buckets = ffi.new("struct ss_bucket_settings[]", max(1, len(o.buckets)))
    keep.append(buckets)
    for i, b in enumerate(o.buckets):
        _fill(buckets[i], b, cstr)
    c.nbuckets = len(o.buckets)
    c.buckets = buckets
    return c


def _validate(settings: Any) -> None:
    """Refuse out-of-range integers here rather than let cffi wrap or raise."""
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if f.name in _RANGES:
            lo, hi = _RANGES[f.name]
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                raise ValueError(f"{f.name} must be an integer from {lo} to {hi}, got {value!r}")
        elif isinstance(value, str) and "\0" in value:
            raise ValueError(f"{f.name} must not contain NUL")
