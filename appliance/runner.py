"""Lifecycle: config -> data plane settings -> threads -> clean shutdown.

Python owns start-up and shut-down only. One Python thread per worker sits in
ss_dataplane_run_worker() with the GIL released for as long as it serves; a
housekeeping thread calls ss_dataplane_housekeep() every 100 ms (and, in proxy
mode, logs back-end state changes); in proxy mode a prober thread restores
back ends that answer again; the main thread waits for SIGTERM/SIGINT and
reloads the config on SIGHUP. Nothing here runs per request.

Failures an operator can fix (a port in use, a device that can't be opened,
a store another process holds) raise StartError with one line saying what
failed and what to do; the CLI prints it and exits 2.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
import types
from typing import Any

from appliance import __version__, provision, reload
from appliance.backends import HealthMonitor
from appliance.config import LABEL_BYTES, Config
from appliance.control import Control, EventLog
from appliance.ring import RingError
from appliance.switch import SwitchRuntime, SwitchStartError
from dataplane.fastpath import (
    Dataplane,
    DataplaneCreateError,
    DataplaneError,
    DataplaneSettings,
    StoreSettings,
    load,
    proxy_available,
)

log = logging.getLogger("smartswitch")
# Set in the environment of a run started again by reexec_for_spdk, so it happens once.
REEXEC_MARK = "SMARTSWITCH_SPDK_REEXEC"

HOUSEKEEP_INTERVAL_S = 0.1
TCP_BACKLOG = 1024
MAX_AUTO_WORKERS = 1024  # ss_dataplane_create accepts 1..1024 workers
# A worker that has not returned this long after stop() is stuck in C; the
# store can't be closed safely under it, so we exit without destroying.
JOIN_TIMEOUT_S = 30.0


class StartError(Exception):
    """The appliance can't start; the message says what failed and what to do."""


def worker_threads(config: Config) -> int:
    """Worker count: the configured number, or one per usable core for auto."""
    if config.memcached.workers is not None:
        return config.memcached.workers
    return max(1, min(MAX_AUTO_WORKERS, len(os.sched_getaffinity(0))))


def dataplane_settings(config: Config, *, listen: bool = True,
                       region: provision.PoolRegion | None = None,
                       capacity: int | None = None,
                       spdk_device: Any = None) -> DataplaneSettings:
    """Translate the validated config into struct ss_dataplane_settings.

    Pure: touches neither files nor sockets, so it is unit-testable.

    Args:
        config: the validated config.
        listen: False opens the store with no TCP or UDP listener (port -1),
            for maintenance commands such as verify-index.
        region: the memcached pool's place on its device (from the
            provisioning plan); default: the first pool after the label.
        capacity: the device's size (from the plan), which sizes the index
            map so the pool can grow to the whole device without a restart.
        spdk_device: for a pool on a kind: spdk device, the `struct ss_device *`
            the SPDK data path opened (open_spdk_pool), given to the store as
            ss_store_settings.device.
    """
    mc = config.memcached
    storage = config.storage
    pool = storage.memcached_pool
    device = storage.device(pool.device)
    offset = region.offset if region is not None else LABEL_BYTES
    nbytes = region.size if region is not None else int(pool.size)
    capacity = capacity or device.size or offset + nbytes
    # The SPDK device pointer goes in ss_store_settings.device (added with the data path).
    extra = {} if spdk_device is None else {"device": spdk_device}
    store = StoreSettings(
        index_dir=str(storage.index_dir),
        # For spdk the path names the lvol for messages; the store opens `device`.
        device_path=(f"spdk:{device.name}/{pool.name}" if device.kind == "spdk"
                     else str(device.path)),
        device_bytes=nbytes,
        segment_bytes=pool.segment_size,
        hot_bytes=storage.hot_tier,
        item_size_max=mc.item_size_max,
        # LMDB's map is address space, not memory; small items can take more
        # index than device bytes (ss_index.c derives 2x + 64MiB the same way).
        index_map_bytes=2 * capacity + 64 * 1024**2,
        flush_interval_ms=storage.flush_interval,
        device_offset=offset,
        pool_name=pool.name,
        direct_io=bool(device.direct_io),
        **extra,
    )
    return DataplaneSettings(
        listen_host=mc.listen,
        tcp_port=mc.tcp_port if listen else -1,
        udp_port=mc.udp_port if listen and mc.udp_port is not None else -1,
        workers=worker_threads(config) if listen else 1,
        max_connections=mc.max_connections,
        idle_timeout_s=mc.idle_timeout // 1000,
        tcp_backlog=TCP_BACKLOG,
        udp_reply_bytes_per_sec=mc.udp_reply_rate,
        udp_reply_burst_bytes=mc.udp_reply_burst,
        version=protocol_version(),
        store=store,
    )


