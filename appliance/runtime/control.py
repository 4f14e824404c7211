"""The control-plane facade: every console, REST API and CLI action goes through here.

One method per action (FD.io VPP's rule: the API handler and the CLI call the
same action function). The web layer (web/) maps these to /api/v1 routes and
maps the errors below to HTTP statuses; the CLI reaches them through the REST
API of a running appliance. Nothing here runs per request: each call crosses
into C once or a few times (counters, a key lookup, a state change).

Errors: ``NotFound`` (no such back end, key or bucket), ``Invalid`` (bad input; the
message says what was expected), ``Refused`` (the action can't happen in this
mode or state), ``Unavailable`` (a back end or the data plane failed it).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from appliance.config import Config, ConfigError
from appliance.config.objects import ObjectsConfig
from appliance.config.switch import describe_switch
from appliance.proxy import ring
from appliance.proxy.health import HealthMonitor
from appliance.proxy.routing import PRIMARY_RING, build_ring
from appliance.runtime.local_client import first_reply_line, reachable_host
from appliance.runtime.reload import Reloader
from appliance.runtime.switch import SwitchRuntime
from appliance.storage.serving import storage_state
from dataplane.fastpath import Dataplane, DataplaneError, latency_percentile

log = logging.getLogger("smartswitch")

BACKEND_ACTIONS = {"drain": "draining", "eject": "ejected", "restore": "up"}
KEY_MAX_BYTES = 250          # memcached's key limit (KEY_MAX_LENGTH)
CONFIG_TEXT_MAX = 1024**2    # a pasted config larger than this is refused
HISTORY_SAMPLES = 600        # one a second: the dashboard's last ten minutes
EVENTS_MAX = 1000
OWN_PORT_TIMEOUT_S = 5.0
PREFIX_MAX_BYTES = 1024      # S3's longest key, so the longest prefix worth matching
OBJECTS_OFF = ("object requests are off: add an objects section (listen, pool, buckets) to "
               "the config, or set its enabled: true, and restart to serve them")


class ControlError(Exception):
    """An action failed; the message says what and what to do."""


class NotFound(ControlError):
    """No such back end, key or bucket."""


class Invalid(ControlError):
    """Bad input; the message names the field and what was expected."""


class Refused(ControlError):
    """The action does not apply in this mode or state."""


class Unavailable(ControlError):
    """A back end or the data plane could not do it now."""


# ------------------------------------------------------------------ events


class EventLog(logging.Handler):
    """The console's event log: the last EVENTS_MAX notable log records.

    A record is an event when it was logged with ``extra={"event": KIND}``
    (back-end state changes, reloads, operator actions) or at ERROR and above
    (kind "error"). Each gets an increasing id so a client asks for what is new.
    """

    def __init__(self, maxlen: int = EVENTS_MAX) -> None:
        super().__init__(logging.INFO)
        self._events: collections.deque[dict[str, Any]] = collections.deque(maxlen=maxlen)
        self._next_id = 1
        self._mutex = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        kind = getattr(record, "event", None)
        if kind is None and record.levelno >= logging.ERROR:
            kind = "error"
        if kind is None:
            return
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not break logging
            message = str(record.msg)
        with self._mutex:
            self._events.append({"id": self._next_id, "time": record.created, "kind": kind,
                                 "level": record.levelname.lower(), "message": message})
            self._next_id += 1

    def since(self, after: int = 0, limit: int = 200) -> list[dict[str, Any]]:
        """Events with id > after, oldest first, at most limit (the newest ones)."""
        with self._mutex:
            found = [e for e in self._events if e["id"] > after]
        return found[-limit:] if limit > 0 else []


# ------------------------------------------------------------- switch mode


def switch_state(config: Config, counters: dict[str, int] | None) -> dict[str, Any]:
    """The switch (DPDK) mode's ports, flow rules and functions with their counters; the
    one place the console asks. counters: the switch's (SwitchRuntime.counters), named
    `port:<port>:<field>`, `rule:<rule>:packets`, `function:<fn>:<verdict>` and, for the
    fast path as a whole, plain names (None: switch mode is off)."""
    if not config.dataplane.switch or counters is None:
        return {"enabled": False, "mode": "socket",
                "message": "switch mode is off: this data plane serves kernel TCP and UDP "
                           "sockets (dataplane.mode: socket)",
                "ports": [], "rules": [], "functions": [], "totals": {}}
    groups: dict[str, dict[str, dict[str, int]]] = {}
    totals: dict[str, int] = {}
    for name, value in counters.items():
        kind, _, rest = name.partition(":")
        obj, _, field = rest.rpartition(":")
        if not rest:
            totals[name] = value
        else:
            groups.setdefault(kind, {}).setdefault(obj, {})[field] = value

    def listed(kind: str) -> list[dict[str, Any]]:
        return [{"name": n, **fields} for n, fields in groups.get(kind, {}).items()]

    return {"enabled": True, "mode": "dpdk", "message": describe_switch(config.dataplane),
            "ports": listed("port"), "rules": listed("rule"), "functions": listed("function"),
            "totals": totals}


# ----------------------------------------------------------------- helpers


def counter_buckets(counters: dict[str, int], prefix: str) -> dict[str, int]:
    """A histogram kept as counters named prefix + "le_N" / "gt_N", by bucket."""
    return {k[len(prefix):]: v for k, v in counters.items() if k.startswith(prefix)}


def hit_ratio(c: dict[str, int]) -> dict[str, float]:
    """Share of get lookups answered from DRAM, from the device, or missed."""
    dram, device, miss = c.get("hits_dram", 0), c.get("hits_device", 0), c.get("get_misses", 0)
    total = dram + device + miss
    if total == 0:
        return {"dram": 0.0, "device": 0.0, "miss": 0.0}
    return {"dram": dram / total, "device": device / total, "miss": miss / total}


def latency_summary(buckets_ns: list[int]) -> dict[str, float]:
    """p50/p90/p99/p999 in microseconds: upper bounds of log2 nanosecond buckets."""
    return {name: latency_percentile(buckets_ns, q) / 1000.0
            for name, q in (("p50_us", 0.5), ("p90_us", 0.9), ("p99_us", 0.99),
                            ("p999_us", 0.999))}


def object_hit_ratio(stats: dict[str, int]) -> float | None:
    """Share of a bucket's GET/HEAD lookups answered from the store; None before any."""
    lookups = stats["hits"] + stats["misses"]
    return stats["hits"] / lookups if lookups else None


