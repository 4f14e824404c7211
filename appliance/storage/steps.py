"""The provisioning plan's vocabulary, shared by every device kind's driver.

A driver (``DeviceDriver``: one per ``storage.devices[].kind``) plans its device into a
``Draft`` (steps, pool regions, notes), which becomes the ``Plan``; ``apply`` then runs each
step's own ``apply``. The kinds live beside this module: ``labelled`` (file, block) and
``spdk``; appliance.storage.provision holds the registry, the planner and the applier.
Nothing here imports a driver, so drivers depend on this module and never on each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

from appliance.config import Config, DeviceConfig, PoolConfig, units


class ProvisionError(Exception):
    """The config can't be provisioned; the message names the device and the fix."""


@dataclass(frozen=True)
class PoolRegion:
    """One pool's place on its device, as the label records it."""

    name: str
    role: str
    offset: int
    size: int
    segment_size: int

    @property
    def end(self) -> int:
        return self.offset + self.size


def device_where(config: Config, dev: DeviceConfig) -> str:
    """The YAML path of a device entry (``storage.devices[2]``)."""
    i = next(i for i, d in enumerate(config.storage.devices) if d.name == dev.name)
    return f"storage.devices[{i}]"


def pool_where(config: Config, pool: PoolConfig) -> str:
    """The YAML path of a pool entry (``storage.pools[0]``)."""
    i = next(i for i, p in enumerate(config.storage.pools) if p.name == pool.name)
    return f"storage.pools[{i}]"


# ------------------------------------------------------------------ steps

Shrinker = Callable[["ShrinkPool"], None]
Grower = Callable[["GrowPool"], None]
Progress = Callable[[str], None]


@dataclass(frozen=True)
class Applying:
    """What a step applies with.

    Attributes:
        plan: the plan being applied; steps that learn the real sizes (spdk) update its
            regions and devices.
        say: receives progress lines.
        shrinker: shrinks a served pool's store offline (None: shrinking is refused).
        grower: grows a pool that is being served (None: nothing to grow live).
    """

    plan: Plan
    say: Progress
    shrinker: Shrinker | None
    grower: Grower | None


@dataclass(frozen=True)
class Step:
    """One change to a device; describe() is the plan line an operator reads."""

    def describe(self) -> str:
        raise NotImplementedError

    def lines(self) -> list[str]:
        """The plan lines of this step (one, except for steps that bundle several)."""
        return [self.describe()]

    def apply(self, run: Applying) -> None:
        """Make the change (the applier has already said describe())."""
        raise NotImplementedError


@dataclass(frozen=True)
class GrowPool(Step):
    device: str
    region: PoolRegion
    old: int

    def describe(self) -> str:
        return (f"grow pool {self.region.name} on {self.device} from "
                f"{units.format_size(self.old)} to {units.format_size(self.region.size)}")

    def apply(self, run: Applying) -> None:
        if run.grower is not None and self.region.role == "memcached":
            run.grower(self)


@dataclass(frozen=True)
class ShrinkPool(Step):
    device: str
    device_path: Path | None  # None: an spdk pool (the lvol is resized after the store)
    region: PoolRegion
    old: int

    def describe(self) -> str:
        return (f"shrink pool {self.region.name} on {self.device} from "
                f"{units.format_size(self.old)} to {units.format_size(self.region.size)}, "
                f"evicting the items that no longer fit (allow_shrink)")

    def apply(self, run: Applying) -> None:
        if self.region.role == "memcached":
            if run.shrinker is None:
                raise ProvisionError(f"pool {self.region.name}: shrinking needs the "
                                     f"appliance stopped")
            run.shrinker(self)


# ------------------------------------------------------------------- plan


@dataclass(frozen=True)
class Plan:
    """What provisioning will do, and the layout the devices will have after.

    Attributes:
        steps: in the order apply() performs them (empty: nothing to do).
        regions: pool name -> its region after the plan is applied.
        devices: device name -> capacity in bytes after the plan.
        notes: lines worth logging that are not changes (reserved leftovers).
        spdk: device name -> appliance.storage.spdk.SpdkProvisioned for kind spdk
            devices (what the target holds; after apply, what it reported).
            apply() updates regions and devices of spdk pools with the sizes
            read back from the target.
    """

    steps: tuple[Step, ...]
    regions: dict[str, PoolRegion]
    devices: dict[str, int]
    notes: tuple[str, ...] = ()
    spdk: dict[str, Any] = field(default_factory=dict)

    def lines(self) -> list[str]:
        """The plan as an operator reads it."""
        return [line for s in self.steps for line in s.lines()] or ["nothing to do"]

    def shrinks(self) -> list[str]:
        """Names of the pools this plan shrinks (any kind)."""
        return [s.region.name for s in self.steps if isinstance(s, ShrinkPool)] + [
            name for prov in self.spdk.values() for name in prov.shrinks()]


@dataclass
class Draft:
    """A plan being built: each device's driver adds to it, in config order."""

    steps: list[Step] = field(default_factory=list)
    regions: dict[str, PoolRegion] = field(default_factory=dict)
    devices: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    spdk: dict[str, Any] = field(default_factory=dict)

    def plan(self) -> Plan:
        return Plan(tuple(self.steps), self.regions, self.devices, tuple(self.notes),
                    self.spdk)


class DeviceDriver(Protocol):
    """What provisioning and serving need from one kind of device."""

    def plan(self, config: Config, dev: DeviceConfig, draft: Draft) -> int:
        """Probe dev (read only) and add the steps, regions and notes that make it match
        the config; its capacity in bytes. Raises ProvisionError naming the YAML path."""

    def device_state(self, p: Plan, dev: DeviceConfig) -> dict[str, Any]:
        """What this kind adds to a device's entry for stats and the console."""

    def pool_state(self, p: Plan, pool: PoolConfig) -> dict[str, Any]:
        """What this kind adds to a pool's entry for stats and the console."""

    def store_path(self, dev: DeviceConfig, pool: PoolConfig) -> str:
        """How the store names the served pool's place (messages, the ready line)."""

    def may_hold_store(self, dev: DeviceConfig) -> bool:
        """False when dev certainly holds no store (verify-index has nothing to check)."""

    def prepare_process(self, config: Config, argv: list[str]) -> None:
        """Before anything else: what this process needs to serve the pool (may exec)."""

    def check_can_serve(self, config: Config) -> None:
        """Before provisioning: raise StartError when this process can't serve the pool."""

    def open_store_device(self, config: Config, layout: Plan) -> Any:
        """The device the store is opened on (ss_store_settings.device), or None when
        the store opens store_path itself. Raises StartError."""
