"""Lifecycle: config -> data plane settings -> threads -> clean shutdown.

Python owns start-up and shut-down only. One Python thread per worker sits in
ss_dataplane_run_worker() with the GIL released for as long as it serves; a
housekeeping thread calls ss_dataplane_housekeep() every 100 ms (and, in proxy
mode, logs back-end state changes); in proxy mode a prober thread restores
back ends that answer again; the main thread waits for SIGTERM/SIGINT and
reloads the config on SIGHUP. Nothing here runs per request.

Failures an operator can fix (a port in use, a device that can't be opened,
a store another process holds) raise StartError (appliance.StartError) with
one line saying what failed and what to do; the CLI prints it and exits 2.

The steps before serving live with their planes: the data plane's settings
(appliance.runtime.settings), storage (appliance.storage.serving, with the
device kind's driver), provisioning (appliance.runtime.offline).
"""

from __future__ import annotations

import faulthandler
import logging
import signal
import sys
import threading
import time
import types
from typing import Any

from appliance import StartError
from appliance.config import Config
from appliance.proxy.health import HealthMonitor
from appliance.proxy.ring import RingError
from appliance.runtime import reload
from appliance.runtime.control import Control, EventLog
from appliance.runtime.offline import provision_storage
from appliance.runtime.settings import create_dataplane, dataplane_settings
from appliance.runtime.switch import SwitchRuntime, SwitchStartError
from appliance.storage import provision
from appliance.storage.serving import objects_settings, prepare_storage
from dataplane.fastpath import (
    Dataplane,
    DataplaneError,
    DataplaneSettings,
    load,
    proxy_available,
)

log = logging.getLogger("smartswitch")

HOUSEKEEP_INTERVAL_S = 0.1
# A worker that has not returned this long after stop() is stuck in C; the
# store can't be closed safely under it, so we exit without destroying.
JOIN_TIMEOUT_S = 30.0

def endpoint(host: str, port: int | None) -> str:
    """HOST:PORT with IPv6 hosts in brackets; "off" when there is no port."""
    if port is None:
        return "off"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# --------------------------------------------------------------- lifecycle


class Supervisor:
    """Runs the worker and housekeeping threads and stops them on request."""

    def __init__(self, dp: Dataplane, workers: int, monitor: HealthMonitor | None = None,
                 reloader: reload.Reloader | None = None,
                 switch: SwitchRuntime | None = None) -> None:
        self.dp = dp
        self.switch = switch
        self.workers = workers
        self.monitor = monitor
        self.reloader = reloader
        self.stopping = threading.Event()
        self.reload_requested = threading.Event()
        self.failed = False
        self.joined = False  # every thread returned: destroy() is safe
        self.console_url: str | None = None  # for the ready line
        # Reentrant: a second signal can arrive while the main thread is
        # inside request_stop for the first one.
        self._lock = threading.RLock()

    def request_stop(self, reason: str, *, failed: bool = False) -> None:
        """Ask everything to wind down (any thread, or a signal handler)."""
        with self._lock:
            self.failed = self.failed or failed
            if self.stopping.is_set():
                return
            self.stopping.set()
        log.log(logging.ERROR if failed else logging.INFO, "stopping: %s", reason)
        if self.switch is not None:
            self.switch.stop()
        self.dp.stop()

    def _worker(self, worker_id: int) -> None:
        try:
            self.dp.run_worker(worker_id)
        except DataplaneError as exc:
            if not self.stopping.is_set():
                log.critical("worker %d failed: %s", worker_id, exc)
                self.request_stop(f"worker {worker_id} failed", failed=True)
            return
        except BaseException:
            log.critical("worker %d crashed", worker_id, exc_info=True)
            self.request_stop(f"worker {worker_id} crashed", failed=True)
            return
        if not self.stopping.is_set():
            log.critical("worker %d returned without being asked to stop", worker_id)
            self.request_stop(f"worker {worker_id} returned", failed=True)

    def _housekeeper(self) -> None:
        # Ticks are scheduled on a monotonic clock so a slow housekeep call
        # shortens the next wait rather than drifting the schedule.
        deadline = time.monotonic()
        while True:
            deadline += HOUSEKEEP_INTERVAL_S
            if self.stopping.wait(max(0.0, deadline - time.monotonic())):
                return
            try:
                self.dp.housekeep()
                if self.monitor is not None:
                    self.monitor.tick()
            except BaseException as exc:
                log.critical("housekeeping failed: %s", exc, exc_info=True)
                self.request_stop("housekeeping failed", failed=True)
                return

    def serve(self, settings: DataplaneSettings) -> int:
        """Start the threads, log the ready line, wait for stop, join.

        Returns:
            0 after a requested stop, 1 after a failure.
        """
        threads = [threading.Thread(target=self._worker, args=(i,), name=f"ss-worker-{i}",
                                    daemon=True) for i in range(self.workers)]
        threads.append(threading.Thread(target=self._housekeeper, name="ss-housekeeper",
                                        daemon=True))
        if self.monitor is not None:
            threads.append(threading.Thread(
                target=self.monitor.run, name="ss-prober", daemon=True,
                args=(self.stopping, lambda why: self.request_stop(why, failed=True))))
        if self.switch is not None:
            threads += self.switch.threads(
                self.stopping, lambda why: self.request_stop(why, failed=True))
        for t in threads:
            t.start()
        host = settings.listen_host
        # The one line integration tests and operators wait for.
        objects = "off"
        if settings.objects is not None:
            objects = f"http://{endpoint(settings.objects.listen_host, self.dp.objects_port())}/"
        log.info("ready tcp=%s udp=%s workers=%d store=%s version=%s console=%s objects=%s",
                 endpoint(host, self.dp.bound_port(False)),
                 endpoint(host, self.dp.bound_port(True)), self.workers,
                 settings.store.device_path, settings.version, self.console_url or "off",
                 objects)
        # The main thread waits, and reloads when SIGHUP asked for it: signal
        # handlers run here between waits and only set the flag.
        while not self.stopping.wait(0.1):
            if self.reload_requested.is_set():
                self.reload_requested.clear()
                if self.reloader is not None:
                    self.reloader.reload()
        give_up = time.monotonic() + JOIN_TIMEOUT_S
        for t in threads:
            t.join(max(0.0, give_up - time.monotonic()))
            if t.is_alive():
                log.critical("%s did not stop within %.0fs; exiting without closing the "
                             "store (restart will verify it)", t.name, JOIN_TIMEOUT_S)
                return 1
        self.joined = True
        return 1 if self.failed else 0


