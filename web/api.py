"""/api/v1 handlers: parse the request, call the control facade, return JSON.

Every action is one Control method (appliance/runtime/control.py); nothing here
decides anything. Calls that may block (device probes, a reload, a socket
to our own memcached port) run in a thread so the event loop keeps serving.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from appliance.runtime.control import Control, Invalid
from web import metrics, openapi
from web.keys import CONTROL, STOPPING

SAMPLE_INTERVAL_S = 1.0


def _control(request: web.Request) -> Control:
    return request.app[CONTROL]


async def _body(request: web.Request) -> dict[str, Any]:
    """The JSON object body, or Invalid."""
    if request.content_type != "application/json":
        raise web.HTTPUnsupportedMediaType(
            text=json.dumps({"error": "send a JSON body (Content-Type: application/json)"}),
            content_type="application/json")
    try:
        body = await request.json()
    except ValueError:
        raise Invalid("body: expected a JSON object") from None
    if not isinstance(body, dict):
        raise Invalid("body: expected a JSON object")
    return body


def _int_query(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise Invalid(f"{name}: expected an integer from {lo} to {hi}, got {raw!r}") from None
    if not lo <= value <= hi:
        raise Invalid(f"{name}: expected an integer from {lo} to {hi}, got {value}")
    return value


# ---- stats ----

async def stats(request: web.Request) -> web.Response:
    control = _control(request)
    return web.json_response({**control.counters(), "sample": control.latest()})


async def history(request: web.Request) -> web.Response:
    return web.json_response({"interval_s": SAMPLE_INTERVAL_S,
                              "samples": _control(request).history()})


async def stream(request: web.Request) -> web.StreamResponse:
    """Server-sent events: the newest sample each second (the dashboard's feed)."""
    limit = _int_query(request, "max_events", 86400, 1, 86400)
    control = _control(request)
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-store"})
    await response.prepare(request)
    stopping: asyncio.Event = request.app[STOPPING]
    last_time = None
    sent = 0
    while sent < limit and not stopping.is_set():
        point = control.latest()
        if point is not None and point["time"] != last_time:
            last_time = point["time"]
            await response.write(f"data: {json.dumps(point)}\n\n".encode())
            sent += 1
        try:
            await asyncio.wait_for(stopping.wait(), SAMPLE_INTERVAL_S / 4)
        except asyncio.TimeoutError:
            pass
    return response


async def metrics_page(request: web.Request) -> web.Response:
    text = metrics.render(_control(request))
    return web.Response(body=text.encode(), headers={"Content-Type": metrics.CONTENT_TYPE})


# ---- back ends ----

async def backends(request: web.Request) -> web.Response:
    return web.json_response(_control(request).backends())


async def backend(request: web.Request) -> web.Response:
    return web.json_response(_control(request).backend(request.match_info["name"]))


async def backend_action(request: web.Request) -> web.Response:
    m = request.match_info
    result = await asyncio.to_thread(_control(request).backend_action, m["name"], m["action"])
    return web.json_response(result)


# ---- storage, switch ----

async def storage(request: web.Request) -> web.Response:
    return web.json_response(await asyncio.to_thread(_control(request).storage))


async def switch(request: web.Request) -> web.Response:
    return web.json_response(_control(request).switch())


# ---- objects ----

async def buckets(request: web.Request) -> web.Response:
    return web.json_response(_control(request).buckets())


async def bucket(request: web.Request) -> web.Response:
    return web.json_response(_control(request).bucket(request.match_info["name"]))


async def bucket_purge(request: web.Request) -> web.Response:
    body = await _body(request)
    if "prefix" not in body:
        raise Invalid('prefix: expected the key prefix to drop ("" drops every object in '
                      'the bucket)')
    # A walk over the objects pool's index: off the event loop.
    return web.json_response(await asyncio.to_thread(
        _control(request).purge, request.match_info["name"], body["prefix"]))


# ---- config ----

async def config(request: web.Request) -> web.Response:
    return web.json_response(_control(request).config_text())


async def config_validate(request: web.Request) -> web.Response:
    body = await _body(request)
    return web.json_response(await asyncio.to_thread(_control(request).validate,
                                                     body.get("text")))


async def config_apply(request: web.Request) -> web.Response:
    body = await _body(request)
    result = await asyncio.to_thread(_control(request).apply, body.get("text"))
    return web.json_response(result, status=200 if result["ok"] else 422)


# ---- keys, flush, events ----

async def key_get(request: web.Request) -> web.Response:
    return web.json_response(await asyncio.to_thread(_control(request).key_lookup,
                                                     request.match_info["key"]))


async def key_delete(request: web.Request) -> web.Response:
    return web.json_response(await asyncio.to_thread(_control(request).key_delete,
                                                     request.match_info["key"]))


async def flush(request: web.Request) -> web.Response:
    body = await _body(request)
    if body.get("confirm") is not True:
        raise Invalid("confirm: expected true (flushing drops every item this appliance "
                      "holds)")
    return web.json_response(await asyncio.to_thread(_control(request).flush))


async def events(request: web.Request) -> web.Response:
    after = _int_query(request, "after", 0, 0, 2**62)
    limit = _int_query(request, "limit", 200, 1, 1000)
    return web.json_response({"events": _control(request).events(after, limit)})


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(openapi.document())
