"""The OpenAPI 3.0 document of /api/v1 (served at /api/v1/openapi.json).

Built here as data, beside the routes it describes; tests/web/test_api.py
checks that every route of the app is in it and every path in it is a route,
and the schemathesis run checks each response against it.
"""

from __future__ import annotations

from typing import Any

from appliance import __version__
from appliance.runtime.control import BACKEND_ACTIONS, PREFIX_MAX_BYTES
from dataplane.fastpath import BACKEND_STATES, bucket_stat_fields


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(props: dict[str, Any], required: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    return {"type": "object", "properties": props,
            "required": list(props) if required is None else required, **extra}


INT = {"type": "integer", "minimum": 0}
NUM = {"type": "number"}
STR = {"type": "string"}
BOOL = {"type": "boolean"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "nullable": True}


LATENCY = _obj({"p50_us": NUM, "p90_us": NUM, "p99_us": NUM, "p999_us": NUM})
HIT_RATIO = _obj({"dram": NUM, "device": NUM, "miss": NUM})

SCHEMAS: dict[str, Any] = {
    "Error": _obj({"error": STR}),
    "Session": _obj({"auth_required": BOOL, "password_login": BOOL, "authenticated": BOOL,
                     "csrf_token": _nullable(STR)}),
    "Login": _obj({"password": {"type": "string", "minLength": 1, "maxLength": 1024}}),
    "LoginResult": _obj({"authenticated": BOOL, "csrf_token": STR}),
    "Logout": _obj({"authenticated": BOOL}),
    "Sample": _obj({
        "time": NUM, "requests_per_s": NUM, "gets_per_s": NUM, "sets_per_s": NUM,
        "hit_ratio": HIT_RATIO, "bytes_in_per_s": NUM, "bytes_out_per_s": NUM,
        "device_write_bytes_per_s": NUM, "connections": INT, "latency": LATENCY}),
    "Stats": _obj({
        "time": NUM, "uptime_s": NUM, "mode": {"type": "string", "enum": ["standalone", "proxy"]},
        "counters": {"type": "object", "additionalProperties": INT},
        "gauges": {"type": "array", "items": STR},
        "requests": INT, "hit_ratio": HIT_RATIO,
        "latency": _obj({"buckets_ns": {"type": "array", "items": INT}, "sum_ns": INT,
                         **LATENCY["properties"]}),
        "store": {"type": "object", "additionalProperties": INT},
        "reloads": INT, "reloads_refused": INT,
        "sample": {"allOf": [_ref("Sample")], "nullable": True}}),
    "History": _obj({"interval_s": NUM, "samples": {"type": "array", "items": _ref("Sample")}}),
    "Backend": _obj({
        "name": STR, "address": STR, "host": STR, "port": INT, "weight": INT, "pool": STR,
        "failure_policy": STR, "state": {"type": "string", "enum": list(BACKEND_STATES)},
        "requests": INT, "errors": INT, "timeouts": INT, "in_flight": INT,
        "state_changes": INT, "consecutive_failures": INT,
        "latency_us": {"type": "array", "items": INT}, "p50_us": INT, "p99_us": INT}),
    "Backends": _obj({"mode": {"type": "string", "enum": ["standalone", "proxy"]},
                      "backends": {"type": "array", "items": _ref("Backend")}}),
    "Storage": _obj({
        "devices": {"type": "array", "items": {"type": "object"}},
        "pools": {"type": "array", "items": {"type": "object"}},
        "pending": {"type": "array", "items": STR},
        "error": STR,
        "store": _obj({k: INT for k in (
            "items", "hot_items", "hot_bytes_used", "hot_bytes_limit", "index_bytes",
            "evictions", "hot_evictions", "device_writes", "device_write_bytes",
            "device_reads", "device_reads_async", "device_reads_in_flight")}
            | {"write_bytes_per_s": NUM,
               "read_latency_us": {"type": "object", "additionalProperties": INT},
               "read_depth": {"type": "object", "additionalProperties": INT}})},
        required=["devices", "pools", "pending", "store"]),
    "Switch": _obj({"enabled": BOOL, "mode": STR, "message": STR,
                    "ports": {"type": "array", "items": {"type": "object"}},
                    "rules": {"type": "array", "items": {"type": "object"}},
                    "functions": {"type": "array", "items": {"type": "object"}},
                    "totals": {"type": "object", "additionalProperties": INT}}),
    "Buckets": _obj({"enabled": BOOL, "url": _nullable(STR), "message": STR,
                     "buckets": {"type": "array", "items": _ref("Bucket")}}),
    # Characters, not bytes: a longer prefix as UTF-8 is refused (400), as a key is.
    "PurgeRequest": _obj({"prefix": {"type": "string", "maxLength": PREFIX_MAX_BYTES}}),
    "PurgeResult": _obj({"bucket": STR, "prefix": STR, "purged": INT}),
    "ConfigView": _obj({"source": _nullable(STR), "text": _nullable(STR), "reloads": INT,
                        "refused": INT, "last_error": _nullable(STR)}),
    "ConfigText": _obj({"text": {"type": "string", "maxLength": 1024**2}}),
    "ConfigProblem": _obj({"line": _nullable(INT), "path": _nullable(STR), "message": STR,
                           "text": STR}),
    "Validation": _obj({"ok": BOOL,
                        "errors": {"type": "array", "items": _ref("ConfigProblem")}}),
    "ApplyResult": _obj({"ok": BOOL, "message": STR, "changes": {"type": "array", "items": STR},
                         "errors": {"type": "array", "items": _ref("ConfigProblem")}}),
    "KeyInfo": _obj({
        "key": STR,
        "owner": _nullable(_obj({"name": STR, "address": STR, "state": STR})),
        "tier": {"type": "string", "enum": ["dram", "device", "absent"]},
        "size": _nullable(INT), "flags": _nullable(INT), "ttl_left_s": _nullable(INT),
        "expires": _nullable(INT), "cas": _nullable(INT), "last_access_s_ago": _nullable(INT)}),
    "KeyDeleted": _obj({"key": STR, "deleted": BOOL, "reply": STR}),
    "FlushRequest": _obj({"confirm": {"type": "boolean", "enum": [True]}}),
    "FlushResult": _obj({"flushed": BOOL, "scope": STR, "backends_flushed": BOOL}),
    "Events": _obj({"events": {"type": "array", "items": _obj({
        "id": INT, "time": NUM, "kind": STR, "level": STR, "message": STR})}}),
}


def _bucket_schema() -> dict[str, Any]:
    """One bucket: its settings, then struct ss_bucket_stats field for field. Built when
    the document is asked for: the field list comes from the compiled data plane."""
    return _obj({"name": STR, "kind": STR, "url": STR, "hit_ratio": _nullable(NUM),
                 **{field: INT for field in bucket_stat_fields()}})


def _json(schema: str) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": _ref(schema)}}}


def _errors(*codes: int) -> dict[str, Any]:
    # Any route may meet these from the auth and error middlewares.
    what = {400: "bad input", 401: "not logged in, or a wrong token",
            403: "missing or wrong X-CSRF-Token, or a refused Host/Origin",
            404: "no such thing", 409: "does not apply in this mode or state",
            413: "body too large", 415: "not JSON", 422: "config refused",
            503: "a back end or the data plane failed it"}
    return {str(c): {"description": what[c], **_json("Error")}
            for c in sorted({400, 401, 403, *codes})}


CSRF = {"name": "X-CSRF-Token", "in": "header", "required": False,
        "description": "the session's CSRF token (GET /api/v1/session); not needed with a "
                       "bearer token", "schema": {"type": "string"}}


def _op(summary: str, ok: str | None, *codes: int, body: str | None = None,
        params: list[dict[str, Any]] | None = None, change: bool = False,
        public: bool = False, ok_status: int = 200) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {}}
    if ok is not None:
        op["responses"][str(ok_status)] = {"description": "ok", **_json(ok)}
    op["responses"].update(_errors(*codes, *((413, 415) if body else ())))
    parameters = list(params or [])
    if change:
        parameters.append(CSRF)
    if parameters:
        op["parameters"] = parameters
    if body:
        op["requestBody"] = {"required": True, **_json(body)}
    if public:
        op["security"] = []
    return op


