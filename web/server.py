"""Run the console inside the appliance process, on a thread with its own event loop.

The runner starts it after the data plane exists and before the ready line
(a console that can't bind stops start-up with a clear error), and stops it
before the data plane is destroyed, so no request ever reaches a closed store.
"""

from __future__ import annotations

import asyncio
import logging
import threading

from aiohttp import web

from appliance.config.console import ConsoleConfig
from appliance.runtime.control import Control
from web.app import create_app

log = logging.getLogger("smartswitch")

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
SHUTDOWN_GRACE_S = 2.0


class ConsoleStartError(Exception):
    """The console could not listen; the message says where and why."""


class ConsoleServer:
    """The console's HTTP server on its own thread.

    Attributes:
        port: the bound port once started (the config may say 0).
    """

    def __init__(self, control: Control, config: ConsoleConfig) -> None:
        self.control = control
        self.config = config
        self.port: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: str | None = None
        self._thread = threading.Thread(target=self._main, name="ss-console", daemon=True)

    @property
    def url(self) -> str:
        host = f"[{self.config.host}]" if ":" in self.config.host else self.config.host
        return f"http://{host}:{self.port}/"

    def start(self) -> None:
        """Bind and serve; returns once listening.

        Raises:
            ConsoleStartError: the address can't be bound.
        """
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT_S):
            raise ConsoleStartError(f"console.listen {self.config.address}: the console did "
                                    f"not start within {START_TIMEOUT_S:.0f}s")
        if self._error is not None:
            self._thread.join(STOP_TIMEOUT_S)
            raise ConsoleStartError(self._error)

    def stop(self) -> None:
        """Stop serving (event streams end) and join the thread. Idempotent."""
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and self._thread.is_alive():
            loop.call_soon_threadsafe(stop.set)
        if self._thread.is_alive():
            self._thread.join(STOP_TIMEOUT_S)
            if self._thread.is_alive():
                log.error("the console did not stop within %.0fs", STOP_TIMEOUT_S)

    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # a console that dies says so, loudly
            if not self._ready.is_set():
                self._error = f"console: {exc}"
                self._ready.set()
            else:
                log.critical("the console failed: %s", exc, exc_info=True)
        finally:
            loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        runner = web.AppRunner(create_app(self.control), access_log=None,
                               shutdown_timeout=SHUTDOWN_GRACE_S)
        await runner.setup()
        site = web.TCPSite(runner, self.config.host, self.config.port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            self._error = (f"console.listen {self.config.address}: cannot listen: "
                           f"{exc.strerror or exc}; free the port or change console.listen")
            self._ready.set()
            return
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else self.config.port
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()
