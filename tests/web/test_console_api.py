"""REST API tests through aiohttp's test client, against a real in-process appliance.

Every /api/v1 route, with and without credentials, with a wrong token,
without the CSRF header, and with bad input.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import time
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from conftest import PASSWORD, TOKEN, Appliance

from appliance.runtime.control import Invalid
from web.app import create_app
from web.openapi import PATHS

BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def client(appliance: Appliance, aiohttp_client: Any) -> TestClient:
    return await aiohttp_client(create_app(appliance.control))


@pytest.fixture
async def open_client(open_appliance: Appliance, aiohttp_client: Any) -> TestClient:
    return await aiohttp_client(create_app(open_appliance.control))


@pytest.fixture
async def objects_client(objects_appliance: Appliance, aiohttp_client: Any) -> TestClient:
    return await aiohttp_client(create_app(objects_appliance.control))


@pytest.fixture
async def proxy_client(proxy_appliance: Appliance, aiohttp_client: Any) -> TestClient:
    return await aiohttp_client(create_app(proxy_appliance.control))


async def login(client: TestClient) -> dict[str, str]:
    """Log in; returns the headers a browser page sends with a change."""
    r = await client.post("/api/v1/login", json={"password": PASSWORD})
    assert r.status == 200, await r.text()
    body = await r.json()
    return {"X-CSRF-Token": body["csrf_token"]}


# Every route that needs credentials, with a request that would otherwise succeed.
GUARDED = [("GET", "/api/v1/stats"), ("GET", "/api/v1/stats/history"),
           ("GET", "/api/v1/stats/stream?max_events=1"), ("GET", "/api/v1/backends"),
           ("GET", "/api/v1/backends/mc1"), ("POST", "/api/v1/backends/mc1/drain"),
           ("GET", "/api/v1/storage"), ("GET", "/api/v1/switch"), ("GET", "/api/v1/config"),
           ("POST", "/api/v1/config/validate"), ("POST", "/api/v1/config/apply"),
           ("GET", "/api/v1/keys/k"), ("DELETE", "/api/v1/keys/k"), ("POST", "/api/v1/flush"),
           ("GET", "/api/v1/buckets"), ("GET", "/api/v1/buckets/default"),
           ("POST", "/api/v1/buckets/default/purge"),
           ("GET", "/api/v1/events"), ("POST", "/api/v1/logout"), ("GET", "/metrics")]


async def test_every_guarded_route_refuses_no_credentials_and_a_wrong_token(
        client: TestClient) -> None:
    for method, path in GUARDED:
        r = await client.request(method, path, json={})
        assert r.status == 401, (method, path, r.status)
        assert "error" in await r.json()
        r = await client.request(method, path, json={},
                                 headers={"Authorization": "Bearer not-the-token-000000000000"})
        assert r.status == 401, (method, path, r.status)
        assert (await r.json())["error"] == "invalid API token"


async def test_token_reads_without_csrf_and_changes_without_csrf(client: TestClient) -> None:
    r = await client.get("/api/v1/stats", headers=BEARER)
    assert r.status == 200
    # A bearer token is never sent by a browser on its own: no CSRF header needed.
    r = await client.post("/api/v1/flush", json={"confirm": True}, headers=BEARER)
    assert r.status == 200
    assert (await r.json()) == {"flushed": True, "scope": "local", "backends_flushed": False}


async def test_session_login_cookie_and_csrf(client: TestClient) -> None:
    r = await client.get("/api/v1/session")
    body = await r.json()
    assert body == {"auth_required": True, "password_login": True, "authenticated": False,
                    "csrf_token": None}
    r = await client.post("/api/v1/login", json={"password": "wrong"})
    assert r.status == 401 and (await r.json())["error"] == "wrong password"
    r = await client.post("/api/v1/login", data="password=" + PASSWORD,
                          headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status == 415  # a cross-site form can't log anyone in
    for bad in ({}, {"password": ""}, {"password": 5}, [PASSWORD]):
        r = await client.post("/api/v1/login", json=bad)
        assert r.status == 400, bad
    r = await client.post("/api/v1/login", data=b"{not json",
                          headers={"Content-Type": "application/json"})
    assert r.status == 400

    r = await client.post("/api/v1/login", json={"password": PASSWORD})
    assert r.status == 200
    cookie = r.headers["Set-Cookie"]
    assert "ss_session=" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    csrf = (await r.json())["csrf_token"]
    assert (await (await client.get("/api/v1/stats")).json())["mode"] == "standalone"
    session = await (await client.get("/api/v1/session")).json()
    assert session["authenticated"] and session["csrf_token"] == csrf

    # Changes need the header, and the right one.
    for headers in ({}, {"X-CSRF-Token": "forged"}):
        r = await client.post("/api/v1/flush", json={"confirm": True}, headers=headers)
        assert r.status == 403, headers
        assert "X-CSRF-Token" in (await r.json())["error"]
        r = await client.delete("/api/v1/keys/k", headers=headers)
        assert r.status == 403
    r = await client.post("/api/v1/flush", json={"confirm": True},
                          headers={"X-CSRF-Token": csrf, "Origin": "http://evil.example"})
    assert r.status == 403 and "cross-origin" in (await r.json())["error"]
    r = await client.post("/api/v1/flush", json={"confirm": True}, headers={"X-CSRF-Token": csrf})
    assert r.status == 200

    r = await client.post("/api/v1/logout", headers={"X-CSRF-Token": csrf})
    assert r.status == 200
    assert (await client.get("/api/v1/stats")).status == 401


async def test_no_auth_on_loopback_still_needs_csrf_and_a_loopback_host(
        open_client: TestClient) -> None:
    c = open_client
    assert (await c.get("/api/v1/stats")).status == 200
    r = await c.post("/api/v1/flush", json={"confirm": True})
    assert r.status == 403  # no session, no CSRF token: a cross-site form can't flush
    session = await (await c.get("/api/v1/session")).json()
    assert session["auth_required"] is False and session["csrf_token"]
    r = await c.post("/api/v1/flush", json={"confirm": True},
                     headers={"X-CSRF-Token": session["csrf_token"]})
    assert r.status == 200
    r = await c.post("/api/v1/login", json={"password": "x"})
    assert r.status == 409
    # DNS rebinding: a page served as evil.example that resolves to 127.0.0.1.
    r = await c.get("/api/v1/stats", headers={"Host": "evil.example:8080"})
    assert r.status == 403 and "Host" in (await r.json())["error"]
    r = await c.get("/api/v1/stats", headers={"Host": "localhost:8080"})
    assert r.status == 200


async def test_stats_move_with_traffic(client: TestClient, appliance: Appliance) -> None:
    before = await (await client.get("/api/v1/stats", headers=BEARER)).json()
    appliance.mc(b"set a 0 0 1\r\nx\r\n")
    appliance.mc(b"get a\r\nget nope\r\n", expect=b"END\r\nEND\r\n")
    after = await (await client.get("/api/v1/stats", headers=BEARER)).json()
    assert after["counters"]["cmd_set"] == before["counters"]["cmd_set"] + 1
    assert after["counters"]["get_hits"] == before["counters"]["get_hits"] + 1
    assert after["requests"] >= before["requests"] + 3
    assert sum(after["latency"]["buckets_ns"]) == after["requests"]
    assert after["latency"]["sum_ns"] > 0 and after["latency"]["p99_us"] > 0
    assert after["hit_ratio"]["dram"] > 0 and after["hit_ratio"]["miss"] > 0
    assert "curr_connections" in after["gauges"]


async def test_history_and_event_stream(client: TestClient, appliance: Appliance) -> None:
    # The sampler takes one sample a second; the stream sends each new one.
    r = await client.get("/api/v1/stats/stream?max_events=2", headers=BEARER)
    assert r.status == 200 and r.headers["Content-Type"].startswith("text/event-stream")
    text = await asyncio.wait_for(r.text(), 10)
    events = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]
    assert len(events) == 2 and events[1]["time"] > events[0]["time"]
    assert {"requests_per_s", "hit_ratio", "latency", "connections"} <= set(events[0])
    hist = await (await client.get("/api/v1/stats/history", headers=BEARER)).json()
    assert len(hist["samples"]) >= 2
    r = await client.get("/api/v1/stats/stream?max_events=0", headers=BEARER)
    assert r.status == 400 and "max_events" in (await r.json())["error"]


async def test_backends_in_standalone_mode(client: TestClient) -> None:
    body = await (await client.get("/api/v1/backends", headers=BEARER)).json()
    assert body == {"mode": "standalone", "backends": []}
    r = await client.get("/api/v1/backends/mc1", headers=BEARER)
    assert r.status == 404
    r = await client.post("/api/v1/backends/mc1/drain", headers=BEARER)
    assert r.status == 409 and "standalone" in (await r.json())["error"]
    r = await client.post("/api/v1/backends/mc1/explode", headers=BEARER)
    assert r.status == 400 and "drain, eject, restore" in (await r.json())["error"]


async def test_backend_actions_in_proxy_mode(proxy_client: TestClient,
                                             proxy_appliance: Appliance) -> None:
    c = proxy_client
    body = await (await c.get("/api/v1/backends", headers=BEARER)).json()
    assert body["mode"] == "proxy"
    assert [(b["name"], b["state"]) for b in body["backends"]] == [("mc1", "up"), ("mc2", "up")]
    for action, state in (("drain", "draining"), ("eject", "ejected"), ("restore", "up")):
        r = await c.post(f"/api/v1/backends/mc1/{action}", headers=BEARER)
        assert r.status == 200, await r.text()
        assert (await r.json())["state"] == state
        one = await (await c.get("/api/v1/backends/mc1", headers=BEARER)).json()
        assert one["state"] == state
    r = await c.post("/api/v1/backends/nope/drain", headers=BEARER)
    assert r.status == 404 and "mc1, mc2" in (await r.json())["error"]
    # While mc1 is drained, its keys go elsewhere; the key page says who owns what.
    owners = set()
    for i in range(20):
        k = (await (await c.get(f"/api/v1/keys/user:{i}", headers=BEARER)).json())["owner"]
        owners.add(k["name"])
    assert owners == {"mc1", "mc2"}
    log = await (await c.get("/api/v1/events", headers=BEARER)).json()
    messages = [e["message"] for e in log["events"]]
    assert any("operator: drain back end mc1" in m for m in messages)
    assert any(re.search(r"backend mc1 \S+ draining", m) for m in messages)
    assert any(re.search(r"backend mc1 \S+ restored", m) for m in messages)


async def test_storage_and_switch(client: TestClient, appliance: Appliance) -> None:
    appliance.mc(b"set s 0 0 3\r\nabc\r\n")
    # The index counts an item once the group commit has written it (every
    # few ms; longer on a loaded machine): ask until it has, for a bounded time.
    deadline = time.monotonic() + 5
    while True:
        body = await (await client.get("/api/v1/storage", headers=BEARER)).json()
        if body["store"]["items"] == 1 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert [d["name"] for d in body["devices"]] == ["local"]
    pool = body["pools"][0]
    assert pool["name"] == "items" and pool["served"] and pool["capacity"] > 0
    assert body["store"]["items"] == 1 and body["pending"] == []
    # The asynchronous-read histograms, bucket by bucket, as the counters keep them.
    assert list(body["store"]["read_latency_us"]) == ["le_50", "le_200", "le_1000", "le_5000",
                                                      "gt_5000"]
    assert list(body["store"]["read_depth"]) == ["le_1", "le_8", "le_32", "gt_32"]
    assert body["store"]["device_reads_in_flight"] == 0
    sw = await (await client.get("/api/v1/switch", headers=BEARER)).json()
    assert sw["enabled"] is False and "switch mode is off" in sw["message"]


async def test_buckets_say_objects_are_off_without_an_objects_section(
        client: TestClient, appliance: Appliance) -> None:
    body = await (await client.get("/api/v1/buckets", headers=BEARER)).json()
    assert body["enabled"] is False and body["buckets"] == [] and body["url"] is None
    assert "object requests are off" in body["message"]
    r = await client.get("/api/v1/buckets/default", headers=BEARER)
    assert r.status == 409 and "objects section" in (await r.json())["error"]
    r = await client.post("/api/v1/buckets/default/purge", json={"prefix": ""}, headers=BEARER)
    assert r.status == 409 and "object requests are off" in (await r.json())["error"]


async def test_bucket_figures_follow_object_requests(objects_client: TestClient,
                                                     objects_appliance: Appliance) -> None:
    a, c = objects_appliance, objects_client
    body = await (await c.get("/api/v1/buckets", headers=BEARER)).json()
    assert body["enabled"] is True and body["url"] == f"http://127.0.0.1:{a.objects_port}/"
    assert [(b["name"], b["kind"], b["objects"], b["hit_ratio"]) for b in body["buckets"]] == \
        [("default", "local", 0, None), ("media", "local", 0, None)]
    assert body["buckets"][1]["url"] == f"http://127.0.0.1:{a.objects_port}/media/"

    assert a.http("PUT", "/default/photos/a.jpg", b"a" * 100)[0] == 200
    assert a.http("PUT", "/default/photos/b.jpg", b"b" * 50)[0] == 200
    assert a.http("PUT", "/default/docs/c.txt", b"c" * 7)[0] == 200
    assert a.http("PUT", "/media/clip", b"m" * 10)[0] == 200
    for _ in range(2):
        assert a.http("GET", "/default/photos/a.jpg") == (200, b"a" * 100)
    assert a.http("GET", "/default/absent")[0] == 404
    d = await (await c.get("/api/v1/buckets/default", headers=BEARER)).json()
    assert (d["objects"], d["object_bytes"], d["puts"], d["bytes_in"]) == (3, 157, 3, 157)
    assert (d["hits"], d["misses"], d["bytes_out"], d["requests"]) == (2, 1, 200, 6)
    assert d["hit_ratio"] == pytest.approx(2 / 3)
    m = await (await c.get("/api/v1/buckets/media", headers=BEARER)).json()
    assert (m["objects"], m["object_bytes"], m["hits"]) == (1, 10, 0)
    r = await c.get("/api/v1/buckets/nope", headers=BEARER)
    assert r.status == 404 and "(buckets: default, media)" in (await r.json())["error"]


async def test_purge_by_prefix_drops_those_objects(objects_client: TestClient,
                                                   objects_appliance: Appliance) -> None:
    a, c = objects_appliance, objects_client
    for path in ("/default/photos/a.jpg", "/default/photos/b.jpg", "/default/docs/c.txt",
                 "/media/photos/a.jpg"):
        assert a.http("PUT", path, b"x" * 10)[0] == 200
    r = await c.post("/api/v1/buckets/default/purge", json={"prefix": "photos/"},
                     headers=BEARER)
    assert r.status == 200, await r.text()
    assert await r.json() == {"bucket": "default", "prefix": "photos/", "purged": 2}
    assert a.http("GET", "/default/photos/a.jpg")[0] == 404
    assert a.http("GET", "/default/photos/b.jpg")[0] == 404
    assert a.http("GET", "/default/docs/c.txt") == (200, b"x" * 10)
    assert a.http("GET", "/media/photos/a.jpg")[0] == 200  # another bucket's keys stay
    d = await (await c.get("/api/v1/buckets/default", headers=BEARER)).json()
    assert (d["objects"], d["object_bytes"], d["purges"]) == (1, 10, 2)
    # "" is every object in the bucket.
    r = await c.post("/api/v1/buckets/media/purge", json={"prefix": ""}, headers=BEARER)
    assert (await r.json())["purged"] == 1
    assert a.http("GET", "/media/photos/a.jpg")[0] == 404
    r = await c.post("/api/v1/buckets/default/purge", json={"prefix": "nothing/"},
                     headers=BEARER)
    assert (await r.json())["purged"] == 0

    r = await c.post("/api/v1/buckets/nope/purge", json={"prefix": ""}, headers=BEARER)
    assert r.status == 404 and "(buckets: default, media)" in (await r.json())["error"]
    for payload in ({}, {"prefix": 5}, {"prefix": None}, {"prefix": "k" * 1025},
                    {"prefix": "\u00e9" * 513}):
        r = await c.post("/api/v1/buckets/default/purge", json=payload, headers=BEARER)
        assert r.status == 400, payload
        assert "prefix" in (await r.json())["error"]
    r = await c.post("/api/v1/buckets/default/purge", data=b"prefix=",
                     headers={**BEARER, "Content-Type": "application/x-www-form-urlencoded"})
    assert r.status == 415
    with pytest.raises(Invalid, match="bucket: expected a bucket name"):
        a.control.purge("", "")
    events = (await (await c.get("/api/v1/events", headers=BEARER)).json())["events"]
    assert any("operator: purged 2 objects from bucket default under prefix 'photos/'"
               in e["message"] for e in events)


async def test_purge_from_a_session_needs_the_csrf_token(objects_client: TestClient,
                                                         objects_appliance: Appliance) -> None:
    headers = await login(objects_client)
    assert objects_appliance.http("PUT", "/default/k", b"v")[0] == 200
    r = await objects_client.post("/api/v1/buckets/default/purge", json={"prefix": ""})
    assert r.status == 403 and "X-CSRF-Token" in (await r.json())["error"]
    assert objects_appliance.http("GET", "/default/k") == (200, b"v")
    r = await objects_client.post("/api/v1/buckets/default/purge", json={"prefix": ""},
                                  headers=headers)
    assert r.status == 200 and (await r.json())["purged"] == 1


async def test_config_view_validate_apply(client: TestClient, appliance: Appliance) -> None:
    view = await (await client.get("/api/v1/config", headers=BEARER)).json()
    text = appliance.config_path.read_text()
    assert view["text"] == text and view["source"] == str(appliance.config_path)

    bad = text.replace("level: info", "level: loud")
    r = await client.post("/api/v1/config/validate", json={"text": bad}, headers=BEARER)
    body = await r.json()
    line = bad.splitlines().index("  level: loud") + 1
    assert r.status == 200 and body["ok"] is False
    assert body["errors"][0]["line"] == line
    assert body["errors"][0]["path"] == "logging.level"
    assert body["errors"][0]["text"].startswith(f"line {line}: logging.level: expected one of")

    syntax = "memcached:\n  listen: [oops\n"
    body = await (await client.post("/api/v1/config/validate", json={"text": syntax},
                                    headers=BEARER)).json()
    assert body["ok"] is False and body["errors"][0]["line"] is not None

    # A setting that can't change live is refused, and the old config keeps running.
    moved = re.sub(r"tcp_port: \d+", "tcp_port: 1", text)
    r = await client.post("/api/v1/config/apply", json={"text": moved}, headers=BEARER)
    body = await r.json()
    assert r.status == 422 and body["ok"] is False
    assert body["errors"][0]["path"] == "memcached.tcp_port"
    assert "restart" in body["message"]
    assert appliance.config_path.read_text() == text

    good = text.replace("level: info", "level: warning")
    r = await client.post("/api/v1/config/apply", json={"text": good}, headers=BEARER)
    body = await r.json()
    assert r.status == 200 and body["ok"], body
    assert "logging.level: info -> warning" in body["changes"]
    assert appliance.config_path.read_text() == good  # a restart runs what was applied
    view = await (await client.get("/api/v1/config", headers=BEARER)).json()
    assert view["text"] == good and view["reloads"] == 1 and view["refused"] == 1

    for payload in ({}, {"text": 5}, {"text": "x" * (1024**2 + 1)}):
        r = await client.post("/api/v1/config/validate", data=io.BytesIO(json.dumps(
            payload).encode()), headers={**BEARER, "Content-Type": "application/json"})
        assert r.status == 400, payload
    # Text that is no YAML at all is a config error with its line, not bad input.
    body = await (await client.post("/api/v1/config/validate", json={"text": "a: 1\nb: \0"},
                                    headers=BEARER)).json()
    assert body["ok"] is False and body["errors"][0]["line"] == 2
    r = await client.post("/api/v1/config/apply", data=b"text",
                          headers={**BEARER, "Content-Type": "text/plain"})
    assert r.status == 415
    r = await client.post("/api/v1/config/apply", json=["x"], headers=BEARER)
    assert r.status == 400
    events = await (await client.get("/api/v1/events?limit=50", headers=BEARER)).json()
    kinds = {e["kind"] for e in events["events"]}
    assert "reload" in kinds


async def test_key_lookup_and_delete(client: TestClient, appliance: Appliance) -> None:
    assert appliance.mc(b"set user:1 42 100 5\r\nhello\r\n") == b"STORED\r\n"
    r = await client.get("/api/v1/keys/user:1", headers=BEARER)
    body = await r.json()
    assert body["tier"] == "dram" and body["size"] == 5 and body["flags"] == 42
    assert 95 <= body["ttl_left_s"] <= 100 and body["owner"] is None
    body = await (await client.get("/api/v1/keys/absent", headers=BEARER)).json()
    assert body["tier"] == "absent" and body["size"] is None
    r = await client.delete("/api/v1/keys/user:1", headers=BEARER)
    assert (await r.json()) == {"key": "user:1", "deleted": True, "reply": "DELETED"}
    body = await (await client.get("/api/v1/keys/user:1", headers=BEARER)).json()
    assert body["tier"] == "absent"
    r = await client.delete("/api/v1/keys/user:1", headers=BEARER)
    assert (await r.json())["deleted"] is False
    r = await client.get("/api/v1/keys/" + "k" * 251, headers=BEARER)
    assert r.status == 400 and "250" in (await r.json())["error"]
    r = await client.delete("/api/v1/keys/has%20space", headers=BEARER)
    assert r.status == 400 and "text protocol" in (await r.json())["error"]


async def test_flush_needs_confirmation(client: TestClient, appliance: Appliance) -> None:
    appliance.mc(b"set f 0 0 1\r\n1\r\n")
    for payload in ({}, {"confirm": "yes"}, {"confirm": False}):
        r = await client.post("/api/v1/flush", json=payload, headers=BEARER)
        assert r.status == 400, payload
    r = await client.post("/api/v1/flush", json={"confirm": True}, headers=BEARER)
    assert r.status == 200
    assert appliance.mc(b"get f\r\n") == b"END\r\n"
    events = (await (await client.get("/api/v1/events", headers=BEARER)).json())["events"]
    assert any("flushed the local store" in e["message"] for e in events)


async def test_events_paging_and_bad_input(client: TestClient) -> None:
    for _ in range(3):
        await client.post("/api/v1/flush", json={"confirm": True}, headers=BEARER)
    events = (await (await client.get("/api/v1/events", headers=BEARER)).json())["events"]
    assert len(events) >= 3
    last = events[-1]["id"]
    newer = await (await client.get(f"/api/v1/events?after={last}", headers=BEARER)).json()
    assert newer["events"] == []
    two = await (await client.get("/api/v1/events?limit=2", headers=BEARER)).json()
    assert [e["id"] for e in two["events"]] == [e["id"] for e in events[-2:]]
    for query in ("limit=0", "limit=x", "after=-1", "limit=5000"):
        r = await client.get(f"/api/v1/events?{query}", headers=BEARER)
        assert r.status == 400, query


async def test_unknown_api_path_is_json_404(client: TestClient) -> None:
    r = await client.get("/api/v1/nothing", headers=BEARER)
    assert r.status == 404 and "error" in await r.json()


async def test_openapi_lists_exactly_the_routes(client: TestClient) -> None:
    r = await client.get("/api/v1/openapi.json")
    assert r.status == 200
    doc = await r.json()
    assert doc["openapi"].startswith("3.")
    documented = {(path, method.upper()) for path, ops in doc["paths"].items() for method in ops}
    app = client.server.app
    routed = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter")
        if path and path.startswith("/api/v1") and route.method != "HEAD":
            routed.add((re.sub(r"\{key:[^}]*\}", "{key}", path), route.method))
    assert routed == documented
    assert set(PATHS) == {p for p, _ in documented}


async def test_pages_are_served_with_a_strict_csp(client: TestClient) -> None:
    r = await client.get("/")
    assert r.status == 200
    csp = r.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    html = await r.text()
    # Nothing is fetched from outside the appliance.
    assert not re.search(r"""(src|href)=["']https?://""", html)