# memcached release whose replies SmartSwitch matches byte for byte (the
# differential tests run against it). Clients such as libmemcached parse the
# leading numbers of `version` to decide which features the server has (noreply
# needs >= 1.2.5), so the reply leads with it and names SmartSwitch after it.
MEMCACHED_COMPAT_VERSION = "1.6.18"


def protocol_version() -> str:
    """What `version` answers: the memcached release we match, then ours."""
    return f"{MEMCACHED_COMPAT_VERSION}-smartswitch-{__version__}"


def endpoint(host: str, port: int | None) -> str:
    """HOST:PORT with IPv6 hosts in brackets; "off" when there is no port."""
    if port is None:
        return "off"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# ------------------------------------------------------------------ checks


def _device_index(config: Config, name: str) -> int:
    return next(i for i, d in enumerate(config.storage.devices) if d.name == name)


def prepare_storage(config: Config, *, create: bool = True) -> None:
    """Create storage.dir, its index directory and the device's directory,
    and make sure the device file can be opened for reading and writing.

    Args:
        config: the validated config.
        create: False only checks (verify-index must not create a store).

    Raises:
        StartError: naming the setting, the path and what to do.
    """
    storage = config.storage
    for what, path in (("storage.dir", storage.dir), ("storage.dir", storage.index_dir)):
        if create:
            try:
                path.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StartError(f"{what}: cannot create {path}: {exc.strerror}; create it "
                                 f"or point {what} at a writable place") from None
        elif not path.is_dir():
            raise StartError(f"{what}: there is no store at {path}; nothing to verify "
                             f"(start smartswitch with this config first)")
    pool = storage.memcached_pool
    device = storage.device(pool.device)
    if not create and device.path is not None and device.kind != "spdk" and \
            not device.path.exists():
        where = f"storage.devices[{_device_index(config, device.name)}].path"
        raise StartError(f"{where}: {device.path} does not exist; nothing to verify")


# ----------------------------------------------------------- provisioning


def plan_storage(config: Config) -> provision.Plan:
    """The provisioning plan (read only); StartError when it can't be done."""
    try:
        return provision.plan(config)
    except provision.ProvisionError as exc:
        raise StartError(f"{config.source or 'config'}: {exc}") from None
    except OSError as exc:
        raise StartError(f"cannot probe the storage devices: {exc}") from None


def spdk_target(config: Config, layout: provision.Plan) -> tuple[str, int]:
    """(SPDK transport-id string, namespace id) of the memcached pool, from a plan that
    provisioning applied (or found with nothing to do).

    The transport id is what the data path connects to, e.g.
    `trtype:TCP adrfam:IPv4 traddr:127.0.0.1 trsvcid:4420 subnqn:nqn.2016-06.io.smartswitch:nvme0`.

    Raises:
        StartError: the pool is not on an spdk device, its device is not exported
            (`export: null`), or the plan was not applied.
    """
    pool = config.storage.memcached_pool
    device = config.storage.device(pool.device)
    where = f"storage.devices[{_device_index(config, device.name)}]"
    if device.kind != "spdk":
        raise StartError(f"{where}: pool {pool.name} is on a {device.kind} device, not spdk")
    if device.export is None:
        raise StartError(f"{where}.export: pool {pool.name} is served from spdk device "
                         f"{device.name}, which needs an NVMe-oF export for the data path; "
                         f"set export (default 127.0.0.1:4420) instead of null")
    prov = layout.spdk.get(device.name)
    target = prov.target(pool.name) if prov is not None else None
    if target is None:
        raise StartError(f"{where}: pool {pool.name} on spdk device {device.name} is not "
                         f"provisioned and exported yet; run `smartswitch provision`")
    return target


