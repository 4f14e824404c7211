"""NVMe-oF/TCP export of a device's pools: one subsystem per device, one namespace per pool.

The data path does not open SPDK bdevs inside spdk_tgt (a bdev lives in one process); it
connects to spdk_tgt over NVMe-oF/TCP, by default on loopback. So after the lvols exist,
provisioning makes sure that the target has a TCP transport, a subsystem for the device with
each pool's lvol as a namespace, and a listener on the device's `export` address, and hands
the data path, per pool, a transport-id string and the namespace id.

Same three steps as spdk_bindings.provision: `observe_export` (read-only RPCs) ->
`decide_export` (pure) -> `apply_export`. Everything that exists already is kept; nothing is
removed (a namespace no pool names is reported and left alone). Namespaces are added by the
lvol's alias ("lvstore/pool") and found again by its UUID, because `nvmf_get_subsystems`
shows the UUID as `bdev_name` whatever name was used to add it.

The data path runs in another process than spdk_tgt, so the target's default namespace
NGUID (the lvol's UUID) does not collide with a bdev UUID on the connecting side; the
collision in ../shared/spdk/README.md only happens when spdk_tgt attaches its own export.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from spdk_bindings.provision import PlanStep, ProvisionError
from spdk_bindings.rpc import SpdkRpc

TRTYPE = "TCP"
DEFAULT_MODEL = "SmartSwitch pool"
DEFAULT_MAX_NAMESPACES = 32


@dataclass(frozen=True)
class ExportSpec:
    """Where and under which NQN one device's pools are exported.

    `serial_number` defaults to "SS" and 18 hex digits of the NQN's SHA-1, so that every
    subsystem SmartSwitch creates has its own serial.
    """

    nqn: str
    traddr: str = "127.0.0.1"
    trsvcid: str = "4420"
    serial_number: str = ""
    model_number: str = DEFAULT_MODEL
    max_namespaces: int = DEFAULT_MAX_NAMESPACES

    def __post_init__(self) -> None:
        object.__setattr__(self, "trsvcid", str(self.trsvcid))
        if not self.serial_number:
            digest = hashlib.sha1(self.nqn.encode()).hexdigest()[:18].upper()
            object.__setattr__(self, "serial_number", f"SS{digest}")

    @property
    def adrfam(self) -> str:
        """IPv4 or IPv6, as SPDK spells it in listen addresses."""
        return "IPv6" if ipaddress.ip_address(self.traddr).version == 6 else "IPv4"

    def listen_address(self) -> dict[str, str]:
        """The listen_address of nvmf_subsystem_add_listener."""
        return {"trtype": TRTYPE, "adrfam": self.adrfam, "traddr": self.traddr,
                "trsvcid": self.trsvcid}

    @property
    def trid(self) -> str:
        """The SPDK transport-id string an NVMe-oF host connects with."""
        return (f"trtype:{TRTYPE} adrfam:{self.adrfam} traddr:{self.traddr} "
                f"trsvcid:{self.trsvcid} subnqn:{self.nqn}")


@dataclass(frozen=True)
class ExportObserved:
    """What the target has for one export: its transports and our subsystem (or None)."""

    transports: tuple[dict[str, Any], ...]
    subsystem: dict[str, Any] | None

    @classmethod
    def build(cls, spec: ExportSpec, transports: Sequence[Mapping[str, Any]],
              subsystems: Sequence[Mapping[str, Any]]) -> ExportObserved:
        """From nvmf_get_transports and nvmf_get_subsystems results."""
        ours = next((dict(s) for s in subsystems if s.get("nqn") == spec.nqn), None)
        return cls(tuple(dict(t) for t in transports), ours)


def observe_export(rpc: SpdkRpc, spec: ExportSpec) -> ExportObserved:
    """Read the transports and subsystems (read-only RPCs; all subsystems, since asking for
    an NQN that does not exist is an error)."""
    return ExportObserved.build(spec, rpc.nvmf_get_transports(), rpc.nvmf_get_subsystems())


@dataclass
class ExportPlan:
    """What exporting one device's pools would do."""

    device: str
    spec: ExportSpec
    lvstore: str
    pools: tuple[str, ...]
    observed: ExportObserved
    steps: list[PlanStep] = field(default_factory=list)

    @property
    def refusals(self) -> list[str]:
        """Messages of the refuse steps."""
        return [f"{s.what}: {s.detail}" for s in self.steps if s.action == "refuse"]

    @property
    def changes(self) -> bool:
        """True if applying would change anything on the target."""
        return any(s.action in ("create", "add") for s in self.steps)


