"""The `kind: spdk` device driver: its pools are lvols on an SPDK target, served over NVMe-oF.

An spdk device has no label and no regions: spdk_bindings.provision keeps one lvol store on
its base bdev and one lvol per pool, and spdk_bindings.export exports the lvols over
NVMe-oF/TCP for the data path. appliance.storage.provision imports this module only when a
`kind: spdk` device is configured (it pulls in spdk_bindings). The driver adapts both to
the planner:

* ``plan_device`` observes the target (read-only RPCs), decides, turns refusals into
  ProvisionError naming the YAML path (nothing touched), and records the device in
  ``Plan.spdk``. A device with changes adds one ``SpdkDeviceStep`` whose plan lines are
  printed beside the file ones; a device with none is resolved at once (no RPC is sent).
* ``apply_device`` applies that step: an allowed shrink of the served pool first shrinks
  the store (the shrinker), then the lvols are created or resized, the export is made, and
  the plan's regions and capacities are replaced by what the target reports; a grow of the
  served pool is then handed to the grower (reload), as for file pools.

Each pool's region is (offset 0, the lvol's size): the lvol is the pool's whole device.

Serving a pool from it (``spdk_library``, ``reexec_for_spdk``, ``open_spdk_pool``): the
SPDK data path (spdk_bindings.datapath) is loaded in this process and opens the pool's
namespace over NVMe-oF; the store is given that `struct ss_device *`.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from appliance import StartError
from appliance.config import Config, DeviceConfig, PoolConfig, units
from appliance.config.spdk import split_address
from appliance.storage.steps import (
    Applying,
    Draft,
    GrowPool,
    Plan,
    PoolRegion,
    ProvisionError,
    ShrinkPool,
    Step,
    device_where,
    pool_where,
)
from spdk_bindings import export as X
from spdk_bindings import provision as P
from spdk_bindings import rpc as R

log = logging.getLogger("smartswitch")

MiB = 1024**2
CHANGES = ("attach", "create", "grow", "shrink", "add")
# Set in the environment of a run started again by reexec_for_spdk, so it happens once.
REEXEC_MARK = "SMARTSWITCH_SPDK_REEXEC"


def connect(dev: DeviceConfig) -> R.SpdkRpc:
    """A client of the device's target (tests replace this with a replay)."""
    return R.connect(str(dev.rpc_socket), timeout=(dev.rpc_timeout or 30_000) / 1000,
                     device=dev.name)


def spdk_device(dev: DeviceConfig) -> P.SpdkDevice:
    """The spdk_bindings view of a validated kind: spdk device entry."""
    return P.SpdkDevice(
        name=dev.name, transport=str(dev.transport), rpc_socket=str(dev.rpc_socket),
        rpc_timeout=(dev.rpc_timeout or 30_000) / 1000, traddr=dev.traddr,
        trsvcid=None if dev.trsvcid is None else str(dev.trsvcid), adrfam=dev.adrfam or "ipv4",
        subnqn=dev.subnqn, path=None if dev.path is None else str(dev.path),
        block_size=dev.block_size, bdev=dev.bdev or "", controller=dev.controller or "",
        lvstore=dev.lvstore or "", cluster_size=dev.cluster_size or 4 * MiB,
        min_size=dev.size,
        reconnect_delay_sec=_seconds(dev.reconnect_delay),
        fast_io_fail_timeout_sec=_seconds(dev.fast_io_fail_timeout),
        ctrlr_loss_timeout_sec=_seconds(dev.ctrlr_loss_timeout))


