"""Thin wrapper over the C data plane, 1:1 with the cffi parts of dataplane/include/.

Arguments are checked here, C is called, ``0 / -errno`` becomes a value or a
typed DataplaneError, and only Python objects come back (never cdata). Every
call crosses into C per control event, never per request; cffi releases the
GIL for the duration of each call, so a worker blocked in
ss_dataplane_run_worker() costs Python nothing.

The compiled module is imported lazily so that `smartswitch check` and the
unit tests work without a build; the first use refuses a build whose ABI
version differs from EXPECTED_ABI_VERSION, the digest of the declarations
in the headers installed beside this file (dataplane/_cdef.py).
"""

from __future__ import annotations

import dataclasses
import functools
import errno as _errno
import os
from dataclasses import dataclass
from typing import Any

from dataplane import _cdef
from dataplane.settings import (  # re-exported: callers import them from here
    _UINT32,
    BUCKET_KINDS,
    FLASH_ADMISSIONS,
    BucketSettings,
    DataplaneSettings,
    ObjectsSettings,
    StoreSettings,
    _fill,
    _objects_cdata,
    _validate,
)

# What ss_abi_version() of a module built from these headers returns.
EXPECTED_ABI_VERSION = _cdef.abi_stamp(_cdef.regions())
_ERR_LEN = 512
_REBUILD = "rebuild it with `make build` (or `python3 -m pip install --no-deps " \
           "--no-build-isolation -e .`)"


class DataplaneError(Exception):
    """A data-plane call failed.

    Attributes:
        errno: the positive errno the C call returned (0 when not from errno).
        remedy: what an operator can do about it ("" when nothing specific).
    """

    errno_codes: tuple[int, ...] = ()
    remedy: str = ""

    def __init__(self, message: str, errno: int = 0) -> None:
        super().__init__(message)
        self.errno = errno


class DataplaneUnavailable(DataplaneError):
    """The compiled module is missing or from an older/newer build."""

    remedy = _REBUILD


class DataplaneCreateError(DataplaneError):
    """ss_dataplane_create() refused; the message is C's own explanation."""


class DeviceIOError(DataplaneError):
    """The device failed a read or write."""

    errno_codes = (_errno.EIO,)
    remedy = "check the device and the kernel log (dmesg)"


class OutOfSpaceError(DataplaneError):
    """The device or the index map is full."""

    errno_codes = (_errno.ENOSPC,)
    remedy = "free space on the file system or shrink the pool"


class OutOfMemoryError(DataplaneError):
    """An allocation failed in the data plane."""

    errno_codes = (_errno.ENOMEM,)
    remedy = "lower storage.hot_tier or memcached.max_connections"


class StoreBusyError(DataplaneError):
    """The store or index is held by someone else."""

    errno_codes = (_errno.EBUSY, _errno.EAGAIN)
    remedy = "stop the other smartswitch using this storage.dir first"


class PermissionDeniedError(DataplaneError):
    """The process may not open or bind what the config names."""

    errno_codes = (_errno.EACCES, _errno.EPERM)
    remedy = "fix the file permissions or run as a user allowed to use them"


class InvalidArgumentError(DataplaneError):
    """C rejected an argument the wrapper let through (a bug on our side)."""

    errno_codes = (_errno.EINVAL, _errno.ERANGE)


class IndexCorruptError(DataplaneError):
    """LMDB reported a corrupt or incompatible index."""

    errno_codes = (_errno.EILSEQ, _errno.EBADMSG)
    remedy = "run `smartswitch verify-index`; remove storage.dir/index to start cold"


_ERRORS: dict[int, type[DataplaneError]] = {
    code: cls
    for cls in (DeviceIOError, OutOfSpaceError, OutOfMemoryError, StoreBusyError,
                PermissionDeniedError, InvalidArgumentError, IndexCorruptError)
    for code in cls.errno_codes
}


def c_string(ffi: Any, keep: list[Any], text: str) -> Any:
    """A NUL-terminated copy of text for a C struct field; kept alive in keep."""
    buf = ffi.new("char[]", text.encode())
    keep.append(buf)
    return buf