def text_key(key: str) -> bytes:
    """key as bytes, checked against memcached's key rules (1..250 bytes).

    Raises:
        Invalid: empty, too long, or not encodable.
    """
    if not isinstance(key, str) or not key:
        raise Invalid("key: expected 1 to 250 bytes, got an empty key")
    raw = key.encode("utf-8", "surrogatepass")
    if len(raw) > KEY_MAX_BYTES:
        raise Invalid(f"key: expected at most {KEY_MAX_BYTES} bytes, got {len(raw)}")
    return raw


def _sendable(raw: bytes) -> bool:
    """Whether a key can travel in the text protocol (no spaces or control bytes)."""
    return all(32 < b != 127 for b in raw)


# ---------------------------------------------------------------- facade


class Control:
    """One running appliance, as the console, API and CLI see it.

    Args:
        dp: the data plane.
        reloader: owns the running config (and applies new ones).
        monitor: the back-end health monitor (None in standalone mode).
        events: the event log the runner attached to the "smartswitch" logger.
        clock: wall clock (for tests).
    """

    def __init__(self, dp: Dataplane, reloader: Reloader, monitor: HealthMonitor | None,
                 events: EventLog, clock: Callable[[], float] = time.time,
                 switch: SwitchRuntime | None = None) -> None:
        self.dp = dp
        self.switch_runtime = switch
        self.reloader = reloader
        self.monitor = monitor
        self.events_log = events
        self.clock = clock
        self.started_at = clock()
        self._history: collections.deque[dict[str, Any]] = collections.deque(
            maxlen=HISTORY_SAMPLES)
        self._last: tuple[float, dict[str, int], list[int]] | None = None
        self._ring_cache: tuple[int, ring.Ring] | None = None
        self._gauges = dp.gauges()
        # The buckets the data plane was created with, by index: a reload does not
        # rebuild the objects plane, so the running config may list others.
        objects = reloader.config.objects
        self._objects: ObjectsConfig | None = (
            objects if objects is not None and objects.enabled and dp.objects_port() else None)

    @property
    def config(self) -> Config:
        return self.reloader.config

    # ---- stats ----

    def counters(self) -> dict[str, Any]:
        """Every data-plane counter, the request latency histogram and what follows."""
        c = self.dp.counters()
        lat, lat_sum = self.dp.request_latency()
        st = self.dp.store_stats()
        return {
            "time": self.clock(),
            "uptime_s": self.clock() - self.started_at,
            "mode": "proxy" if self.config.proxy else "standalone",
            "counters": c,
            "gauges": sorted(self._gauges),
            "requests": sum(lat),
            "hit_ratio": hit_ratio(c),
            "latency": {"buckets_ns": lat, "sum_ns": lat_sum, **latency_summary(lat)},
            "store": st,
            "reloads": self.reloader.reloads,
            "reloads_refused": self.reloader.refused,
        }

    def sample(self) -> dict[str, Any]:
        """Take one dashboard sample: rates since the previous sample (call ~1/s)."""
        now = self.clock()
        c = self.dp.counters()
        lat, _ = self.dp.request_latency()
        prev, self._last = self._last, (now, c, lat)
        if prev is None:
            dt, pc, plat = 0.0, c, lat
        else:
            dt, pc, plat = now - prev[0], prev[1], prev[2]

        def rate(name: str) -> float:
            return (c[name] - pc[name]) / dt if dt > 0 else 0.0

        window = [a - b for a, b in zip(lat, plat)]
        requests = sum(window)
        point = {
            "time": now,
            "requests_per_s": requests / dt if dt > 0 else 0.0,
            "gets_per_s": rate("cmd_get"),
            "sets_per_s": rate("cmd_set"),
            "hit_ratio": hit_ratio({k: c[k] - pc[k] for k in
                                    ("hits_dram", "hits_device", "get_misses")}),
            "bytes_in_per_s": rate("bytes_read"),
            "bytes_out_per_s": rate("bytes_written"),
            "device_write_bytes_per_s": rate("device_write_bytes"),
            "connections": c["curr_connections"],
            "latency": latency_summary(window),
        }
        if prev is not None:
            self._history.append(point)
        return point

    def history(self) -> list[dict[str, Any]]:
        """The samples of the last minutes, oldest first."""
        return list(self._history)

    def latest(self) -> dict[str, Any] | None:
        return self._history[-1] if self._history else None

    # ---- back ends ----

    def backends(self) -> dict[str, Any]:
        """Every back end (primary, then spare pools) with its state and figures."""
        config = self.config
        if not config.proxy:
            return {"mode": "standalone", "backends": []}
        pool_of = {b.name: PRIMARY_RING for b in config.backends}
        for pool in config.spare_pools:
            pool_of.update({b.name: pool.name for b in pool.backends})
        lock = self.monitor.lock if self.monitor is not None else threading.RLock()
        out = []
        with lock:
            for i, b in enumerate(self.config.all_backends):
                try:
                    stats = self.dp.backend_stats(i)
                except LookupError:
                    continue
                out.append({"name": b.name, "address": b.address, "host": b.host,
                            "port": b.port, "weight": b.weight, "pool": pool_of[b.name],
                            "failure_policy": b.failure_policy, **stats})
        return {"mode": "proxy", "backends": out}

    def backend(self, name: str) -> dict[str, Any]:
        for b in self.backends()["backends"]:
            if b["name"] == name:
                return b
        raise NotFound(f"no back end named {name!r}" + self._names_hint())

    def _names_hint(self) -> str:
        names = [b.name for b in self.config.all_backends]
        return f" (back ends: {', '.join(names)})" if names else " (standalone mode: none)"

    def backend_action(self, name: str, action: str) -> dict[str, Any]:
        """drain (no new keys), eject (out of the ring) or restore (back to up) a back end.

        Raises:
            Invalid: an unknown action.
            Refused: standalone mode.
            NotFound: no such back end.
        """
        if action not in BACKEND_ACTIONS:
            raise Invalid(f"action: expected one of {', '.join(BACKEND_ACTIONS)}, got "
                          f"{action!r}")
        if not self.config.proxy:
            raise Refused("standalone mode has no back ends; add a backends list to the "
                          "config to run in proxy mode")
        state = BACKEND_ACTIONS[action]
        lock = self.monitor.lock if self.monitor is not None else threading.RLock()
        with lock:
            index = next((i for i, b in enumerate(self.config.all_backends)
                          if b.name == name), None)
            if index is None:
                raise NotFound(f"no back end named {name!r}" + self._names_hint())
            backend = self.config.all_backends[index]
            try:
                self.dp.backend_set_state(index, state)
            except (LookupError, DataplaneError) as exc:
                raise Unavailable(f"setting back end {name} {state}: {exc}") from None
        log.info("operator: %s back end %s %s", action, name, backend.address,
                 extra={"event": "action"})
        if self.monitor is not None:
            self.monitor.tick()  # log the state change now, not at the next tick
        return self.backend(name)

    # ---- storage and switch ----

    def storage(self) -> dict[str, Any]:
        """Devices and pools (labels, live figures) with the store's counters."""
        out = storage_state(self.config, self.dp)
        c = self.dp.counters()
        st = self.dp.store_stats()
        latest = self.latest()
        out["store"] = {
            "items": st["curr_items"], "hot_items": st["hot_items"],
            "hot_bytes_used": st["hot_bytes_used"], "hot_bytes_limit": st["hot_bytes_limit"],
            "index_bytes": st["index_bytes"], "evictions": c["evictions"],
            "hot_evictions": c["hot_evictions"], "device_writes": c["device_writes"],
            "device_write_bytes": c["device_write_bytes"], "device_reads": c["device_reads"],
            "write_bytes_per_s": latest["device_write_bytes_per_s"] if latest else 0.0,
            "device_reads_async": c["device_reads_async"],
            "device_reads_in_flight": c["device_reads_in_flight"],
            # The counters' own buckets (ss_counters.h), by their upper bound.
            "read_latency_us": counter_buckets(c, "device_read_us_"),
            "read_depth": counter_buckets(c, "device_read_depth_"),
        }
        return out

    def switch(self) -> dict[str, Any]:
        return switch_state(self.config,
                            self.switch_runtime.counters() if self.switch_runtime else None)

    # ---- objects ----

    def buckets(self) -> dict[str, Any]:
        """The objects listener's URL and every bucket (config order) with its figures."""
        objects = self._objects
        if objects is None:
            return {"enabled": False, "url": None, "message": OBJECTS_OFF, "buckets": []}
        url = dataclasses.replace(objects, listen=(objects.host, self.dp.objects_port())).url
        out = []
        for i, b in enumerate(objects.buckets):
            try:
                stats = self.dp.bucket_stats(i)
            except DataplaneError as exc:
                raise Unavailable(f"reading bucket {b.name}'s figures: {exc}") from None
            out.append({"name": b.name, "kind": b.kind, "url": f"{url}{b.name}/",
                        "hit_ratio": object_hit_ratio(stats), **stats})
        try:
            st = self.dp.objects_store_stats()
        except DataplaneError as exc:
            raise Unavailable(f"reading the objects store's figures: {exc}") from None
        store = {k: st[k] for k in ("curr_items", "hot_items", "hot_bytes_used",
                                    "hot_bytes_limit")}
        return {"enabled": True, "url": url,
                "message": f"object requests on {url} from pool {objects.pool}",
                "store": store, "buckets": out}

    def bucket(self, name: str) -> dict[str, Any]:
        """One bucket with its figures.

        Raises:
            Refused: object requests are off.
            NotFound: no such bucket (the message names the ones there are).
        """
        if self._objects is None:
            raise Refused(OBJECTS_OFF)
        for b in self.buckets()["buckets"]:
            if b["name"] == name:
                return b
        raise NotFound(f"no bucket named {name!r}" + self._buckets_hint())

    def _buckets_hint(self) -> str:
        names = [b.name for b in self._objects.buckets] if self._objects else []
        return f" (buckets: {', '.join(names)})"

    def purge(self, bucket: str, prefix: str) -> dict[str, Any]:
        """Drop a bucket's objects whose keys start with prefix ("" drops them all).

        Raises:
            Invalid: an empty bucket name, or a prefix that is no string or too long.
            Refused: object requests are off.
            NotFound: no such bucket.
            Unavailable: the data plane failed the walk.
        """
        if not isinstance(bucket, str) or not bucket:
            raise Invalid("bucket: expected a bucket name, got an empty one")
        if not isinstance(prefix, str):
            raise Invalid('prefix: expected a string of the keys to drop ("" for all)')
        try:
            raw = prefix.encode("utf-8")
        except UnicodeEncodeError:
            raise Invalid("prefix: expected text that is valid UTF-8 (keys are UTF-8 in "
                          "URLs), got an unpaired surrogate") from None
        if len(raw) > PREFIX_MAX_BYTES:
            raise Invalid(f"prefix: expected at most {PREFIX_MAX_BYTES} bytes as UTF-8 "
                          f"(S3's longest key), got {len(raw)}")
        if self._objects is None:
            raise Refused(OBJECTS_OFF)
        if bucket not in (b.name for b in self._objects.buckets):
            raise NotFound(f"no bucket named {bucket!r}" + self._buckets_hint())
        try:
            dropped = self.dp.objects_purge(bucket, prefix)
        except KeyError:
            raise NotFound(f"no bucket named {bucket!r} in the data plane"
                           + self._buckets_hint()) from None
        except DataplaneError as exc:
            raise Unavailable(f"purging bucket {bucket}: {exc}") from None
        log.warning("operator: purged %d objects from bucket %s under prefix %r", dropped,
                    bucket, prefix, extra={"event": "action"})
        return {"bucket": bucket, "prefix": prefix, "purged": dropped}

    # ---- config ----

    def config_text(self) -> dict[str, Any]:
        """The running config: its file, its text, and how reloads went."""
        r = self.reloader
        return {"source": self.config.source, "text": r.text, "reloads": r.reloads,
                "refused": r.refused, "last_error": r.last_error}

    @staticmethod
    def _error(err: Exception) -> dict[str, Any]:
        if isinstance(err, ConfigError):
            return {"line": err.line, "path": err.path or None, "message": err.message,
                    "text": str(err)}
        return {"line": None, "path": None, "message": str(err), "text": str(err)}

    def _check_text(self, text: Any) -> str:
        if not isinstance(text, str):
            raise Invalid("text: expected the config as a string")
        if len(text.encode("utf-8", "surrogatepass")) > CONFIG_TEXT_MAX:
            raise Invalid(f"text: expected at most {CONFIG_TEXT_MAX} bytes")
        return text

    def validate(self, text: str) -> dict[str, Any]:
        """Would this config be accepted by apply()? Errors carry line and YAML path."""
        err = self.reloader.check_text(self._check_text(text))
        return {"ok": err is None, "errors": [] if err is None else [self._error(err)]}

    def apply(self, text: str) -> dict[str, Any]:
        """Reload with this config text; a refused one leaves the running config in place."""
        result = self.reloader.reload_text(self._check_text(text))
        return {"ok": result.ok, "message": result.message, "changes": result.changes,
                "errors": [] if result.ok or result.error is None
                else [self._error(result.error)]}

    # ---- keys ----

    def _ring(self) -> ring.Ring:
        config = self.config
        if self._ring_cache is None or self._ring_cache[0] != id(config):
            self._ring_cache = (id(config), build_ring(config, config.backends))
        return self._ring_cache[1]

    def key_lookup(self, key: str) -> dict[str, Any]:
        """Where key lives: owning back end (proxy mode), local tier, size, flags, TTL left."""
        raw = text_key(key)
        owner = None
        config = self.config
        if config.proxy:
            index = ring.owner(self._ring(), raw, config.routing.hash)
            b = config.backends[index]
            try:
                state = self.dp.backend_stats(index)["state"]
            except LookupError:
                state = "unknown"
            owner = {"name": b.name, "address": b.address, "state": state}
        try:
            info = self.dp.key_info(raw)
        except DataplaneError as exc:
            raise Unavailable(f"looking {key!r} up: {exc}") from None
        now = int(self.clock())
        out: dict[str, Any] = {"key": key, "owner": owner, "tier": "absent", "size": None,
                               "flags": None, "ttl_left_s": None, "expires": None,
                               "cas": None, "last_access_s_ago": None}
        if info is not None:
            exp = info["exptime"]
            out.update(tier=info["tier"], size=info["size"], flags=info["flags"],
                       expires=exp or None, ttl_left_s=max(0, exp - now) if exp else None,
                       cas=info["cas"], last_access_s_ago=max(0, now - info["last_access"]))
        return out

    def _own_port(self, command: bytes) -> str:
        """Send one command to this appliance's own memcached listener; its reply line."""
        host = reachable_host(self.config.memcached.listen)
        port = self.dp.bound_port(False)
        if port is None:
            raise Unavailable("no memcached TCP listener to send the command to")
        try:
            return first_reply_line(host, port, command, OWN_PORT_TIMEOUT_S)
        except OSError as exc:
            raise Unavailable(f"the memcached listener on {host}:{port} did not answer: "
                              f"{exc}") from None

    def key_delete(self, key: str) -> dict[str, Any]:
        """Delete key as a client would (through the memcached listener, so in proxy
        mode the owning back end deletes it too and the local copy is invalidated)."""
        raw = text_key(key)
        if not _sendable(raw):
            raise Invalid("key: contains spaces or control characters, which the memcached "
                          "text protocol can't carry")
        line = self._own_port(b"delete " + raw + b"\r\n")
        if line not in ("DELETED", "NOT_FOUND"):
            raise Unavailable(f"delete {key!r} was answered {line!r}")
        log.info("operator: delete key %r: %s", key, line, extra={"event": "action"})
        return {"key": key, "deleted": line == "DELETED", "reply": line}

    def flush(self) -> dict[str, Any]:
        """Drop every item this appliance holds (DRAM and device). In proxy mode the
        back ends keep theirs: the next read of a key fetches it again."""
        try:
            self.dp.flush()
        except DataplaneError as exc:
            raise Unavailable(f"flushing: {exc}") from None
        log.warning("operator: flushed the local store", extra={"event": "action"})
        return {"flushed": True, "scope": "local",
                "backends_flushed": False}

    # ---- events ----

    def events(self, after: int = 0, limit: int = 200) -> list[dict[str, Any]]:
        return self.events_log.since(after, limit)
