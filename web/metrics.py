"""Prometheus text format (0.0.4) for /metrics, from the control facade.

Names: every data-plane counter is ``smartswitch_<stats name>_total`` and
every gauge ``smartswitch_<stats name>``, so ``get_hits`` in `stats` is
``smartswitch_get_hits_total`` here. Beside them:

* ``smartswitch_request_duration_seconds``: histogram of request service time
  (the data plane's log2 nanosecond buckets, ss_inspect.h), with _sum and _count.
* ``smartswitch_backend_*{backend="NAME"}`` in proxy mode: requests, errors,
  timeouts, in_flight, state (one series per state, 1 for the current one),
  and ``smartswitch_backend_latency_seconds`` (log2 microsecond buckets; the
  data plane keeps no sum for it, so that histogram has _count but no _sum).
* ``smartswitch_device_read_duration_seconds`` and ``smartswitch_device_read_depth``:
  histograms of asynchronous device reads, submit to reap and the reads in
  flight when each started, from the data plane's bucket counters
  (``device_read_us_le_N``, ``device_read_depth_le_N``; no _sum kept).
* ``smartswitch_bucket_<field>_total{bucket="NAME"}`` when objects are served: every
  field of struct ss_bucket_stats (requests, hits, misses, bytes_out, bytes_in,
  origin_fetches, ...) under its own name, except its two levels, the gauges
  ``smartswitch_bucket_objects`` and ``smartswitch_bucket_object_bytes``.
* ``smartswitch_pool_*`` for the served pool, ``smartswitch_config_*`` for
  reloads (a refused reload is visible as ``smartswitch_config_last_reload_ok 0``).
"""

from __future__ import annotations

from typing import Any

from appliance.runtime.control import Control, counter_buckets
from dataplane.fastpath import BACKEND_STATES, BUCKET_GAUGES, bucket_stat_fields

PREFIX = "smartswitch_"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _num(v: float) -> str:
    if isinstance(v, float):
        return repr(v)
    return str(int(v))


class _Out:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str) -> None:
        self.lines.append(f"# HELP {PREFIX}{name} {help_text}")
        self.lines.append(f"# TYPE {PREFIX}{name} {kind}")

    def sample(self, name: str, value: float, labels: dict[str, str] | None = None) -> None:
        lab = ""
        if labels:
            lab = "{" + ",".join(f'{k}="{_label(v)}"' for k, v in labels.items()) + "}"
        self.lines.append(f"{PREFIX}{name}{lab} {_num(value)}")

    def bounded_histogram(self, name: str, counts: dict[str, int], per_unit: float) -> None:
        """Cumulative buckets from counters keyed "le_N" (values up to N units,
        per_unit of them to the metric's unit) and one "gt_N" (the rest); no _sum."""
        bounds = sorted((float(k[3:]) if k.startswith("le_") else float("inf"), n)
                        for k, n in counts.items())
        seen = 0
        for bound, n in bounds:
            seen += n
            le = "+Inf" if bound == float("inf") else repr(bound / per_unit)
            self.sample(f"{name}_bucket", seen, {"le": le})
        self.sample(f"{name}_count", seen)

    def histogram(self, name: str, buckets: list[int], scale: float, total_sum: float | None,
                  labels: dict[str, str] | None = None) -> None:
        """Cumulative buckets: bucket i counts values under 2^i units (x scale seconds)."""
        labels = labels or {}
        seen = 0
        for i, n in enumerate(buckets[:-1]):
            seen += n
            self.sample(f"{name}_bucket", seen, {**labels, "le": repr((1 << i) * scale)})
        seen += buckets[-1] if buckets else 0
        self.sample(f"{name}_bucket", seen, {**labels, "le": "+Inf"})
        if total_sum is not None:
            self.sample(f"{name}_sum", total_sum, labels or None)
        self.sample(f"{name}_count", seen, labels or None)