def _check(rc: int, what: str) -> int:
    """Return rc when >= 0; raise the typed exception for -errno otherwise."""
    if rc >= 0:
        return rc
    code = -rc
    cls = _ERRORS.get(code, DataplaneError)
    message = f"{what}: {os.strerror(code)}"
    if cls.remedy:
        message += f"; {cls.remedy}"
    raise cls(message, code)


_ffi: Any = None
_lib: Any = None


def load() -> tuple[Any, Any]:
    """Import the compiled module once and verify its ABI version.

    Returns:
        (ffi, lib) of dataplane._fastpath.

    Raises:
        DataplaneUnavailable: not built, or built from other headers.
    """
    global _ffi, _lib
    if _lib is None:
        try:
            from dataplane import _fastpath  # type: ignore[attr-defined]
        except ImportError as exc:
            raise DataplaneUnavailable(
                f"the C data plane is not built ({exc}); {_REBUILD}") from None
        found = _fastpath.lib.ss_abi_version()
        if found != EXPECTED_ABI_VERSION:
            raise DataplaneUnavailable(
                f"the C data plane is a stale build (ABI {found}, this code expects "
                f"{EXPECTED_ABI_VERSION}); {_REBUILD}")
        _ffi, _lib = _fastpath.ffi, _fastpath.lib
    return _ffi, _lib


