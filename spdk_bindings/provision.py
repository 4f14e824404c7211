"""Provisioning of `kind: spdk` devices: base bdev, one lvol store, one lvol per pool.

Three steps, so that the decisions are testable without a target:
`observe` (read-only RPCs) -> `decide` (pure: returns a plan) -> `apply_plan` (the changes).
`plan_device` is observe + decide. Every capacity is read back from the target: the lvol
store's `total_data_clusters * cluster_size` for percentages, each lvol's
`num_blocks * block_size` for the pool's size.

SPDK deletes things that are in use without complaint (see ../shared/spdk/README.md, "In use
is NOT protected"), so nothing here deletes an lvol, an lvol store or a base bdev; a bdev that
something else claims is refused, and lvols no pool names are left alone.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from spdk_bindings.rpc import ENODEV, SpdkRpc, SpdkRpcError

MiB = 1024 * 1024
TRANSPORTS = ("pcie", "tcp", "aio", "uring")


class ProvisionError(Exception):
    """Provisioning refused or stopped; the message names the device and why."""


def _get(obj: Any, key: str, default: Any = None) -> Any:
    if isinstance(obj, Mapping):
        value = obj.get(key, default)
    else:
        value = getattr(obj, key, default)
    return default if value is None else value


def _size_text(nbytes: int) -> str:
    for unit, scale in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", MiB), ("KiB", 1024)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes} B"


@dataclass(frozen=True)
class SpdkDevice:
    """One `kind: spdk` device of the config (see README.md for the YAML keys)."""

    name: str
    transport: str
    rpc_socket: str = "/var/tmp/spdk.sock"
    rpc_timeout: float = 30.0
    traddr: str | None = None
    trsvcid: str | None = None
    adrfam: str = "ipv4"
    subnqn: str | None = None
    path: str | None = None
    block_size: int | None = None
    bdev: str = ""
    controller: str = ""
    lvstore: str = ""
    cluster_size: int = 4 * MiB
    min_size: int | None = None
    # tcp: bdev_nvme_attach_controller's reconnect settings in seconds (None: SPDK's).
    reconnect_delay_sec: int | None = None
    fast_io_fail_timeout_sec: int | None = None
    ctrlr_loss_timeout_sec: int | None = None

    def __post_init__(self) -> None:
        def bad(what: str) -> ProvisionError:
            return ProvisionError(f"spdk device {self.name!r}: {what}")

        if self.transport not in TRANSPORTS:
            raise bad(f"transport must be one of {', '.join(TRANSPORTS)}, "
                      f"got {self.transport!r}")
        if self.transport in ("pcie", "tcp") and not self.traddr:
            raise bad(f"transport {self.transport} needs traddr")
        if self.transport == "tcp" and not (self.trsvcid and self.subnqn):
            raise bad("transport tcp needs trsvcid (port) and subnqn")
        if self.transport in ("aio", "uring") and not (self.path and self.block_size):
            raise bad(f"transport {self.transport} needs path and block_size (SPDK cannot "
                      "detect the block size of a file)")
        if self.cluster_size % MiB or self.cluster_size <= 0:
            raise bad(f"cluster_size must be a whole number of MiB, got {self.cluster_size}")
        controller = self.controller or self.name
        object.__setattr__(self, "controller", controller)
        if not self.bdev:
            nvme = self.transport in ("pcie", "tcp")
            object.__setattr__(self, "bdev", f"{controller}n1" if nvme else self.name)
        if not self.lvstore:
            object.__setattr__(self, "lvstore", f"ss_{self.name}")
        if self.trsvcid is not None:
            object.__setattr__(self, "trsvcid", str(self.trsvcid))

    @classmethod
    def from_config(cls, dev: Any) -> SpdkDevice:
        """Build from a config device entry (attributes or mapping keys, README names)."""
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            key = "size" if f.name == "min_size" else f.name
            value = _get(dev, key)
            if value is not None:
                kwargs[f.name] = str(value) if f.name in ("path", "rpc_socket") else value
        return cls(**kwargs)


@dataclass(frozen=True)
class SpdkPool:
    """A pool on an spdk device: size in bytes or a percentage of the lvol store."""

    name: str
    size: int | None = None
    percent: Decimal | None = None
    thin: bool = False
    allow_shrink: bool = False  # this pool may shrink even when the plan does not allow it

    @classmethod
    def from_config(cls, pool: Any) -> SpdkPool:
        """Build from a config pool entry (`size_percent` wins over `size` when set)."""
        percent = _get(pool, "size_percent")
        size = _get(pool, "size")
        if percent is None and isinstance(size, Decimal):
            percent = size
        return cls(name=_get(pool, "name"), size=None if percent is not None else int(size),
                   percent=None if percent is None else Decimal(percent),
                   thin=bool(_get(pool, "thin", False)),
                   allow_shrink=bool(_get(pool, "allow_shrink", False)))


@dataclass(frozen=True)
class Observed:
    """What the target holds for one device, from read-only RPCs."""

    version: str
    base: dict[str, Any] | None
    lvstore: dict[str, Any] | None
    lvols: dict[str, dict[str, Any]]  # lvol name -> its bdev (from bdev_get_bdevs)

    @classmethod
    def build(cls, dev: SpdkDevice, bdevs: Sequence[Mapping[str, Any]],
              lvstore: Mapping[str, Any] | None, version: str = "") -> Observed:
        """Pick the device's base bdev and its lvols out of a bdev_get_bdevs result."""
        base = next((dict(b) for b in bdevs
                     if b.get("name") == dev.bdev or dev.bdev in b.get("aliases", ())), None)
        lvols: dict[str, dict[str, Any]] = {}
        if lvstore is not None:
            prefix = f"{lvstore['name']}/"
            for b in bdevs:
                lvol = b.get("driver_specific", {}).get("lvol")
                if not lvol or lvol.get("lvol_store_uuid") != lvstore["uuid"]:
                    continue
                alias = next((a for a in b.get("aliases", ()) if a.startswith(prefix)), None)
                if alias:
                    lvols[alias[len(prefix):]] = dict(b)
        return cls(version, base, None if lvstore is None else dict(lvstore), lvols)


