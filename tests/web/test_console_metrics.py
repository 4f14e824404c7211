"""/metrics read by prometheus_client's own text parser, against a real appliance."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp.test_utils import TestClient
from conftest import TOKEN, Appliance
from prometheus_client.parser import text_string_to_metric_families

from web.app import create_app

BEARER = {"Authorization": f"Bearer {TOKEN}"}


def families(text: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def value(fam: Any, sample_name: str, **labels: str) -> float:
    for s in fam.samples:
        if s.name == sample_name and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    raise AssertionError(f"no sample {sample_name} {labels} in {fam.name}")


async def scrape(client: TestClient) -> tuple[dict[str, Any], str]:
    r = await client.get("/metrics", headers=BEARER)
    assert r.status == 200
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = await r.text()
    return families(text), text


async def test_metrics_parse_and_follow_the_stats_counters(appliance: Appliance,
                                                           aiohttp_client: Any) -> None:
    client = await aiohttp_client(create_app(appliance.control))
    before, _ = await scrape(client)
    appliance.mc(b"set m 0 0 2\r\nhi\r\n")
    for _ in range(5):
        appliance.mc(b"get m\r\n", expect=b"END\r\n")
    after, text = await scrape(client)
    stats = appliance.control.counters()

    # Every stats counter is there under its own name.
    for name in stats["counters"]:
        fam = after[f"smartswitch_{name}"]
        assert fam.type == ("gauge" if name in stats["gauges"] else "counter"), name
    hits = value(after["smartswitch_get_hits"], "smartswitch_get_hits_total")
    assert hits == value(before["smartswitch_get_hits"], "smartswitch_get_hits_total") + 5
    assert value(after["smartswitch_cmd_set"], "smartswitch_cmd_set_total") >= 1

    hist = after["smartswitch_request_duration_seconds"]
    assert hist.type == "histogram"
    buckets = [s for s in hist.samples if s.name.endswith("_bucket")]
    counts = [s.value for s in buckets]
    assert counts == sorted(counts), "buckets must be cumulative"
    assert buckets[-1].labels["le"] == "+Inf"
    count = value(hist, "smartswitch_request_duration_seconds_count")
    assert count == counts[-1] >= 6
    assert 0 < value(hist, "smartswitch_request_duration_seconds_sum") < count  # < 1 s each
    for name, prefix in (("device_read_duration_seconds", "device_read_us_"),
                         ("device_read_depth", "device_read_depth_")):
        dev = after[f"smartswitch_{name}"]
        assert dev.type == "histogram"
        cum = [s for s in dev.samples if s.name.endswith("_bucket")]
        assert [s.value for s in cum] == sorted(s.value for s in cum)
        assert cum[-1].labels["le"] == "+Inf" and len(cum) >= 4
        # The same reads as the stats' bucket counters, taken in the same scrape.
        scraped = sum(value(after[f"smartswitch_{k}"], f"smartswitch_{k}_total")
                      for k in stats["counters"] if k.startswith(prefix))
        assert value(dev, f"smartswitch_{name}_count") == scraped
    le = [float(s.labels["le"]) for s in after["smartswitch_device_read_duration_seconds"].samples
          if s.name.endswith("_bucket") and s.labels["le"] != "+Inf"]
    assert le == [50e-6, 200e-6, 1000e-6, 5000e-6]
    assert value(after["smartswitch_pool_capacity_bytes"], "smartswitch_pool_capacity_bytes") > 0
    # The set's index entry is committed by the group commit within milliseconds.
    deadline = time.monotonic() + 5.0
    while value(after["smartswitch_index_committed_ops"],
                "smartswitch_index_committed_ops_total") < 1 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        after, text = await scrape(client)
    assert after["smartswitch_index_commits"].type == "counter"
    assert value(after["smartswitch_index_commits"], "smartswitch_index_commits_total") >= 1
    assert value(after["smartswitch_index_committed_ops"],
                 "smartswitch_index_committed_ops_total") >= 1
    assert value(after["smartswitch_config_last_reload_ok"],
                 "smartswitch_config_last_reload_ok") == 1
    assert "smartswitch_backend_state" not in after  # standalone
    assert "smartswitch_bucket_requests" not in after  # no objects section
    assert text.endswith("\n")


async def test_metrics_per_backend_in_proxy_mode(proxy_appliance: Appliance,
                                                 aiohttp_client: Any) -> None:
    client = await aiohttp_client(create_app(proxy_appliance.control))
    for i in range(20):
        proxy_appliance.mc(f"get miss:{i}\r\n".encode(), expect=b"END\r\n")
    fams, _ = await scrape(client)
    total = sum(value(fams["smartswitch_backend_requests"], "smartswitch_backend_requests_total",
                      backend=b) for b in ("mc1", "mc2"))
    assert total >= 20
    assert value(fams["smartswitch_backend_state"], "smartswitch_backend_state",
                 backend="mc1", state="up") == 1
    assert value(fams["smartswitch_backend_state"], "smartswitch_backend_state",
                 backend="mc1", state="down") == 0
    lat = fams["smartswitch_backend_latency_seconds"]
    assert value(lat, "smartswitch_backend_latency_seconds_count", backend="mc1") + \
        value(lat, "smartswitch_backend_latency_seconds_count", backend="mc2") >= 20


async def test_metrics_need_credentials_when_auth_is_on(appliance: Appliance,
                                                        aiohttp_client: Any) -> None:
    client = await aiohttp_client(create_app(appliance.control))
    assert (await client.get("/metrics")).status == 401
    r = await client.get("/metrics", headers={"Authorization": "Bearer wrong-token-xxxxxxxxxxxxxx"})
    assert r.status == 401


async def test_metrics_per_bucket_when_objects_are_served(objects_appliance: Appliance,
                                                          aiohttp_client: Any) -> None:
    a = objects_appliance
    client = await aiohttp_client(create_app(a.control))
    assert a.http("PUT", "/default/m/one", b"1" * 40)[0] == 200
    assert a.http("PUT", "/default/m/two", b"2" * 2)[0] == 200
    for _ in range(3):
        assert a.http("GET", "/default/m/one")[0] == 200
    assert a.http("GET", "/default/m/none")[0] == 404
    fams, _ = await scrape(client)

    def sample(name: str, bucket: str = "default") -> float:
        return value(fams[f"smartswitch_bucket_{name}"],
                     f"smartswitch_bucket_{name}" + ("" if name.startswith("object") else
                                                     "_total"), bucket=bucket)

    # Every field of the data plane's bucket figures, each bucket a series of its own.
    stats = a.control.bucket("default")
    for field in ("requests", "hits", "misses", "bytes_out", "bytes_in", "puts", "purges",
                  "origin_fetches", "collapsed_fetches", "revalidations"):
        assert fams[f"smartswitch_bucket_{field}"].type == "counter", field
        assert sample(field) == stats[field], field
    for field in ("objects", "object_bytes"):
        assert fams[f"smartswitch_bucket_{field}"].type == "gauge", field
    assert (sample("requests"), sample("hits"), sample("misses")) == (6, 3, 1)
    assert (sample("bytes_out"), sample("bytes_in")) == (120, 42)
    assert (sample("objects"), sample("object_bytes")) == (2, 42)
    assert sample("origin_fetches") == sample("collapsed_fetches") == 0  # local buckets
    assert (sample("requests", "media"), sample("objects", "media")) == (0, 0)
    a.control.purge("default", "m/")
    fams, _ = await scrape(client)
    assert (sample("objects"), sample("object_bytes"), sample("purges")) == (0, 0, 2)
