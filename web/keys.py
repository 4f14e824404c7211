"""Typed keys of the console's aiohttp application (web.AppKey)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from appliance.runtime.control import Control

CONTROL = web.AppKey("control", Control)
# Set when the console shuts down: long-lived responses (event streams) end.
STOPPING = web.AppKey("stopping", asyncio.Event)
# How the request was authenticated: "token", "session", "open" (no auth configured).
AUTH_VIA = web.RequestKey("auth_via", str)