class Dataplane:
    """One running data plane (ss_dataplane_create .. ss_dataplane_destroy).

    The C strings the settings point at are owned by this object, so they
    live exactly as long as the data plane that may read them.
    """

    def __init__(self, ffi: Any, lib: Any, handle: Any, keepalive: list[Any]) -> None:
        self._ffi = ffi
        self._lib = lib
        self._dp = handle
        self._keepalive = keepalive
        self._counter_names: tuple[str, ...] | None = None

    @classmethod
    def create(cls, settings: DataplaneSettings) -> Dataplane:
        """Wraps ss_dataplane_create(): bind listeners, open the store.

        settings.store.device, when set, is handed over by this call, whether it
        succeeds or not: the data plane closes it (see ss_store_settings.device).

        Raises:
            ValueError: a setting is out of range for its C type.
            DataplaneUnavailable: no usable build.
            DataplaneCreateError: C refused; the message says why.
        """
        try:
            _validate(settings)
            _validate(settings.store)
            if settings.objects is not None:
                _validate(settings.objects)
                _validate(settings.objects.store)
        except ValueError:
            if settings.store.device is not None:  # ours from this call on, as in C
                ffi, lib = load()
                lib.ss_device_close(ffi.cast("struct ss_device *", settings.store.device))
            raise
        ffi, lib = load()
        keep: list[Any] = []

        cstr = functools.partial(c_string, ffi, keep)

        s = ffi.new("struct ss_dataplane_settings *")
        keep.append(s)
        for f in dataclasses.fields(settings):
            if f.name in ("store", "objects"):
                continue
            value = getattr(settings, f.name)
            setattr(s, f.name, cstr(value) if isinstance(value, str) else value)
        _fill(s.store, settings.store, cstr)
        if settings.objects is not None:
            s.objects = _objects_cdata(ffi, keep, cstr, settings.objects)
        err = ffi.new("char[]", _ERR_LEN)
        handle = lib.ss_dataplane_create(s, err, _ERR_LEN)
        if handle == ffi.NULL:
            message = ffi.string(err).decode("utf-8", "replace") or "ss_dataplane_create failed"
            raise DataplaneCreateError(message)
        return cls(ffi, lib, handle, keep)

    def _handle(self) -> Any:
        if self._dp is None:
            raise DataplaneError("the data plane has been destroyed")
        return self._dp

    def run_worker(self, worker_id: int) -> None:
        """Wraps ss_dataplane_run_worker(): serve on this thread until stop()."""
        _check(self._lib.ss_dataplane_run_worker(self._handle(), worker_id),
               f"worker {worker_id}")

    def housekeep(self) -> None:
        """Wraps ss_dataplane_housekeep(): flush due segments, sync the index."""
        _check(self._lib.ss_dataplane_housekeep(self._handle()), "housekeeping")

    def stop(self) -> None:
        """Wraps ss_dataplane_stop(): ask every worker to return. Any thread."""
        if self._dp is not None:
            self._lib.ss_dataplane_stop(self._dp)

    def destroy(self) -> None:
        """Wraps ss_dataplane_destroy(); only after every worker has returned.

        Writes the open segment and closes the index. Idempotent.
        """
        if self._dp is not None:
            handle, self._dp = self._dp, None
            self._lib.ss_dataplane_destroy(handle)
            self._keepalive.clear()

    def bound_port(self, udp: bool) -> int | None:
        """Wraps ss_dataplane_bound_port(): the real port, None if no listener."""
        port = self._lib.ss_dataplane_bound_port(self._handle(), 1 if udp else 0)
        return port if port > 0 else None

    def objects_port(self) -> int | None:
        """Wraps ss_dataplane_objects_port(): the HTTP listener's port, None when off."""
        port = self._lib.ss_dataplane_objects_port(self._handle())
        return port if port > 0 else None

    def bucket_stats(self, index: int) -> dict[str, int]:
        """Wraps ss_dataplane_bucket_stats(): bucket `index`'s figures by name."""
        out = self._ffi.new("struct ss_bucket_stats *")
        _check(self._lib.ss_dataplane_bucket_stats(self._handle(), index, out),
               f"bucket {index} stats")
        return {name: int(getattr(out, name)) for name in bucket_stat_fields()}

    def objects_store_stats(self) -> dict[str, int]:
        """Wraps ss_dataplane_objects_store_stats(): the objects store's figures."""
        out = self._ffi.new("struct ss_store_stats *")
        _check(self._lib.ss_dataplane_objects_store_stats(self._handle(), out),
               "objects store stats")
        return {name: int(getattr(out, name))
                for name, _ in self._ffi.typeof("struct ss_store_stats").fields}

    def objects_purge(self, bucket: str, prefix: str = "") -> int:
        """Wraps ss_dataplane_objects_purge(): drop bucket's objects under prefix.

        Returns how many were dropped. Raises KeyError for an unknown bucket.
        """
        raw = prefix.encode()
        n = self._lib.ss_dataplane_objects_purge(self._handle(), bucket.encode(), raw, len(raw))
        if n == -_errno.ENOENT:
            raise KeyError(bucket)
        return _check(n, f"purge of bucket {bucket}")

    def counter_names(self) -> tuple[str, ...]:
        """Wraps ss_counter_count() / ss_counter_name(): the one counter list."""
        if self._counter_names is None:
            n = self._lib.ss_counter_count()
            self._counter_names = tuple(
                self._ffi.string(self._lib.ss_counter_name(i)).decode() for i in range(n))
        return self._counter_names

    def gauges(self) -> frozenset[str]:
        """Wraps ss_counter_is_gauge(): which counters go up and down."""
        names = self.counter_names()
        return frozenset(n for i, n in enumerate(names) if self._lib.ss_counter_is_gauge(i))

    def counters(self) -> dict[str, int]:
        """Wraps ss_dataplane_read_counters(): every counter summed over workers."""
        names = self.counter_names()
        out = self._ffi.new("uint64_t[]", len(names))
        _check(self._lib.ss_dataplane_read_counters(self._handle(), out, len(names)),
               "reading counters")
        return {name: int(out[i]) for i, name in enumerate(names)}

    def store_stats(self) -> dict[str, int]:
        """Wraps ss_dataplane_store_stats(): struct ss_store_stats as a dict."""
        out = self._ffi.new("struct ss_store_stats *")
        self._lib.ss_dataplane_store_stats(self._handle(), out)
        return {name: int(getattr(out, name))
                for name, _ in self._ffi.typeof("struct ss_store_stats").fields}

    def verify_index(self) -> tuple[int, int]:
        """Wraps ss_dataplane_verify_index(): check every entry against the device.

        Returns:
            (checked, failed): entries examined and entries that failed.
        """
        checked = self._ffi.new("uint64_t *")
        failed = _check(self._lib.ss_dataplane_verify_index(self._handle(), checked),
                        "verifying the index")
        return int(checked[0]), int(failed)

    # ---- pool capacity (issue 4): provisioning's grow and shrink ----

    def grow_pool(self, new_bytes: int) -> None:
        """Wraps ss_dataplane_grow_pool(): grow the memcached pool while serving.

        Args:
            new_bytes: the pool's new size, superblock included; the device
                must already hold device_offset + new_bytes.

        Raises:
            InvalidArgumentError: new_bytes gives fewer segments than now.
            DataplaneError: the superblock or the index could not be written.
        """
        _check(self._lib.ss_dataplane_grow_pool(self._handle(), _u64(new_bytes)),
               f"growing the pool to {new_bytes} bytes")

    def shrink_pool(self, new_bytes: int) -> None:
        """Wraps ss_dataplane_shrink_pool(): shrink, evicting what no longer fits.

        Only on a data plane with no worker running (created with no listeners).

        Raises:
            StoreBusyError: a worker is serving.
            InvalidArgumentError: new_bytes is larger than now, or under 2 segments.
        """
        _check(self._lib.ss_dataplane_shrink_pool(self._handle(), _u64(new_bytes)),
               f"shrinking the pool to {new_bytes} bytes")

    def storage_state(self) -> dict[str, int]:
        """The served pool as the store sees it (ss_dataplane_store_stats subset)."""
        st = self.store_stats()
        return {"offset": st["device_offset"], "capacity": st["device_bytes"],
                "segment_size": st["segment_bytes"], "segments": st["segments"],
                "segments_used": st["segments_used"], "used": st["device_used_bytes"],
                "grows": st["grows"], "items": st["curr_items"]}

    # ---- console (ss_inspect.h): latency histogram, key metadata, local flush ----

    def request_latency(self) -> tuple[list[int], int]:
        """Wraps ss_dataplane_read_latency(): request service time, summed over workers.

        Returns:
            (buckets, sum_ns): LATENCY_BUCKETS counts, where bucket i holds
            commands that took less than 2^i nanoseconds (the last one also
            everything slower), and the total nanoseconds measured.
        """
        out = self._ffi.new("uint64_t[]", LATENCY_BUCKETS)
        total = self._ffi.new("uint64_t *")
        n = _check(self._lib.ss_dataplane_read_latency(self._handle(), out, LATENCY_BUCKETS,
                                                       total),
                   "reading the latency histogram")
        return [int(out[i]) for i in range(n)], int(total[0])

    def key_info(self, key: bytes) -> dict[str, Any] | None:
        """Wraps ss_dataplane_key_info(): one key's metadata, without marking it fetched.

        Returns:
            tier ("dram" or "device"), flags, size (value bytes), exptime
            (unix seconds, 0 = never), cas, last_access (unix seconds),
            fetched (bool); None when the store does not hold the key.

        Raises:
            ValueError: key is empty or longer than 250 bytes.
            DeviceIOError: the record failed verification (it is dropped).
        """
        if not isinstance(key, bytes) or not 0 < len(key) <= KEY_MAX_LENGTH:
            raise ValueError(f"a key is 1 to {KEY_MAX_LENGTH} bytes")
        out = self._ffi.new("struct ss_key_info *")
        rc = self._lib.ss_dataplane_key_info(self._handle(), key, len(key), out)
        if rc == -_errno.ENOENT:
            return None
        _check(rc, "looking the key up")
        return {"tier": TIERS.get(int(out.tier), str(int(out.tier))), "flags": int(out.flags),
                "size": int(out.nbytes), "exptime": int(out.exptime), "cas": int(out.cas),
                "last_access": int(out.last_access), "fetched": bool(out.fetched)}

    def flush(self) -> None:
        """Wraps ss_dataplane_flush(): flush_all now, on this store only."""
        _check(self._lib.ss_dataplane_flush(self._handle()), "flushing the store")

    # ---- proxy mode (ss_proxy.h): routing table, back-end stats and states ----

    def set_routing(self, routing: RoutingSettings | None) -> None:
        """Wraps ss_dataplane_set_routing(): install or atomically replace the table.

        C copies the table, so the cdata built here lives only for the call.
        None (or no back ends) returns to standalone mode.

        Raises:
            ValueError: a value is out of range for its C type.
            DataplaneUnavailable: this build has no proxy mode.
            DataplaneError: C refused the table; the message is C's reason.
        """
        if not hasattr(self._lib, "ss_dataplane_set_routing"):
            raise DataplaneUnavailable(
                f"this data plane build has no proxy mode (ss_dataplane_set_routing); {_REBUILD}")
        if routing is None or not routing.backends:
            table = self._ffi.NULL
            keep: list[Any] = []
        else:
            _validate_routing(routing)
            table, keep = _routing_cdata(self._ffi, routing)
        err = self._ffi.new("char[]", _ERR_LEN)
        rc = self._lib.ss_dataplane_set_routing(self._handle(), table, err, _ERR_LEN)
        del keep  # C has copied the table
        if rc < 0:
            reason = self._ffi.string(err).decode("utf-8", "replace") or os.strerror(-rc)
            cls = _ERRORS.get(-rc, DataplaneError)
            raise cls(f"installing the routing table: {reason}", -rc)

    def backend_count(self) -> int:
        """Wraps ss_dataplane_backend_count(): back ends in the live table (0: standalone)."""
        if not hasattr(self._lib, "ss_dataplane_backend_count"):
            return 0
        return int(self._lib.ss_dataplane_backend_count(self._handle()))

    def backend_stats(self, index: int) -> dict[str, Any]:
        """Wraps ss_dataplane_backend_stats(): one back end's figures summed over workers.

        Returns:
            requests, errors, timeouts, in_flight, state_changes,
            consecutive_failures (ints); state (its name: up, down, draining,
            ejected); latency_us (the 2^i us histogram, a list); p50_us and
            p99_us (upper bounds of the buckets holding those percentiles, 0
            with no samples).

        Raises:
            LookupError: no back end with that index in the live table.
        """
        out = self._ffi.new("struct ss_backend_stats *")
        rc = self._lib.ss_dataplane_backend_stats(self._handle(), index, out)
        if rc == -_errno.ENOENT:
            raise LookupError(f"no back end with index {index}")
        _check(rc, f"back end {index} stats")
        hist = [int(out.latency_us[i]) for i in range(BACKEND_LATENCY_BUCKETS)]
        state = int(out.state)
        return {
            "state": BACKEND_STATES[state] if state < len(BACKEND_STATES) else str(state),
            "requests": int(out.requests),
            "errors": int(out.errors),
            "timeouts": int(out.timeouts),
            "in_flight": int(out.in_flight),
            "state_changes": int(out.state_changes),
            "consecutive_failures": int(out.consecutive_failures),
            "latency_us": hist,
            "p50_us": latency_percentile(hist, 0.50),
            "p99_us": latency_percentile(hist, 0.99),
        }

    def backend_set_state(self, index: int, state: str) -> None:
        """Wraps ss_dataplane_backend_set_state(): state is up, down, draining or ejected.

        Raises:
            ValueError: an unknown state name.
            LookupError: no back end with that index in the live table.
        """
        if state not in BACKEND_STATES:
            raise ValueError(f"state must be one of {', '.join(BACKEND_STATES)}, got {state!r}")
        rc = self._lib.ss_dataplane_backend_set_state(self._handle(), index,
                                                      BACKEND_STATES.index(state))
        if rc == -_errno.ENOENT:
            raise LookupError(f"no back end with index {index}")
        _check(rc, f"setting back end {index} {state}")