def render(control: Control) -> str:
    """The whole /metrics page."""
    out = _Out()
    snap = control.counters()
    gauges = set(snap["gauges"])
    for name, value in snap["counters"].items():
        if name in gauges:
            out.family(name, "gauge", f"stats {name}")
            out.sample(name, value)
        else:
            out.family(f"{name}_total", "counter", f"stats {name}")
            out.sample(f"{name}_total", value)
    lat = snap["latency"]
    out.family("request_duration_seconds", "histogram",
               "request service time in the data plane (parse to reply queued)")
    out.histogram("request_duration_seconds", lat["buckets_ns"], 1e-9, lat["sum_ns"] * 1e-9)
    out.family("device_read_duration_seconds", "histogram",
               "asynchronous device reads, submit to reap (no _sum kept)")
    out.bounded_histogram("device_read_duration_seconds",
                          counter_buckets(snap["counters"], "device_read_us_"), 1e6)
    out.family("device_read_depth", "histogram",
               "device reads in flight on the thread when each read started")
    out.bounded_histogram("device_read_depth",
                          counter_buckets(snap["counters"], "device_read_depth_"), 1)
    out.family("uptime_seconds", "gauge", "seconds since start")
    out.sample("uptime_seconds", float(snap["uptime_s"]))
    _store(out, snap["store"])
    _backends(out, control)
    _buckets(out, control)
    out.family("config_reloads_total", "counter", "reloads applied")
    out.sample("config_reloads_total", snap["reloads"])
    out.family("config_reloads_refused_total", "counter", "reloads refused")
    out.sample("config_reloads_refused_total", snap["reloads_refused"])
    out.family("config_last_reload_ok", "gauge", "0 when the last reload was refused")
    out.sample("config_last_reload_ok", 0 if control.reloader.last_error else 1)
    return "\n".join(out.lines) + "\n"


def _store(out: _Out, st: dict[str, int]) -> None:
    for name, key, what in (("pool_capacity_bytes", "device_bytes", "bytes of the served pool"),
                            ("pool_used_bytes", "device_used_bytes", "bytes in live segments"),
                            ("pool_segments", "segments", "segments in the pool"),
                            ("pool_segments_used", "segments_used", "segments written"),
                            ("curr_items", "curr_items", "keys in the index"),
                            ("hot_tier_bytes_used", "hot_bytes_used", "DRAM tier bytes used"),
                            ("hot_tier_bytes_limit", "hot_bytes_limit", "DRAM tier budget"),
                            ("hot_tier_items", "hot_items", "items in the DRAM tier"),
                            ("index_bytes", "index_bytes", "LMDB bytes in use")):
        out.family(name, "gauge", what)
        out.sample(name, st[key])
    for name, key, what in (("index_commits", "index_commits",
                             "index transactions the group commit ran"),
                            ("index_committed_ops", "index_committed_ops",
                             "index puts and deletes those transactions carried"),
                            ("index_commit_boosts", "index_commit_boosts",
                             "times the idle-priority committer was raised to keep up")):
        out.family(f"{name}_total", "counter", what)
        out.sample(f"{name}_total", st[key])


def _backends(out: _Out, control: Control) -> None:
    backends: list[dict[str, Any]] = control.backends()["backends"]
    if not backends:
        return
    for metric, key, kind in (("backend_requests_total", "requests", "counter"),
                              ("backend_errors_total", "errors", "counter"),
                              ("backend_timeouts_total", "timeouts", "counter"),
                              ("backend_state_changes_total", "state_changes", "counter"),
                              ("backend_in_flight", "in_flight", "gauge")):
        out.family(metric, kind, f"per back end: {key}")
        for b in backends:
            out.sample(metric, b[key], {"backend": b["name"]})
    out.family("backend_state", "gauge", "1 for the back end's current state")
    for b in backends:
        for state in BACKEND_STATES:
            out.sample("backend_state", 1 if b["state"] == state else 0,
                       {"backend": b["name"], "state": state})
    out.family("backend_latency_seconds", "histogram",
               "back-end round trip (log2 microsecond buckets; no _sum kept)")
    for b in backends:
        out.histogram("backend_latency_seconds", b["latency_us"], 1e-6, None,
                      {"backend": b["name"]})


def _buckets(out: _Out, control: Control) -> None:
    buckets: list[dict[str, Any]] = control.buckets()["buckets"]
    if not buckets:
        return
    for field in bucket_stat_fields():
        gauge = field in BUCKET_GAUGES
        metric = f"bucket_{field}" if gauge else f"bucket_{field}_total"
        out.family(metric, "gauge" if gauge else "counter", f"per bucket: {field}")
        for b in buckets:
            out.sample(metric, b[field], {"bucket": b["name"]})