@dataclass(frozen=True)
class PlanStep:
    """One line of the plan. `action`: attach, create, grow, shrink, keep, refuse, note."""

    action: str
    what: str
    detail: str
    pool: str | None = None
    size_in_mib: int | None = None

    def __str__(self) -> str:
        return f"{self.action:<7} {self.what}: {self.detail}"


@dataclass
class SpdkDevicePlan:
    """What provisioning would do to one device, and what it found."""

    device: SpdkDevice
    pools: tuple[SpdkPool, ...]
    allow_shrink: bool
    observed: Observed
    steps: list[PlanStep] = field(default_factory=list)

    @property
    def refusals(self) -> list[str]:
        """Messages of the refuse steps; apply_plan will not run while there are any."""
        return [f"{s.what}: {s.detail}" for s in self.steps if s.action == "refuse"]

    @property
    def changes(self) -> bool:
        """True if applying would change anything on the target."""
        return any(s.action in ("attach", "create", "grow", "shrink") for s in self.steps)

    def lines(self) -> list[str]:
        """The plan as printed by `smartswitch provision`."""
        head = f"device {self.device.name} (spdk {self.device.transport}, bdev " \
               f"{self.device.bdev}, lvstore {self.device.lvstore}" \
               f"{', ' + self.observed.version if self.observed.version else ''})"
        return [head] + [f"  {s}" for s in self.steps]


@dataclass(frozen=True)
class PoolState:
    """A provisioned pool: its lvol as the target reports it."""

    name: str
    bdev: str       # the lvol's bdev name (its UUID), what the data path opens
    alias: str      # "lvstore/pool"
    size_bytes: int
    thin: bool


@dataclass
class SpdkDeviceState:
    """A device after apply_plan: capacities read back from the target."""

    device: str
    bdev: str
    lvstore: str
    lvstore_uuid: str
    cluster_size: int
    capacity_bytes: int
    free_bytes: int
    pools: dict[str, PoolState]
    created: list[str]  # what this run created, e.g. "lvol ss_nvme0/items"


def observe(rpc: SpdkRpc, dev: SpdkDevice) -> Observed:
    """Read what the target holds for `dev` (only read-only RPCs)."""
    rpc = rpc.with_device(dev.name)
    version = str(rpc.spdk_get_version().get("version", ""))
    rpc.framework_wait_init()
    bdevs = rpc.bdev_get_bdevs()
    return Observed.build(dev, bdevs, _lvstore_if_claimed(rpc, dev, bdevs), version)