# ss_inspect.h
LATENCY_BUCKETS = 32  # SS_LATENCY_BUCKETS: bucket i counts requests under 2^i ns
KEY_MAX_LENGTH = 250  # SS_KEY_MAX_LENGTH
TIERS = {1: "dram", 2: "device"}  # enum ss_tier


# ---- proxy mode (ss_proxy.h): settings structs and pure helpers ----

# enum ss_backend_state, in order.
BACKEND_STATES: tuple[str, ...] = ("up", "down", "draining", "ejected")
BACKEND_LATENCY_BUCKETS = 32  # SS_BACKEND_LATENCY_BUCKETS


@dataclass(frozen=True)
class BackendSettings:
    """struct ss_backend_settings (field for field; enums as their C values)."""

    name: str
    host: str
    port: int
    weight: int
    connect_timeout_ms: int
    request_timeout_ms: int
    failure_limit: int
    policy: int
    failover_ring: int
    initial_state: int


@dataclass(frozen=True)
class RingSettings:
    """struct ss_ring_settings: points are (point, backend index) sorted by point."""

    name: str
    distribution: int
    points: tuple[tuple[int, int], ...]
    members: tuple[int, ...]


@dataclass(frozen=True)
class RoutingSettings:
    """struct ss_routing_settings (field for field; the arrays as tuples)."""

    hash: int
    backends: tuple[BackendSettings, ...]
    rings: tuple[RingSettings, ...]
    connections_per_backend: int
    admission: int
    admission_window_ms: int
    admission_max_bytes: int
    local_ttl_max_s: int
    allow_flush_all: bool
    write_allocate: bool = False