def spdk_library(config: Config) -> Any:
    """Load SPDK's shared libraries for a memcached pool on an spdk device; returns the
    spdk_bindings.datapath.SpdkDataPath. Start-up calls it before provisioning, so a box
    without SPDK is refused with nothing touched.

    Raises:
        StartError: the libraries are missing or unusable (the message says which paths
            were tried and what to do).
    """
    from spdk_bindings import datapath

    pool = config.storage.memcached_pool
    lib_dir = config.storage.spdk.lib_dir
    try:
        return datapath.SpdkDataPath.load(None if lib_dir is None else str(lib_dir))
    except datapath.SpdkUnavailable as exc:
        raise StartError(f"pool {pool.name} is on spdk device {pool.device}, but SPDK cannot "
                         f"be loaded: {exc}") from None


def reexec_for_spdk(config: Config, argv: list[str]) -> None:
    """Start this command again with LD_LIBRARY_PATH naming SPDK's library directory,
    when the memcached pool is on an spdk device and the variable lacks it: the dynamic
    linker reads it only at process start, and SPDK's shared libraries are found only
    through it (spdk_bindings/datapath.py). Returns when nothing needs doing."""
    pool = config.storage.memcached_pool
    if config.storage.device(pool.device).kind != "spdk":
        return
    from spdk_bindings import datapath

    lib_dir = config.storage.spdk.lib_dir
    missing = datapath.missing_library_path(None if lib_dir is None else str(lib_dir))
    if missing is None or os.environ.get(REEXEC_MARK) == str(missing):
        return  # nothing to add, or already added once: load() will say what is wrong
    env = dict(os.environ)
    env[REEXEC_MARK] = str(missing)
    env["LD_LIBRARY_PATH"] = ":".join(p for p in (str(missing),
                                                   os.environ.get("LD_LIBRARY_PATH")) if p)
    log.info("restarting with LD_LIBRARY_PATH=%s for SPDK's libraries", env["LD_LIBRARY_PATH"])
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "appliance", *argv], env)