def _refused_is_a_result(op: dict[str, Any]) -> dict[str, Any]:
    op["responses"]["422"] = {"description": "refused; the running config is unchanged",
                              **_json("ApplyResult")}
    return op


def _path_param(name: str, schema: dict[str, Any], text: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema, "description": text}


KEY = _path_param("key", {"type": "string", "minLength": 1, "maxLength": 250},
                  "the key (URL-encoded)")
# The text protocol carries no spaces or control characters in a key.
TEXT_KEY = _path_param("key", {"type": "string", "minLength": 1, "maxLength": 250,
                               "pattern": "^[^\\x00-\\x20\\x7f]+$"},
                       "the key (URL-encoded); at most 250 bytes as UTF-8")
NAME = _path_param("name", {"type": "string", "minLength": 1}, "the back end's name")
BUCKET = _path_param("name", {"type": "string", "minLength": 1},
                     "the bucket's name (objects.buckets[].name)")
ACTION = _path_param("action", {"type": "string", "enum": list(BACKEND_ACTIONS)},
                     "drain: no new keys routed to it; eject: out of the ring; restore: up")

PATHS: dict[str, dict[str, Any]] = {
    "/api/v1/session": {"get": _op("who is calling, and the session's CSRF token", "Session",
                                   public=True)},
    "/api/v1/login": {"post": _op("log in with the console password", "LoginResult", 409,
                                  body="Login", public=True)},
    "/api/v1/logout": {"post": _op("end this session", "Logout", change=True)},
    "/api/v1/stats": {"get": _op("every counter, request latency, hit ratio, latest rates",
                                 "Stats")},
    "/api/v1/stats/history": {"get": _op("one sample a second for the last minutes",
                                         "History")},
    "/api/v1/stats/stream": {"get": {
        "summary": "server-sent events: one Sample (JSON) a second",
        "parameters": [{"name": "max_events", "in": "query", "required": False,
                        "schema": {"type": "integer", "minimum": 1, "maximum": 86400}}],
        "responses": {"200": {"description": "an event stream",
                              "content": {"text/event-stream": {"schema": STR}}},
                      **_errors()}}},
    "/api/v1/backends": {"get": _op("back ends with state, requests, errors, latency",
                                    "Backends")},
    "/api/v1/backends/{name}": {"get": _op("one back end", "Backend", 404, params=[NAME])},
    "/api/v1/backends/{name}/{action}": {"post": _op(
        "drain, eject or restore a back end", "Backend", 404, 409, 503,
        params=[NAME, ACTION], change=True)},
    "/api/v1/storage": {"get": _op("devices, pools, provisioning state, store figures",
                                   "Storage")},
    "/api/v1/switch": {"get": _op("switch mode: ports and flow rules", "Switch")},
    "/api/v1/buckets": {"get": _op("the objects listener and every bucket with its "
                                   "figures (enabled: false when object requests are off)",
                                   "Buckets", 503)},
    "/api/v1/buckets/{name}": {"get": _op("one bucket", "Bucket", 404, 409, 503,
                                          params=[BUCKET])},
    "/api/v1/buckets/{name}/purge": {"post": _op(
        "drop the bucket's objects whose keys start with prefix (\"\" drops them all)",
        "PurgeResult", 404, 409, 503, body="PurgeRequest", params=[BUCKET], change=True)},
    "/api/v1/config": {"get": _op("the running config and how reloads went", "ConfigView")},
    "/api/v1/config/validate": {"post": _op(
        "check a config without applying it; errors by line and YAML path", "Validation",
        body="ConfigText", change=True)},
    "/api/v1/config/apply": {"post": _refused_is_a_result(_op(
        "apply a config (a reload); a refused one leaves the running config in place "
        "(422, with the reasons)", "ApplyResult", body="ConfigText", change=True))},
    "/api/v1/keys/{key}": {
        "get": _op("look a key up: owner, local tier, size, flags, TTL left", "KeyInfo", 503,
                   params=[KEY]),
        "delete": _op("delete a key as a client would (back end too, in proxy mode)",
                      "KeyDeleted", 503, params=[TEXT_KEY], change=True)},
    "/api/v1/flush": {"post": _op("drop every item this appliance holds (back ends keep "
                                  "theirs)", "FlushResult", 503, body="FlushRequest",
                                  change=True)},
    "/api/v1/events": {"get": _op(
        "the event log: back-end state changes, reloads, operator actions, errors", "Events",
        params=[{"name": "after", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": 0, "maximum": 2**62}},
                {"name": "limit", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": 1, "maximum": 1000}}])},
    "/api/v1/openapi.json": {"get": {"summary": "this document", "security": [],
                                     "responses": {"200": {
                                         "description": "OpenAPI 3.0",
                                         "content": {"application/json": {
                                             "schema": {"type": "object"}}}}}}},
}


def document() -> dict[str, Any]:
    """The OpenAPI document."""
    return {
        "openapi": "3.0.3",
        "info": {"title": "SmartSwitch console API", "version": __version__,
                 "description": "What the console pages use. Authenticate with a bearer "
                                "token, or log in and send X-CSRF-Token with every change. "
                                "Prometheus metrics are at /metrics (not under /api/v1)."},
        "paths": PATHS,
        "components": {
            "schemas": {**SCHEMAS, "Bucket": _bucket_schema()},
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "session": {"type": "apiKey", "in": "cookie", "name": "ss_session"}}},
        "security": [{"bearer": []}, {"session": []}],
    }
