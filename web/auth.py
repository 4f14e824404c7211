"""Console authentication: password login with sessions, API tokens, CSRF, Host checks.

Who may call what:

* With ``console.auth`` configured (a password hash, tokens, or both), every
  /api/v1 route except ``session``, ``login`` and ``openapi.json``, and
  /metrics, needs either ``Authorization: Bearer TOKEN`` (a configured token)
  or a session cookie from ``POST /api/v1/login``. Without auth (allowed on
  loopback only; appliance.config.console refuses it elsewhere) anyone who can reach
  the address may read and act.
* Every state-changing request (POST, PUT, PATCH, DELETE) that is not made
  with a token must carry ``X-CSRF-Token`` equal to its session's token.
  ``GET /api/v1/session`` starts a session (anonymous when there is no auth)
  and returns it. A cross-site page can neither read that token nor send
  the header without a CORS preflight, which this server never grants.
* The session cookie is HttpOnly and SameSite=Strict. Login takes JSON only.
* Without auth, the Host header must name a loopback host: a DNS-rebinding
  page can't then drive the console from a browser on this machine.

Sessions live in memory: a restart logs everyone out.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import secrets
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from appliance.config import passwords
from appliance.config.console import ConsoleAuthConfig
from web.keys import AUTH_VIA

COOKIE = "ss_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_SESSIONS = 10_000
# Routes anyone may call, even with auth configured.
PUBLIC_API = frozenset({"/api/v1/session", "/api/v1/login", "/api/v1/openapi.json"})
LOGIN_FAILURE_DELAY_S = 0.5  # on top of scrypt's own cost


@dataclass
class Session:
    """One browser's session."""

    sid: str
    csrf: str
    authenticated: bool  # False: an anonymous session (no auth configured)
    expires: float