def _install_signals(sup: Supervisor) -> dict[int, Any]:
    """Route SIGTERM/SIGINT to a clean stop and SIGHUP to a reload."""
    if threading.current_thread() is not threading.main_thread():
        return {}

    def on_stop(signum: int, frame: types.FrameType | None) -> None:
        sup.request_stop(signal.Signals(signum).name)

    def on_hup(signum: int, frame: types.FrameType | None) -> None:
        log.info("SIGHUP: reloading the config")
        sup.reload_requested.set()

    previous = {}
    for signum, handler in ((signal.SIGTERM, on_stop), (signal.SIGINT, on_stop),
                            (signal.SIGHUP, on_hup)):
        previous[signum] = signal.signal(signum, handler)
    # SIGUSR1 writes every thread's Python stack to stderr (the log), from C:
    # it works even when the main thread is stuck and SIGTERM cannot be
    # handled, which is when an operator (or a test that timed out) needs it.
    faulthandler.register(signal.SIGUSR1, file=sys.stderr, all_threads=True)
    return previous


def run(config: Config) -> int:
    """Serve until SIGTERM/SIGINT; return the process exit code.

    Raises:
        StartError: the appliance could not start (nothing is left running).
        DataplaneError: the C data plane is missing or stale.
    """
    load()  # refuse a missing or stale build before touching any file
    if config.proxy and not proxy_available():
        raise StartError("backends: proxy mode needs a data plane built with "
                         "ss_dataplane_set_routing and this build has none; rebuild it "
                         "(`make build`) or remove backends to run standalone")
    prepare_storage(config)
    served = provision.served_driver(config)
    switch = SwitchRuntime(config) if config.dataplane.switch else None
    if switch is not None:
        try:
            # EAL; the tap gets the service address. First: SPDK attaches to this EAL.
            switch.before_dataplane()
        except SwitchStartError as exc:
            raise StartError(str(exc)) from None
    served.check_can_serve(config)  # refuse before provisioning changes anything (SPDK)
    layout = provision_storage(config)
    region = provision.memcached_region(layout, config)
    pool = config.storage.memcached_pool
    store_device = served.open_store_device(config, layout)
    settings = dataplane_settings(config, region=region,
                                  capacity=layout.devices[pool.device], store_device=store_device,
                                  objects=objects_settings(config, layout))
    # ss_dataplane_create() probes the ports without SO_REUSEPORT (so a
    # second appliance fails on the port) and flocks the store, and says
    # which; there is no second copy of those checks here.
    dp = create_dataplane(settings)
    if switch is not None:
        try:
            switch.start(dp)
        except SwitchStartError as exc:
            dp.destroy()
            raise StartError(str(exc)) from None
    monitor = HealthMonitor(dp, config.all_backends) if config.proxy else None
    reloader = reload.Reloader(dp, config, monitor)
    try:
        # Before any worker runs, so the first request already routes.
        reloader.apply_initial()
    except (DataplaneError, RingError, ValueError) as exc:
        if switch is not None:
            switch.destroy()
        dp.destroy()
        raise StartError(f"cannot install the routing table: {exc}") from None
    if config.proxy:
        log.info("proxy mode: %d back ends, %s %s (%s compat), %d spare pools",
                 len(config.backends), config.routing.distribution, config.routing.hash,
                 config.routing.compat, len(config.spare_pools))
    events = EventLog()
    log.addHandler(events)
    try:
        console = _start_console(config, Control(dp, reloader, monitor, events, switch=switch))
    except StartError:
        log.removeHandler(events)
        dp.destroy()
        raise
    sup = Supervisor(dp, settings.workers, monitor, reloader, switch)
    sup.console_url = console.url if console is not None else None
    previous = _install_signals(sup)
    reload.install(reloader)
    try:
        code = sup.serve(settings)
        if console is not None:
            console.stop()  # before destroy: no request may reach a closed store
        if sup.joined:
            if switch is not None:
                switch.destroy()  # stops and closes the ports (the tap goes away)
            dp.destroy()  # writes the open segment, closes the index
            log.info("stopped")
        return code
    finally:
        reload.install(None)
        log.removeHandler(events)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if previous:
            faulthandler.unregister(signal.SIGUSR1)


def _start_console(config: Config, control: Control) -> Any:
    """Start the web console and API when configured (web/server.py); None when off.

    Raises:
        StartError: it can't listen where console.listen says.
    """
    if not config.console.enabled:
        return None
    from web.server import ConsoleServer, ConsoleStartError  # aiohttp only when used

    if not config.console.auth.enabled:
        log.warning("console on %s without console.auth: anyone who can reach this "
                    "machine's loopback may use it", config.console.address)
    console = ConsoleServer(control, config.console)
    try:
        console.start()
    except ConsoleStartError as exc:
        raise StartError(str(exc)) from None
    return console