def _lvstore_if_claimed(rpc: SpdkRpc, dev: SpdkDevice,
                        bdevs: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    # An lvstore claims its base bdev, so an unclaimed (or absent) bdev carries none.
    base = Observed.build(dev, bdevs, None).base
    if base is None or not base.get("claimed"):
        return None
    try:
        found = rpc.bdev_lvol_get_lvstores(lvs_name=dev.lvstore)
    except SpdkRpcError as exc:
        if exc.code == ENODEV:
            return None
        raise
    return found[0] if found else None


def _want_clusters(pool: SpdkPool, cluster: int, total_clusters: int | None) -> int | None:
    if pool.percent is not None:
        if total_clusters is None:
            return None
        return max(1, int(total_clusters * pool.percent / 100))
    return max(1, -(-int(pool.size or 0) // cluster))


def decide(dev: SpdkDevice, pools: Sequence[SpdkPool], observed: Observed,
           allow_shrink: bool = False) -> SpdkDevicePlan:
    """The plan for `dev` given what the target holds (pure; no RPC)."""
    plan = SpdkDevicePlan(dev, tuple(pools), allow_shrink, observed)
    add = plan.steps.append
    base, lvs = observed.base, observed.lvstore
    bdev_what = f"spdk bdev {dev.bdev}"
    if base is None:
        if dev.transport in ("pcie", "tcp"):
            where = dev.traddr if dev.transport == "pcie" else \
                f"{dev.traddr}:{dev.trsvcid} {dev.subnqn}"
            add(PlanStep("attach", f"nvme controller {dev.controller}",
                         f"{dev.transport} {where}, expecting bdev {dev.bdev}"))
        else:
            add(PlanStep("create", bdev_what, f"{dev.transport} on {dev.path}, "
                         f"{dev.block_size} B blocks"))
    else:
        kind = next(iter(base.get("driver_specific") or {}), "")
        size = int(base["num_blocks"]) * int(base["block_size"])
        if dev.transport in ("aio", "uring"):
            backing = (base.get("driver_specific") or {}).get(kind, {}).get("filename")
            if kind != dev.transport or backing != dev.path:
                add(PlanStep("refuse", bdev_what, f"exists but is {kind or 'a'} bdev on "
                             f"{backing or base.get('product_name')}, not {dev.transport} on "
                             f"{dev.path}; SmartSwitch will not reuse it"))
                return plan
        elif kind != "nvme":
            add(PlanStep("refuse", bdev_what, f"exists but is a {base.get('product_name')} "
                         "bdev, not an NVMe namespace; SmartSwitch will not reuse it"))
            return plan
        if dev.min_size and size < dev.min_size:
            add(PlanStep("refuse", bdev_what, f"has {_size_text(size)}, the config asks for "
                         f"at least {_size_text(dev.min_size)}"))
            return plan
        if base.get("claimed") and lvs is None:
            add(PlanStep("refuse", bdev_what, f"is claimed ({base.get('claim_type', '?')}) by "
                         f"something other than lvol store {dev.lvstore}; SmartSwitch will "
                         "not touch a bdev it did not provision"))
            return plan
        add(PlanStep("keep", bdev_what, f"{_size_text(size)} ({kind})"))
    cluster = int(lvs["cluster_size"]) if lvs else dev.cluster_size
    lvs_what = f"spdk lvstore {dev.lvstore}"
    if lvs is None:
        add(PlanStep("create", lvs_what, f"on {dev.bdev}, clusters of {_size_text(cluster)}"))
        total = free = None
    else:
        if lvs.get("base_bdev") != dev.bdev:
            add(PlanStep("refuse", lvs_what, f"exists on bdev {lvs.get('base_bdev')}, not "
                         f"{dev.bdev}"))
            return plan
        total, free = int(lvs["total_data_clusters"]), int(lvs["free_clusters"])
        add(PlanStep("keep", lvs_what, f"{_size_text(total * cluster)}, "
                     f"{_size_text(free * cluster)} free"))
        if cluster != dev.cluster_size:
            add(PlanStep("note", lvs_what, f"has clusters of {_size_text(cluster)}, not "
                         f"{_size_text(dev.cluster_size)}; an lvol store keeps its cluster size"))
    need = 0  # clusters that thick creates and grows take from the free ones
    for pool in pools:
        what = f"spdk lvol {dev.lvstore}/{pool.name}"
        want = _want_clusters(pool, cluster, total)
        mode = "thin" if pool.thin else "thick"
        cur = observed.lvols.get(pool.name)
        if want is None:
            add(PlanStep("create", what, f"{pool.percent}% of the lvol store, {mode} (size "
                         "known once the lvol store exists)", pool.name))
            continue
        mib = want * cluster // MiB
        shown = f"{_size_text(want * cluster)} {mode} ({want} clusters of {_size_text(cluster)})"
        if cur is None:
            add(PlanStep("create", what, shown, pool.name, mib))
            need += 0 if pool.thin else want
            continue
        have_bytes = int(cur["num_blocks"]) * int(cur["block_size"])
        have = -(-have_bytes // cluster)
        cur_thin = bool(cur.get("driver_specific", {}).get("lvol", {}).get("thin_provision"))
        if cur_thin != pool.thin:
            add(PlanStep("note", what, f"is {'thin' if cur_thin else 'thick'}; the config's "
                         f"{mode} applies to new lvols only"))
        if want == have:
            add(PlanStep("keep", what, f"{_size_text(have_bytes)}"))
        elif want > have:
            add(PlanStep("grow", what, f"{_size_text(have_bytes)} -> {shown}", pool.name, mib))
            need += 0 if cur_thin else want - have
        elif allow_shrink or pool.allow_shrink:
            add(PlanStep("shrink", what, f"{_size_text(have_bytes)} -> {shown}; items beyond "
                         "the new end are evicted", pool.name, mib))
            need -= 0 if cur_thin else have - want
        else:
            add(PlanStep("refuse", what, f"shrinking from {_size_text(have_bytes)} to "
                         f"{_size_text(want * cluster)} loses items; allow shrinking to do it",
                         pool.name))
    named = {p.name for p in pools}
    for other in sorted(set(observed.lvols) - named):
        add(PlanStep("note", f"spdk lvol {dev.lvstore}/{other}", "no pool names it; left alone"))
    if free is None and base is not None:
        # Before the lvstore exists its size is unknown; the bdev's size is an upper bound.
        free = int(base["num_blocks"]) * int(base["block_size"]) // cluster
    if free is not None and need > free:
        add(PlanStep("refuse", f"spdk device {dev.name}", f"the pools need {need} more "
                     f"clusters ({_size_text(need * cluster)}) but lvol store {dev.lvstore} "
                     f"has {free} free ({_size_text(free * cluster)})"))
    return plan


def plan_device(rpc: SpdkRpc, dev: SpdkDevice, pools: Sequence[SpdkPool],
                allow_shrink: bool = False) -> SpdkDevicePlan:
    """Observe the target and decide (read-only RPCs only)."""
    return decide(dev, pools, observe(rpc, dev), allow_shrink)


def _create_base(rpc: SpdkRpc, dev: SpdkDevice, say: Callable[[str], None]) -> str:
    if dev.transport == "aio":
        rpc.bdev_aio_create(dev.bdev, str(dev.path), int(dev.block_size or 0))
        return f"bdev {dev.bdev}"
    if dev.transport == "uring":
        rpc.bdev_uring_create(dev.bdev, str(dev.path), int(dev.block_size or 0))
        return f"bdev {dev.bdev}"
    say(f"attaching NVMe controller {dev.controller} ({dev.transport} {dev.traddr})")
    if dev.transport == "pcie":
        made = rpc.bdev_nvme_attach_controller(dev.controller, "PCIe", str(dev.traddr))
    else:
        made = rpc.bdev_nvme_attach_controller(
            dev.controller, "tcp", str(dev.traddr), adrfam=dev.adrfam, trsvcid=dev.trsvcid,
            subnqn=dev.subnqn, ctrlr_loss_timeout_sec=dev.ctrlr_loss_timeout_sec,
            reconnect_delay_sec=dev.reconnect_delay_sec,
            fast_io_fail_timeout_sec=dev.fast_io_fail_timeout_sec)
    if dev.bdev not in (made or []):
        # We attached it in this run and it gave us nothing usable: undo only that.
        rpc.bdev_nvme_detach_controller(dev.controller)
        raise ProvisionError(
            f"spdk device {dev.name!r}: bdev_nvme_attach_controller {dev.controller} created "
            f"bdevs {made!r}, not {dev.bdev!r} (an empty list happens when the namespace's "
            "NGUID equals a bdev UUID the target already has); controller detached again")
    return f"nvme controller {dev.controller}"


def restore_base(rpc: SpdkRpc, dev: SpdkDevice, observed: Observed) -> Observed:
    """Bring back the base bdev of a device SPDK no longer lists, and what examine finds on it.

    SPDK embedded in the appliance starts with no bdevs in every process, where a running
    spdk_tgt would still hold them; re-creating the base bdev (an aio bdev over its file, an
    NVMe controller) writes nothing to the device, and examine loads the lvol store and lvols
    already there, so planning sees the device as it is.

    Raises:
        ProvisionError: the bdev was created but is not listed.
        SpdkRpcError: creating it failed (a missing file, an unreachable controller).
    """
    rpc = rpc.with_device(dev.name)
    _create_base(rpc, dev, lambda _msg: None)
    rpc.bdev_wait_for_examine()
    return _reobserve(rpc, dev, observed.version)


def _reobserve(rpc: SpdkRpc, dev: SpdkDevice, version: str) -> Observed:
    # After creating the base bdev: examine may have loaded an lvol store from it (an aio
    # file or an NVMe namespace provisioned before a restart); only then is the whole bdev
    # list needed to find its lvols.
    try:
        base = rpc.bdev_get_bdevs(name=dev.bdev)
    except SpdkRpcError as exc:
        if exc.code != ENODEV:
            raise
        base = []
    if not base:
        raise ProvisionError(f"spdk device {dev.name!r}: bdev {dev.bdev} was created but the "
                             "target does not list it")
    if not base[0].get("claimed"):
        return Observed.build(dev, base, None, version)
    bdevs = rpc.bdev_get_bdevs()
    return Observed.build(dev, bdevs, _lvstore_if_claimed(rpc, dev, bdevs), version)


def apply_plan(rpc: SpdkRpc, plan: SpdkDevicePlan,
               progress: Callable[[str], None] | None = None) -> SpdkDeviceState:
    """Carry out `plan`; return the device as the target reports it afterwards.

    Each structural step (base bdev, lvol store) is followed by a fresh read and decision, so
    that what examine brings back (an lvol store on a re-created aio bdev, say) is used rather
    than overwritten. A run whose plan holds only `keep` steps issues no RPC at all.

    Raises:
        ProvisionError: the plan (or the re-read after a structural step) refuses.
        SpdkRpcError: an RPC failed; its message names the RPC, the device and SPDK's text.
    """
    say = progress or (lambda _msg: None)
    dev = plan.device
    rpc = rpc.with_device(dev.name)
    created: list[str] = []

    def refuse_if_any(p: SpdkDevicePlan) -> None:
        if p.refusals:
            raise ProvisionError(f"spdk device {dev.name!r}: " + "; ".join(p.refusals))

    refuse_if_any(plan)
    observed = plan.observed
    if observed.base is None:
        created.append(_create_base(rpc, dev, say))
        rpc.bdev_wait_for_examine()
        observed = _reobserve(rpc, dev, observed.version)
        plan = decide(dev, plan.pools, observed, plan.allow_shrink)
        refuse_if_any(plan)
    if observed.lvstore is None:
        say(f"creating lvol store {dev.lvstore} on {dev.bdev}")
        rpc.bdev_lvol_create_lvstore(dev.bdev, dev.lvstore, dev.cluster_size)
        created.append(f"lvstore {dev.lvstore}")
        lvs = rpc.bdev_lvol_get_lvstores(lvs_name=dev.lvstore)[0]
        observed = dataclasses.replace(observed, lvstore=lvs, lvols={})
        plan = decide(dev, plan.pools, observed, plan.allow_shrink)
        refuse_if_any(plan)
    touched: dict[str, str] = {}  # pool -> name to read it back by
    for step in plan.steps:
        if step.pool is None or step.size_in_mib is None:
            continue
        alias = f"{dev.lvstore}/{step.pool}"
        if step.action == "create":
            thin = next(p.thin for p in plan.pools if p.name == step.pool)
            say(f"creating lvol {alias} ({step.size_in_mib} MiB)")
            touched[step.pool] = rpc.bdev_lvol_create(step.pool, step.size_in_mib,
                                                      lvs_name=dev.lvstore, thin_provision=thin)
            created.append(f"lvol {alias}")
        elif step.action in ("grow", "shrink"):
            say(f"{step.action}ing lvol {alias} to {step.size_in_mib} MiB")
            rpc.bdev_lvol_resize(alias, step.size_in_mib)
            touched[step.pool] = alias
    lvs = observed.lvstore or {}
    lvols = dict(observed.lvols)
    if touched:
        lvs = rpc.bdev_lvol_get_lvstores(lvs_name=dev.lvstore)[0]
        for pool, name in touched.items():
            lvols[pool] = rpc.bdev_get_bdevs(name=name)[0]
    cluster = int(lvs["cluster_size"])
    states = {}
    for pool in plan.pools:
        b = lvols[pool.name]
        states[pool.name] = PoolState(
            pool.name, b["name"], f"{dev.lvstore}/{pool.name}",
            int(b["num_blocks"]) * int(b["block_size"]),
            bool(b.get("driver_specific", {}).get("lvol", {}).get("thin_provision")))
    return SpdkDeviceState(dev.name, dev.bdev, dev.lvstore, str(lvs["uuid"]), cluster,
                           int(lvs["total_data_clusters"]) * cluster,
                           int(lvs["free_clusters"]) * cluster, states, created)