def _seconds(ms: int | None) -> int | None:
    """A config duration (ms, or -1: never) as bdev_nvme's whole seconds."""
    return None if ms is None else (-1 if ms == -1 else ms // 1000)


def spdk_pool(pool: PoolConfig) -> P.SpdkPool:
    """The spdk_bindings view of a pool on an spdk device."""
    if pool.size_percent is not None:
        return P.SpdkPool(pool.name, percent=pool.size_percent, thin=pool.thin,
                          allow_shrink=pool.allow_shrink)
    return P.SpdkPool(pool.name, size=int(pool.size), thin=pool.thin,
                      allow_shrink=pool.allow_shrink)


def export_spec(dev: DeviceConfig) -> X.ExportSpec | None:
    """Where the device's pools are exported (None: `export: null`)."""
    if dev.export is None:
        return None
    host, port = split_address(dev.export)
    return X.ExportSpec(str(dev.export_nqn), host, str(port))


def _line(step: P.PlanStep) -> str:
    return f"{step.action} {step.what}: {step.detail}"


@dataclass
class SpdkProvisioned:
    """One spdk device in a plan; `state` and `exported` are set once known (after apply,
    or at planning time when nothing has to change)."""

    device: str
    where: str
    rpc: R.SpdkRpc
    lvols: P.SpdkDevicePlan
    export: X.ExportPlan | None
    pools: tuple[PoolConfig, ...]
    state: P.SpdkDeviceState | None = None
    exported: X.ExportState | None = None

    @property
    def changes(self) -> bool:
        return self.lvols.changes or (self.export is not None and self.export.changes)

    def lines(self) -> list[str]:
        """The changes, one plan line each."""
        steps = self.lvols.steps + (self.export.steps if self.export else [])
        return [_line(s) for s in steps if s.action in CHANGES]

    def shrinks(self) -> list[str]:
        """Pools whose lvol this plan shrinks."""
        return [s.pool for s in self.lvols.steps if s.action == "shrink" and s.pool]

    def bdev(self, pool: str) -> str | None:
        """The name (UUID) of a pool's lvol bdev, once provisioned."""
        if self.state is None or pool not in self.state.pools:
            return None
        return self.state.pools[pool].bdev

    def target(self, pool: str) -> tuple[str, int] | None:
        """(transport-id string, namespace id) of a pool, once exported."""
        if self.exported is None or pool not in self.exported.pools:
            return None
        ex = self.exported.pools[pool]
        return ex.trid, ex.nsid


@dataclass(frozen=True)
class SpdkDeviceStep(Step):
    """Provision one spdk device: its lines are the spdk plan's changes."""

    device: str
    provisioned: SpdkProvisioned

    def describe(self) -> str:
        n = len(self.provisioned.lines())
        return f"spdk device {self.device}: {n} change{'s' if n != 1 else ''}"

    def lines(self) -> list[str]:
        return self.provisioned.lines()

    def apply(self, run: Applying) -> None:
        apply_device(self, run.plan.regions, run.plan.devices, run.say, run.shrinker,
                     run.grower)


def _refuse(config: Config, dev: DeviceConfig, where: str, plan: Any,
            export: bool = False) -> None:
    for step in plan.steps:
        if step.action != "refuse":
            continue
        pool = next((p for p in config.storage.pools if p.name == step.pool), None)
        if export:
            at = f"{where}.export_nqn" if step.what.startswith("nvmf subsystem") \
                else f"{where}.export"
        else:
            at = f"{pool_where(config, pool)}.size" if pool is not None else where
        hint = ""
        if "shrinking" in step.detail:
            hint = " (set allow_shrink: true on the pool to allow it, with the appliance stopped)"
        raise ProvisionError(f"{at}: spdk device {dev.name}: {step.what}: {step.detail}"
                             f"{hint}; nothing was changed")


def _check_backing_file(dev: DeviceConfig, where: str) -> None:
    # spdk_tgt runs on this host (its RPC socket is local), so its aio/uring file is ours to
    # check before anything is created.
    path = Path(str(dev.path))
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ProvisionError(f"{where}.path: {path} does not exist; spdk_tgt opens it as an "
                             f"{dev.transport} bdev: create it (e.g. `truncate -s 16G "
                             f"{path}`) or fix the path; nothing was changed") from None
    except OSError as exc:
        raise ProvisionError(f"{where}.path: cannot use {path}: {exc.strerror}") from None
    if dev.size is not None and size < dev.size:
        raise ProvisionError(f"{where}.size: {path} holds {units.format_size(size)} but the "
                             f"config asks for at least {units.format_size(dev.size)}; grow "
                             f"the file or lower size; nothing was changed")


def _backing_present(dev: DeviceConfig) -> bool:
    """Could the base bdev be re-created without provisioning anything (its file exists)?"""
    return dev.transport not in ("aio", "uring") or (dev.path is not None and dev.path.exists())


def plan_device(config: Config, dev: DeviceConfig, where: str, steps: list[Step],
                regions: dict[str, PoolRegion], notes: list[str],
                out: dict[str, SpdkProvisioned]) -> int:
    """Plan one spdk device (read-only RPCs); returns its capacity in bytes (0: unknown yet).

    Raises:
        ProvisionError: the target is unreachable, an RPC failed, or the plan refuses;
            the message names the YAML path and the device; nothing was changed.
    """
    pools = tuple(p for p in config.storage.pools if p.device == dev.name)
    sdev = spdk_device(dev)
    embedded = config.storage.spdk.mode == "embedded"
    if embedded:
        start_embedded(config)  # the RPC server provisioning talks to is ours
    # Embedded, the data path opens each lvol directly: nothing to export.
    spec = None if embedded else export_spec(dev)
    try:
        rpc = connect(dev)
        observed = P.observe(rpc, sdev)
        if embedded and observed.base is None and _backing_present(dev):
            observed = P.restore_base(rpc, sdev, observed)
        lvols = P.decide(sdev, [spdk_pool(p) for p in pools], observed)
        export = None
        if spec is not None:
            export = X.decide_export(dev.name, spec, sdev.lvstore, [p.name for p in pools],
                                     X.observe_export(rpc.with_device(dev.name), spec),
                                     observed.lvols)
    except R.SpdkConnectionError as exc:
        raise ProvisionError(f"{where}.rpc_socket: {exc}; nothing was changed") from None
    except R.SpdkRpcError as exc:
        raise ProvisionError(f"{where}: {exc}; nothing was changed") from None
    _refuse(config, dev, where, lvols)
    if export is not None:
        _refuse(config, dev, where, export, export=True)
    if observed.base is None and dev.transport in ("aio", "uring"):
        _check_backing_file(dev, where)
    notes += [f"{s.what}: {s.detail}" for s in lvols.steps + (export.steps if export else [])
              if s.action == "note"]
    prov = SpdkProvisioned(dev.name, where, rpc, lvols, export, pools)
    if prov.changes:
        steps.append(SpdkDeviceStep(dev.name, prov))
    else:
        _resolve(prov, lambda _line: None)
    out[dev.name] = prov
    planned = {s.pool: s.size_in_mib * MiB for s in lvols.steps
               if s.pool and s.size_in_mib is not None}
    for pool in pools:
        if prov.state is not None:
            size = prov.state.pools[pool.name].size_bytes
        elif pool.name in planned:
            size = planned[pool.name]
        elif pool.name in observed.lvols:
            b = observed.lvols[pool.name]
            size = int(b["num_blocks"]) * int(b["block_size"])
        else:
            size = 0  # a percentage of an lvol store that does not exist yet
        regions[pool.name] = PoolRegion(pool.name, pool.role, 0, size, pool.segment_size)
    if prov.state is not None:
        return prov.state.capacity_bytes
    lvs = observed.lvstore
    return int(lvs["total_data_clusters"]) * int(lvs["cluster_size"]) if lvs else 0


def _resolve(prov: SpdkProvisioned, say: Callable[[str], None]) -> None:
    """Apply the device's plans (no RPC at all when they hold no change)."""
    prov.state = P.apply_plan(prov.rpc, prov.lvols, progress=say)
    if prov.export is not None:
        bdevs = {name: p.bdev for name, p in prov.state.pools.items()}
        prov.exported = X.apply_export(prov.rpc, prov.export, bdevs, progress=say)


def apply_device(step: SpdkDeviceStep, regions: dict[str, PoolRegion],
                 devices: dict[str, int], say: Callable[[str], None],
                 shrinker: Callable[[ShrinkPool], None] | None,
                 grower: Callable[[GrowPool], None] | None) -> None:
    """Apply one device's step and record what the target reports afterwards.

    Raises:
        ProvisionError: a shrink of the served pool without a shrinker, a refusal found
            after a structural step, or an RPC failure (naming the RPC, the device and
            SPDK's text).
    """
    prov = step.provisioned
    roles = {p.name: p.role for p in prov.pools}
    before = {name: regions[name] for name in roles}
    resized = {s.pool: s for s in prov.lvols.steps if s.action in ("grow", "shrink") and s.pool}
    for name, s in resized.items():
        if s.action == "shrink" and roles[name] == "memcached":
            if shrinker is None:
                raise ProvisionError(f"pool {name}: shrinking needs the appliance stopped")
            new = PoolRegion(name, roles[name], 0, int(s.size_in_mib or 0) * MiB,
                             before[name].segment_size)
            shrinker(ShrinkPool(prov.device, None, new, before[name].size))
    try:
        _resolve(prov, say)
    except R.SpdkRpcError as exc:
        raise ProvisionError(f"{prov.where}: {exc}") from None
    except P.ProvisionError as exc:
        raise ProvisionError(f"{prov.where}: {exc}") from None
    assert prov.state is not None
    devices[prov.device] = prov.state.capacity_bytes
    for name, pool in prov.state.pools.items():
        regions[name] = PoolRegion(name, roles[name], 0, pool.size_bytes,
                                   before[name].segment_size)
    for name, s in resized.items():
        if s.action == "grow" and roles[name] == "memcached" and grower is not None:
            grower(GrowPool(prov.device, regions[name], before[name].size))


def device_state(prov: SpdkProvisioned) -> dict[str, Any]:
    """The spdk side of a device for stats and the console."""
    out: dict[str, Any] = {"transport": prov.lvols.device.transport,
                           "bdev": prov.lvols.device.bdev,
                           "lvstore": prov.lvols.device.lvstore,
                           "spdk_version": prov.lvols.observed.version}
    if prov.state is not None:
        out.update(free=prov.state.free_bytes, lvstore_uuid=prov.state.lvstore_uuid,
                   cluster_size=prov.state.cluster_size)
    if prov.export is not None:
        out["export"] = {"nqn": prov.export.spec.nqn, "trid": prov.export.spec.trid}
    return out


def pool_state(prov: SpdkProvisioned, pool: str) -> dict[str, Any]:
    """The spdk side of a pool for stats and the console."""
    out: dict[str, Any] = {"lvol": f"{prov.lvols.device.lvstore}/{pool}"}
    if prov.state is not None and pool in prov.state.pools:
        out.update(bdev=prov.state.pools[pool].bdev, thin=prov.state.pools[pool].thin)
    target = prov.target(pool)
    if target is not None:
        out.update(trid=target[0], nsid=target[1])
    return out


# ---------------------------------------------------------------- serving


def spdk_target(config: Config, layout: Plan) -> tuple[str, int]:
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
    where = device_where(config, device)
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
    from spdk_bindings import datapath  # cffi and SPDK's libraries only when serving

    pool = config.storage.memcached_pool
    lib_dir = config.storage.spdk.lib_dir
    try:
        return datapath.SpdkDataPath.load(None if lib_dir is None else str(lib_dir))
    except datapath.SpdkUnavailable as exc:
        raise StartError(f"pool {pool.name} is on spdk device {pool.device}, but SPDK cannot "
                         f"be loaded: {exc}") from None


def reexec_for_spdk(config: Config, argv: list[str]) -> None:
    """Start this command again with LD_LIBRARY_PATH naming SPDK's library directory,
    when the variable lacks it: the dynamic linker reads it only at process start, and
    SPDK's shared libraries are found only through it (spdk_bindings/datapath.py). Returns
    when nothing needs doing."""
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


def start_embedded(config: Config) -> None:
    """storage.spdk.mode: embedded: start SPDK in this process, its RPC server on the
    spdk device's rpc_socket, before anything talks to it (provisioning included).

    Raises:
        StartError: SPDK cannot be loaded or refused to start (the message says why).
    """
    from spdk_bindings import datapath, embedded

    devices = [d for d in config.storage.devices if d.kind == "spdk"]
    sockets = {str(d.rpc_socket) for d in devices}
    started = embedded.running()
    if not devices or (started is not None and sockets == {started.rpc_socket}):
        return
    if len(sockets) > 1:
        raise StartError(f"storage.devices: embedded SPDK serves one RPC socket, but the "
                         f"spdk devices name {len(sockets)} ({', '.join(sorted(sockets))}); "
                         "give them the same rpc_socket")
    spdk = config.storage.spdk
    lib = spdk_library(config)
    try:
        lib.start_env(spdk.mem_size // 1024**2, not spdk.hugepages)
        running = embedded.EmbeddedSpdk.start(lib, sockets.pop())
    except (datapath.SpdkUnavailable, datapath.SpdkDataPathError) as exc:
        raise StartError(f"storage.spdk.mode: embedded: {exc}") from None
    log.info("SPDK %s embedded, %s, RPC server on %s", lib.version, _environment(config),
             running.rpc_socket)
    # Stopped at exit, once the data plane has closed its devices.
    atexit.register(running.stop)


def _environment(config: Config) -> str:
    """Whose EAL SPDK runs on, for the start-up log."""
    if config.dataplane.switch:
        return "attached to switch mode's EAL"
    return f"its own environment ({units.format_size(config.storage.spdk.mem_size)})"


def open_embedded_pool(config: Config, layout: Plan) -> Any:
    """The memcached pool's lvol bdev, opened in the embedded SPDK."""
    from spdk_bindings import datapath, embedded

    pool = config.storage.memcached_pool
    device = config.storage.device(pool.device)
    where = device_where(config, device)
    prov = layout.spdk.get(device.name)
    bdev = prov.bdev(pool.name) if prov is not None else None
    if bdev is None:
        raise StartError(f"{where}: pool {pool.name} on spdk device {device.name} is not "
                         f"provisioned yet; run `smartswitch provision`")
    spdk = embedded.EmbeddedSpdk.start(spdk_library(config), str(device.rpc_socket))
    try:
        return spdk.open_bdev(bdev)
    except datapath.SpdkDataPathError as exc:
        raise StartError(f"pool {pool.name}: {exc}") from None


def open_spdk_pool(config: Config, layout: Plan) -> Any:
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
        log.info("SPDK %s initiator, %s", lib.version, _environment(config))
        return lib.open_namespace(trid, nsid)
    except (OSError, RuntimeError, ValueError, datapath.SpdkUnavailable,
            datapath.SpdkDataPathError) as exc:
        raise StartError(f"pool {pool.name}: the SPDK data path cannot open namespace "
                         f"{nsid} of {trid}: {exc}") from None


class SpdkDriver:
    """kind: spdk, as appliance.storage.provision's registry sees it (DeviceDriver)."""

    def plan(self, config: Config, dev: DeviceConfig, draft: Draft) -> int:
        return plan_device(config, dev, device_where(config, dev), draft.steps,
                           draft.regions, draft.notes, draft.spdk)

    def device_state(self, p: Plan, dev: DeviceConfig) -> dict[str, Any]:
        return device_state(p.spdk[dev.name]) if dev.name in p.spdk else {}

    def pool_state(self, p: Plan, pool: PoolConfig) -> dict[str, Any]:
        return pool_state(p.spdk[pool.device], pool.name) if pool.device in p.spdk else {}

    def store_path(self, dev: DeviceConfig, pool: PoolConfig) -> str:
        return f"spdk:{dev.name}/{pool.name}"  # names the lvol; the store opens a device

    def may_hold_store(self, dev: DeviceConfig) -> bool:
        return True  # dev.path is spdk_tgt's backing file, not the store

    def prepare_process(self, config: Config, argv: list[str]) -> None:
        reexec_for_spdk(config, argv)

    def check_can_serve(self, config: Config) -> None:
        spdk_library(config)
        if config.storage.spdk.mode == "embedded":
            start_embedded(config)

    def open_store_device(self, config: Config, layout: Plan) -> Any:
        if config.storage.spdk.mode == "embedded":
            return open_embedded_pool(config, layout)
        return open_spdk_pool(config, layout)


DRIVER = SpdkDriver()