def _u64(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**64:
        raise ValueError(f"expected a byte count from 0 to 2**64-1, got {value!r}")
    return value


def bucket_stat_fields() -> tuple[str, ...]:
    """The fields of struct ss_bucket_stats in order: the one list of a bucket's figures
    (the API, /metrics and the console name them the same)."""
    ffi, _ = load()
    return tuple(name for name, _ in ffi.typeof("struct ss_bucket_stats").fields)


BUCKET_GAUGES = ("objects", "object_bytes")  # ss_bucket_stats' levels; the rest only grow


def proxy_available() -> bool:
    """Whether the built data plane has proxy mode (ss_dataplane_set_routing)."""
    _, lib = load()
    return hasattr(lib, "ss_dataplane_set_routing")


def latency_percentile(hist: list[int], q: float) -> int:
    """The upper bound in microseconds (2^i) of the bucket holding quantile q.

    Bucket i counts latencies below 2^i us, so the answer errs high by at
    most a factor of two; 0 when the histogram is empty.
    """
    total = sum(hist)
    if total == 0:
        return 0
    rank = q * total
    seen = 0
    for i, n in enumerate(hist):
        seen += n
        if seen >= rank:
            return 1 << i
    return 1 << (len(hist) - 1)


def _validate_routing(r: RoutingSettings) -> None:
    """Refuse out-of-range values before cffi would wrap or raise."""
    u32 = _UINT32[1]

    def need(ok: bool, what: str) -> None:
        if not ok:
            raise ValueError(f"routing: {what}")

    need(0 <= r.hash <= u32, f"hash kind {r.hash}")
    for what in ("connections_per_backend", "admission", "admission_window_ms",
                 "admission_max_bytes", "local_ttl_max_s"):
        need(0 <= getattr(r, what) <= u32, f"{what} out of range: {getattr(r, what)}")
    n = len(r.backends)
    for b in r.backends:
        need(1 <= b.port <= 65535, f"back end {b.name}: port {b.port}")
        need(-1 <= b.failover_ring < len(r.rings), f"back end {b.name}: ring {b.failover_ring}")
        need("\0" not in b.name and "\0" not in b.host, f"back end {b.name}: NUL in a string")
        for what in ("weight", "connect_timeout_ms", "request_timeout_ms", "failure_limit",
                     "policy", "initial_state"):
            need(0 <= getattr(b, what) <= u32, f"back end {b.name}: {what}")
    for ring in r.rings:
        need(all(0 <= p <= u32 and 0 <= i < n for p, i in ring.points),
             f"ring {ring.name}: a point is out of range")
        need(all(0 <= i < n for i in ring.members), f"ring {ring.name}: a member is out of range")


def _routing_cdata(ffi: Any, r: RoutingSettings) -> tuple[Any, list[Any]]:
    """Build struct ss_routing_settings; returns it and the buffers it points into."""
    keep: list[Any] = []

    cstr = functools.partial(c_string, ffi, keep)

    backends = ffi.new("struct ss_backend_settings[]", len(r.backends))
    keep.append(backends)
    for i, b in enumerate(r.backends):
        c = backends[i]
        for f in dataclasses.fields(b):
            value = getattr(b, f.name)
            setattr(c, f.name, cstr(value) if isinstance(value, str) else value)
    rings = ffi.new("struct ss_ring_settings[]", len(r.rings))
    keep.append(rings)
    for i, ring in enumerate(r.rings):
        c = rings[i]
        c.name = cstr(ring.name)
        c.distribution = ring.distribution
        points = ffi.new("struct ss_ring_point[]", max(1, len(ring.points)))
        members = ffi.new("uint32_t[]", max(1, len(ring.members)))
        keep += [points, members]
        for j, (point, backend) in enumerate(ring.points):
            points[j].point = point
            points[j].backend = backend
        for j, member in enumerate(ring.members):
            members[j] = member
        c.points, c.npoints = points, len(ring.points)
        c.members, c.nmembers = members, len(ring.members)
    table = ffi.new("struct ss_routing_settings *")
    keep.append(table)
    table.hash = r.hash
    table.backends, table.nbackends = backends, len(r.backends)
    table.rings, table.nrings = rings, len(r.rings)
    for what in ("connections_per_backend", "admission", "admission_window_ms",
                 "admission_max_bytes", "local_ttl_max_s"):
        setattr(table, what, getattr(r, what))
    table.allow_flush_all = 1 if r.allow_flush_all else 0
    table.write_allocate = 1 if r.write_allocate else 0
    return table, keep


# ---- proxy mode, ring (ss_proxy.h: ss_hash_key, ss_ring_lookup) ----

# The key hash names of SS_HASHES in dataplane/include/ss_proxy.h, in enum order.
HASH_NAMES = ("md5", "crc32", "crc32a", "fnv1_64", "fnv1a_64", "fnv1_32", "fnv1a_32",
              "one_at_a_time", "murmur", "jenkins", "hsieh")

# id(ring) -> (weak reference to the ring, its struct ss_ring_settings and the
# arrays it points into); a ring is converted once, not per lookup.
_RING_CDATA: dict[int, tuple[Any, Any, list[Any]]] = {}


def hash_key(kind_name: str, key: bytes) -> int:
    """Wraps ss_hash_key(): the key hash as libmemcached/twemproxy compute it.

    Args:
        kind_name: one of HASH_NAMES (as in routing.hash).
        key: the key bytes.

    Returns:
        The 32-bit hash.

    Raises:
        InvalidArgumentError: unknown hash name.
    """
    if kind_name not in HASH_NAMES:
        raise InvalidArgumentError(
            f"unknown key hash {kind_name!r}; expected one of {', '.join(HASH_NAMES)}",
            _errno.EINVAL)
    _, lib = load()
    return int(lib.ss_hash_key(HASH_NAMES.index(kind_name), key, len(key)))


def _ring_settings(ring: Any) -> Any:
    """The struct ss_ring_settings for ring, built on first use and cached."""
    import weakref

    hit = _RING_CDATA.get(id(ring))
    if hit is not None and hit[0]() is ring:
        return hit[1]
    ffi, lib = load()
    s = ffi.new("struct ss_ring_settings *")
    keep: list[Any] = []
    if ring.distribution == "modula":
        members = ffi.new("uint32_t[]", [int(m) for m in ring.members])
        keep.append(members)
        s.distribution = lib.SS_DIST_MODULA
        s.members = members
        s.nmembers = len(ring.members)
    elif ring.distribution == "ketama":
        points = ffi.new("struct ss_ring_point[]", len(ring.points))
        for i, (point, backend) in enumerate(ring.points):
            points[i].point = point
            points[i].backend = backend
        keep.append(points)
        s.distribution = lib.SS_DIST_KETAMA
        s.points = points
        s.npoints = len(ring.points)
        bits = int(lib.ss_ring_index_bits(len(ring.points)))
        index = ffi.new("uint32_t[]", (1 << bits) + 1)
        lib.ss_ring_index_build(s, bits, index)
        keep.append(index)
        s.index = index
        s.index_bits = bits
    else:
        raise InvalidArgumentError(f"unknown distribution {ring.distribution!r}", _errno.EINVAL)
    key = id(ring)
    ref = weakref.ref(ring, lambda _ref: _RING_CDATA.pop(key, None))
    _RING_CDATA[key] = (ref, s, keep)
    return s


def ring_lookup(ring: Any, hash_value: int, indexed: bool = True) -> int:
    """Wraps ss_ring_lookup(): the back-end index that owns hash_value on ring.

    Args:
        ring: an appliance.proxy.ring.Ring (or anything with its distribution,
            points and members attributes); it must not change after the
            first lookup (Ring is frozen), since its C form is cached.
        hash_value: a key hash from hash_key().
        indexed: look up through the ring's slice index, as the data plane
            does; False: a binary search over all points. Same answer.

    Returns:
        The owning back end's index, or -1 for an empty ring.
    """
    ffi, lib = load()
    settings = _ring_settings(ring)
    if not indexed:
        settings = ffi.new("struct ss_ring_settings *", settings[0])
        settings.index = ffi.NULL
    found = int(lib.ss_ring_lookup(settings, hash_value & 0xFFFFFFFF))
    return -1 if found == 0xFFFFFFFF else found