def open_spdk_pool(config: Config, layout: provision.Plan) -> Any:
    """Start the SPDK environment in this process and open the memcached pool's namespace
    over NVMe-oF; returns the `struct ss_device *` for the store.

    Raises:
        StartError: the SPDK data path (spdk_bindings.datapath) is missing or fails.
    """
    trid, nsid = spdk_target(config, layout)
    pool = config.storage.memcached_pool
    from spdk_bindings import datapath

    spdk = config.storage.spdk
    lib = spdk_library(config)
    try:
        lib.start_env(spdk.mem_size // 1024**2, not spdk.hugepages)
        return lib.open_namespace(trid, nsid)
    except (OSError, RuntimeError, ValueError, datapath.SpdkUnavailable,
            datapath.SpdkDataPathError) as exc:
        raise StartError(f"pool {pool.name}: the SPDK data path cannot open namespace "
                         f"{nsid} of {trid}: {exc}") from None


def shrink_offline(config: Config, step: provision.ShrinkPool,
                   layout: provision.Plan | None = None) -> None:
    """Shrink the memcached pool with the appliance stopped: open the store
    at its old size with no listeners, evict what no longer fits, close."""
    old = provision.PoolRegion(step.region.name, step.region.role, step.region.offset,
                               step.old, step.region.segment_size)
    device = None
    if config.storage.device(config.storage.memcached_pool.device).kind == "spdk":
        device = open_spdk_pool(config, layout or provision.Plan((), {}, {}))
    dp = _create(dataplane_settings(config, listen=False, region=old, spdk_device=device))
    try:
        before = dp.store_stats()["curr_items"]
        dp.shrink_pool(step.region.size)
        after = dp.store_stats()["curr_items"]
        log.info("  pool %s: %d items kept, %d evicted", step.region.name, after,
                 before - after)
    finally:
        dp.destroy()


def provision_storage(config: Config, p: provision.Plan | None = None, *,
                      dry_run: bool = False,
                      say: provision.Progress | None = None) -> provision.Plan:
    """Plan and (unless dry_run) apply provisioning; the runner's and the CLI's action.

    Every check runs before the first change, so a refused plan touches nothing.

    Raises:
        StartError: a device is missing, too small or unusable, or a change was refused.
    """
    say = say or log.info
    p = p or plan_storage(config)
    for note in p.notes:
        say(f"note: {note}")
    objects = [r.name for r in p.regions.values() if r.role == "objects"]
    if objects:
        say(f"objects pools {', '.join(objects)}: space reserved, not served until the "
            f"object store exists")
    if dry_run or not p.steps:
        return p
    try:
        provision.apply(p, config, shrinker=lambda step: shrink_offline(config, step, p),
                        progress=say)
    except (provision.ProvisionError, DataplaneError) as exc:
        raise StartError(f"provisioning failed: {exc}") from None
    except OSError as exc:
        raise StartError(f"provisioning failed: {exc.filename or ''}: {exc.strerror}") from None
    return p


def storage_state(config: Config, dp: Dataplane | None = None) -> dict[str, Any]:
    """Devices, pools and provisioning state for stats and the console.

    The label side comes from the devices (read only); the served pool's
    live figures (segments used, grows) from the data plane when given.
    """
    try:
        out: dict[str, Any] = provision.state(config)
    except provision.ProvisionError as exc:
        out = {"devices": [], "pools": [], "pending": [], "error": str(exc)}
    if dp is not None:
        live = dp.storage_state()
        for pool in out["pools"]:
            if pool["served"]:
                pool.update({k: v for k, v in live.items() if k != "offset"})
    return out


def _create(settings: DataplaneSettings) -> Dataplane:
    try:
        return Dataplane.create(settings)
    except DataplaneCreateError as exc:
        raise StartError(f"cannot start the data plane: {exc}") from None


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
        log.info("ready tcp=%s udp=%s workers=%d store=%s version=%s console=%s",
                 endpoint(host, self.dp.bound_port(False)),
                 endpoint(host, self.dp.bound_port(True)), self.workers,
                 settings.store.device_path, settings.version, self.console_url or "off")
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
    on_spdk = config.storage.device(config.storage.memcached_pool.device).kind == "spdk"
    if on_spdk:
        spdk_library(config)  # refuse before provisioning changes anything
    layout = provision_storage(config)
    region = provision.memcached_region(layout, config)
    pool = config.storage.memcached_pool
    spdk_device = open_spdk_pool(config, layout) if on_spdk else None
    settings = dataplane_settings(config, region=region,
                                  capacity=layout.devices[pool.device], spdk_device=spdk_device)
    switch = SwitchRuntime(config) if config.dataplane.switch else None
    if switch is not None:
        try:
            switch.before_dataplane()  # EAL; the tap gets the service address
        except SwitchStartError as exc:
            raise StartError(str(exc)) from None
    # ss_dataplane_create() probes the ports without SO_REUSEPORT (so a
    # second appliance fails on the port) and flocks the store, and says
    # which; there is no second copy of those checks here.
    dp = _create(settings)
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


def verify_index(config: Config) -> tuple[int, int]:
    """Open the store with no listeners and check every index entry.

    Returns:
        (checked, failed).

    Raises:
        StartError: no store there, or it is in use.
    """
    load()
    prepare_storage(config, create=False)
    layout = plan_storage(config)
    pool = config.storage.memcached_pool
    if any(getattr(s, "region", None) is not None and s.region.name == pool.name
           for s in layout.steps):
        raise StartError(f"pool {pool.name} is not provisioned as the config says "
                         f"({'; '.join(layout.lines())}); run `smartswitch provision` first")
    spdk_device = None
    if config.storage.device(pool.device).kind == "spdk":
        spdk_device = open_spdk_pool(config, layout)
    dp = _create(dataplane_settings(config, listen=False,
                                    region=provision.memcached_region(layout, config),
                                    capacity=layout.devices[pool.device],
                                    spdk_device=spdk_device))
    try:
        return dp.verify_index()
    finally:
        dp.destroy()
