"""The console's aiohttp application: routes, middlewares, the sampler.

``create_app(control)`` builds it; web/server.py runs it on its own thread
inside the appliance process. Pages are static files (web/static/) that call
the same /api/v1 routes as any other client. /metrics is Prometheus text.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from aiohttp import web

from appliance.runtime.control import (
    Control,
    ControlError,
    Invalid,
    NotFound,
    Refused,
    Unavailable,
)
from web import api
from web.auth import Auth
from web.keys import CONTROL, STOPPING

log = logging.getLogger("smartswitch")

STATIC = Path(__file__).resolve().parent / "static"
# A pasted config may be up to 1 MiB (appliance.runtime.control.CONFIG_TEXT_MAX), in JSON.
CLIENT_MAX_SIZE = 3 * 1024**2
STATUS = {NotFound: 404, Invalid: 400, Refused: 409, Unavailable: 503}
# No asset comes from outside the appliance, and no page may frame ours.
CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
       "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


def _json_error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


@web.middleware
async def errors(request: web.Request,
                 handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                 ) -> web.StreamResponse:
    """Domain errors -> status + JSON; HTTP errors on API paths get a JSON body too."""
    try:
        return await handler(request)
    except ControlError as exc:
        return _json_error(STATUS.get(type(exc), 400), str(exc))
    except web.HTTPException as exc:
        if exc.content_type == "application/json" or not (
                request.path.startswith("/api/") or request.path == "/metrics"):
            raise
        if exc.status < 400:
            raise
        response = _json_error(exc.status, exc.reason)
        if "Allow" in exc.headers:  # a 405 must say what is allowed (RFC 9110)
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except Exception:
        log.exception("console: %s %s failed", request.method, request.path)
        return _json_error(500, "internal error; the appliance log has the details")


async def _headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    if request.path.startswith("/api/"):
        response.headers.setdefault("Cache-Control", "no-store")


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html")


def _sampler(control: Control) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        async def loop() -> None:
            while True:
                control.sample()
                await asyncio.sleep(api.SAMPLE_INTERVAL_S)

        task = asyncio.create_task(loop())
        try:
            yield
        finally:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
    return ctx


def create_app(control: Control) -> web.Application:
    """The console application over one running appliance's control facade."""
    auth = Auth(lambda: control.config.console.auth,
                lambda: control.config.console.session_ttl)
    app = web.Application(middlewares=[errors, auth.middleware],
                          client_max_size=CLIENT_MAX_SIZE)
    app[CONTROL] = control
    app[STOPPING] = asyncio.Event()

    async def on_shutdown(app: web.Application) -> None:
        app[STOPPING].set()

    app.on_shutdown.append(on_shutdown)
    app.on_response_prepare.append(_headers)
    app.cleanup_ctx.append(_sampler(control))
    add_routes(app, auth)
    return app


def add_routes(app: web.Application, auth: Auth) -> None:
    r = app.router
    v1 = "/api/v1"
    r.add_get("/", index)
    r.add_static("/static", STATIC)
    r.add_get("/metrics", api.metrics_page)
    r.add_get(f"{v1}/openapi.json", api.openapi_json)
    r.add_get(f"{v1}/session", auth.session)
    r.add_post(f"{v1}/login", auth.login)
    r.add_post(f"{v1}/logout", auth.logout)
    r.add_get(f"{v1}/stats", api.stats)
    r.add_get(f"{v1}/stats/history", api.history)
    r.add_get(f"{v1}/stats/stream", api.stream)
    r.add_get(f"{v1}/backends", api.backends)
    r.add_get(f"{v1}/backends/{{name}}", api.backend)
    r.add_post(f"{v1}/backends/{{name}}/{{action}}", api.backend_action)
    r.add_get(f"{v1}/storage", api.storage)
    r.add_get(f"{v1}/switch", api.switch)
    r.add_get(f"{v1}/buckets", api.buckets)
    r.add_get(f"{v1}/buckets/{{name}}", api.bucket)
    r.add_post(f"{v1}/buckets/{{name}}/purge", api.bucket_purge)
    r.add_get(f"{v1}/config", api.config)
    r.add_post(f"{v1}/config/validate", api.config_validate)
    r.add_post(f"{v1}/config/apply", api.config_apply)
    # Any characters, "/" and newlines included: a key is whatever the client sent.
    r.add_get(f"{v1}/keys/{{key:[\\s\\S]+}}", api.key_get)
    r.add_delete(f"{v1}/keys/{{key:[\\s\\S]+}}", api.key_delete)
    r.add_post(f"{v1}/flush", api.flush)
    r.add_get(f"{v1}/events", api.events)


__all__ = ["create_app"]