@dataclass(frozen=True)
class PoolExport:
    """One pool as the data path reaches it."""

    pool: str
    nsid: int
    bdev: str   # the lvol's UUID, as the namespace shows it
    trid: str


@dataclass
class ExportState:
    """The export after apply_export (or as found, when nothing had to change)."""

    device: str
    nqn: str
    trid: str
    listen: str
    pools: dict[str, PoolExport]
    created: list[str]


def _same_address(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return (str(a.get("trtype", "")).upper() == str(b.get("trtype", "")).upper()
            and str(a.get("adrfam", "")).lower() == str(b.get("adrfam", "")).lower()
            and a.get("traddr") == b.get("traddr")
            and str(a.get("trsvcid")) == str(b.get("trsvcid")))


def _namespace_of(subsystem: Mapping[str, Any] | None, bdev: str | None
                  ) -> dict[str, Any] | None:
    if subsystem is None or not bdev:
        return None
    return next((dict(ns) for ns in subsystem.get("namespaces", ())
                 if ns.get("bdev_name") == bdev), None)


def decide_export(device: str, spec: ExportSpec, lvstore: str, pools: Sequence[str],
                  observed: ExportObserved,
                  lvols: Mapping[str, Mapping[str, Any]]) -> ExportPlan:
    """The export plan (pure; no RPC).

    Args:
        device: the SmartSwitch device (for messages).
        spec: the export's NQN and address.
        lvstore: the device's lvol store name (namespaces are added by "lvstore/pool").
        pools: the pools to export, in namespace order.
        observed: from observe_export.
        lvols: pool -> its lvol's bdev (bdev_get_bdevs entry) for the lvols that exist now;
            lvols created by the same run are absent and simply get a namespace.
    """
    plan = ExportPlan(device, spec, lvstore, tuple(pools), observed)
    add = plan.steps.append
    if any(str(t.get("trtype", "")).upper() == TRTYPE for t in observed.transports):
        add(PlanStep("keep", f"nvmf transport {TRTYPE}", "exists"))
    else:
        add(PlanStep("create", f"nvmf transport {TRTYPE}", "with SPDK's defaults"))
    sub = observed.subsystem
    sub_what = f"nvmf subsystem {spec.nqn}"
    if sub is None:
        add(PlanStep("create", sub_what, f"serial {spec.serial_number}, model "
                     f"{spec.model_number!r}, any host, up to {spec.max_namespaces} "
                     "namespaces"))
    elif sub.get("subtype") != "NVMe":
        add(PlanStep("refuse", sub_what, f"exists as a {sub.get('subtype')} subsystem; choose "
                     "another export NQN"))
        return plan
    else:
        add(PlanStep("keep", sub_what, f"{len(sub.get('namespaces', ()))} namespaces"))
    mine: set[str] = set()
    for pool in pools:
        what = f"nvmf namespace {spec.nqn} {lvstore}/{pool}"
        lvol = lvols.get(pool)
        ns = _namespace_of(sub, lvol.get("name") if lvol else None)
        if ns is not None:
            mine.add(str(ns.get("bdev_name")))
            add(PlanStep("keep", what, f"nsid {ns.get('nsid')}", pool))
        elif lvol is not None and lvol.get("claimed"):
            add(PlanStep("refuse", what, f"lvol {lvstore}/{pool} is claimed "
                         f"({lvol.get('claim_type', '?')}) by something other than this "
                         "subsystem (exported elsewhere?); SmartSwitch will not export it "
                         "twice", pool))
        else:
            add(PlanStep("add", what, "namespace for the pool's lvol", pool))
    for ns in (sub or {}).get("namespaces", ()):
        if str(ns.get("bdev_name")) not in mine:
            add(PlanStep("note", f"nvmf namespace {spec.nqn} nsid {ns.get('nsid')}",
                         f"bdev {ns.get('bdev_name')} is no pool of this config; left alone"))
    listen = spec.listen_address()
    lis_what = f"nvmf listener {spec.nqn}"
    where = f"{TRTYPE} {spec.traddr}:{spec.trsvcid}"
    if sub is not None and any(_same_address(a, listen)
                               for a in sub.get("listen_addresses", ())):
        add(PlanStep("keep", lis_what, where))
    else:
        add(PlanStep("add", lis_what, where))
    return plan


def apply_export(rpc: SpdkRpc, plan: ExportPlan, lvol_bdevs: Mapping[str, str],
                 progress: Callable[[str], None] | None = None) -> ExportState:
    """Carry out `plan` and read the namespace ids back.

    Order: transport, subsystem, namespaces, listener (hosts that connect find every
    namespace at once). A plan with only keep steps issues no RPC.

    Args:
        rpc: the target's client.
        plan: from decide_export.
        lvol_bdevs: pool -> its lvol's bdev name (UUID), from apply_plan's result.
        progress: receives a line per change.

    Raises:
        ProvisionError: the plan refuses, or a pool has no namespace afterwards.
        SpdkRpcError: an RPC failed (names the RPC, the device and SPDK's text).
    """
    say = progress or (lambda _msg: None)
    spec = plan.spec
    rpc = rpc.with_device(plan.device)
    if plan.refusals:
        raise ProvisionError(f"spdk device {plan.device!r}: " + "; ".join(plan.refusals))
    created: list[str] = []
    for step in plan.steps:
        if step.action not in ("create", "add"):
            continue
        if step.what.startswith("nvmf transport"):
            say(f"creating NVMe-oF transport {TRTYPE}")
            rpc.nvmf_create_transport(TRTYPE)
        elif step.what.startswith("nvmf subsystem"):
            say(f"creating NVMe-oF subsystem {spec.nqn}")
            rpc.nvmf_create_subsystem(spec.nqn, serial_number=spec.serial_number,
                                      model_number=spec.model_number, allow_any_host=True,
                                      max_namespaces=spec.max_namespaces)
        elif step.pool is not None:
            say(f"adding namespace {plan.lvstore}/{step.pool} to {spec.nqn}")
            rpc.nvmf_subsystem_add_ns(spec.nqn, {"bdev_name": f"{plan.lvstore}/{step.pool}"})
        else:
            say(f"listening for {spec.nqn} on {TRTYPE} {spec.traddr}:{spec.trsvcid}")
            rpc.nvmf_subsystem_add_listener(spec.nqn, spec.listen_address())
        created.append(step.what)
    sub = plan.observed.subsystem
    if created:
        sub = ExportObserved.build(spec, (), rpc.nvmf_get_subsystems()).subsystem
    pools: dict[str, PoolExport] = {}
    for pool in plan.pools:
        ns = _namespace_of(sub, lvol_bdevs.get(pool))
        if ns is None:
            raise ProvisionError(f"spdk device {plan.device!r}: subsystem {spec.nqn} has no "
                                 f"namespace for lvol {plan.lvstore}/{pool} "
                                 f"({lvol_bdevs.get(pool)}) after provisioning")
        pools[pool] = PoolExport(pool, int(ns["nsid"]), str(ns["bdev_name"]), spec.trid)
    return ExportState(plan.device, spec.nqn, spec.trid,
                       f"{TRTYPE} {spec.traddr}:{spec.trsvcid}", pools, created)