class Sessions:
    """In-memory sessions, bounded in number and time."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._by_id: dict[str, Session] = {}
        self._lock = threading.Lock()
        self.clock = clock

    def create(self, authenticated: bool, ttl_s: float) -> Session:
        s = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), authenticated,
                    self.clock() + ttl_s)
        with self._lock:
            self._expire()
            if len(self._by_id) >= MAX_SESSIONS:  # drop the oldest rather than grow
                oldest = min(self._by_id.values(), key=lambda x: x.expires)
                del self._by_id[oldest.sid]
            self._by_id[s.sid] = s
        return s

    def get(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        with self._lock:
            s = self._by_id.get(sid)
            if s is not None and s.expires <= self.clock():
                del self._by_id[sid]
                return None
            return s

    def drop(self, sid: str) -> None:
        with self._lock:
            self._by_id.pop(sid, None)

    def _expire(self) -> None:
        now = self.clock()
        for sid in [k for k, s in self._by_id.items() if s.expires <= now]:
            del self._by_id[sid]


def token_ok(given: str, tokens: tuple[str, ...]) -> bool:
    """Constant-time match of a bearer token against every configured one."""
    ok = False
    for t in tokens:
        ok |= hmac.compare_digest(given.encode(), t.encode())
    return ok


def _loopback_host(host_header: str) -> bool:
    host = host_header.rsplit(":", 1)[0] if not host_header.endswith("]") else host_header
    if host.startswith("[") and "]" in host:
        host = host[1:host.index("]")]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def json_error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


class Auth:
    """The auth middleware and the session/login/logout handlers.

    Args:
        get_auth: the running config's console.auth (reloads change it live).
        get_ttl_ms: the running config's console.session_ttl.
    """

    def __init__(self, get_auth: Callable[[], ConsoleAuthConfig],
                 get_ttl_ms: Callable[[], int]) -> None:
        self.get_auth = get_auth
        self.get_ttl_ms = get_ttl_ms
        self.sessions = Sessions()
        self._login_lock = asyncio.Lock()

    # ---- who is calling ----

    def _session(self, request: web.Request) -> Session | None:
        return self.sessions.get(request.cookies.get(COOKIE))

    def _bearer(self, request: web.Request) -> str | None:
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        return value.strip() if scheme.lower() == "bearer" and value.strip() else None

    @web.middleware
    async def middleware(self, request: web.Request,
                         handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                         ) -> web.StreamResponse:
        auth = self.get_auth()
        path = request.path
        guarded = path.startswith("/api/") or path == "/metrics"
        if not auth.enabled and not _loopback_host(request.host or ""):
            return json_error(403, f"Host {request.host!r} refused: without console.auth the "
                                   f"console answers only to a loopback host name or address")
        if not guarded:
            return await handler(request)
        origin = request.headers.get("Origin")
        if origin and request.method not in SAFE_METHODS and \
                origin.split("://", 1)[-1] != request.host:
            return json_error(403, f"cross-origin request from {origin} refused")
        bearer = self._bearer(request)
        session = self._session(request)
        via = None
        if bearer is not None:
            if not token_ok(bearer, auth.tokens):
                return json_error(401, "invalid API token")
            via = "token"
        elif session is not None and (session.authenticated or not auth.enabled):
            via = "session"
        elif not auth.enabled:
            via = "open"
        if via is None and path not in PUBLIC_API:
            return json_error(401, "log in (POST /api/v1/login) or send Authorization: "
                                   "Bearer TOKEN")
        if request.method not in SAFE_METHODS and via != "token" and path not in PUBLIC_API:
            given = request.headers.get(CSRF_HEADER, "")
            if session is None or not given or not hmac.compare_digest(given, session.csrf):
                return json_error(403, f"missing or wrong {CSRF_HEADER} header: get one from "
                                       f"GET /api/v1/session and send it with every change")
        request[AUTH_VIA] = via or ""
        return await handler(request)

    # ---- handlers ----

    def _set_cookie(self, response: web.StreamResponse, s: Session) -> None:
        response.set_cookie(COOKIE, s.sid, httponly=True, samesite="Strict", path="/",
                            max_age=int(self.get_ttl_ms() // 1000))

    async def session(self, request: web.Request) -> web.Response:
        """GET /api/v1/session: who am I, and this session's CSRF token."""
        auth = self.get_auth()
        s = self._session(request)
        if s is None and not auth.enabled:
            s = self.sessions.create(False, self.get_ttl_ms() / 1000)
        authenticated = (s is not None and s.authenticated) or not auth.enabled \
            or request.get(AUTH_VIA) == "token"
        body = {"auth_required": auth.enabled,
                "password_login": auth.password_hash is not None,
                "authenticated": authenticated,
                "csrf_token": s.csrf if s is not None and (s.authenticated or not auth.enabled)
                else None}
        response = web.json_response(body)
        if s is not None and not auth.enabled:
            self._set_cookie(response, s)
        return response

    async def login(self, request: web.Request) -> web.Response:
        """POST /api/v1/login {"password": ...}: a session cookie and its CSRF token."""
        auth = self.get_auth()
        if request.content_type != "application/json":
            return json_error(415, "send the password as JSON: {\"password\": \"...\"}")
        try:
            body = await request.json()
        except ValueError:
            return json_error(400, "body: expected JSON like {\"password\": \"...\"}")
        password = body.get("password") if isinstance(body, dict) else None
        if not isinstance(password, str) or not password or len(password) > 1024:
            return json_error(400, "password: expected a non-empty string of at most 1024 "
                                   "characters")
        if auth.password_hash is None:
            return json_error(409, "password login is not configured (console.auth."
                                   "password_hash); use an API token" if auth.enabled else
                                   "no console.auth is configured: nothing to log in to")
        stored = passwords.parse(auth.password_hash)
        # One scrypt at a time, off the event loop: logins can't starve the console.
        async with self._login_lock:
            ok = await asyncio.to_thread(passwords.verify, password, stored)
            if not ok:
                await asyncio.sleep(LOGIN_FAILURE_DELAY_S)
        if not ok:
            return json_error(401, "wrong password")
        old = self._session(request)
        if old is not None:
            self.sessions.drop(old.sid)  # a fresh id on login: no session fixation
        s = self.sessions.create(True, self.get_ttl_ms() / 1000)
        response = web.json_response({"authenticated": True, "csrf_token": s.csrf})
        self._set_cookie(response, s)
        return response

    async def logout(self, request: web.Request) -> web.Response:
        """POST /api/v1/logout: end this session."""
        s = self._session(request)
        if s is not None:
            self.sessions.drop(s.sid)
        response = web.json_response({"authenticated": False})
        response.del_cookie(COOKIE, path="/")
        return response
