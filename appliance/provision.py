"""Capacity provisioning: lay the config's pools out on its devices.

Pure planning, then one applier (the shape of appliance.reload):

* ``plan(config)`` probes every device (read only), reads its label and
  returns a ``Plan``: the steps that make the devices match the config
  (create or extend a file, reserve a pool, grow or shrink one, write the
  label), or raises ProvisionError naming the device and the YAML path when
  something is missing, too small or would lose data unasked. Nothing is
  written while planning, so a refused plan leaves every device untouched.
* ``apply(plan, ...)`` performs the steps in order, reporting progress.

Layout of a device (docs/architecture.md, "Devices and pools"): a label in
the first LABEL_BYTES (magic, length, crc32, then JSON listing each pool's
name, role, offset, size and segment size), then the pools, each on a
POOL_ALIGN boundary. A pool keeps its offset for life; it grows into free
space after it. The store writes its own superblock at the pool's offset.

Device kinds plug in through ``DeviceDriver`` (probe, label I/O, sizing);
``file`` and ``block`` are here. ``spdk`` devices carry no label: their pools
are lvols on an SPDK target, planned and applied by appliance.provision_spdk
(one ``SpdkDeviceStep`` per device with changes, its state in ``Plan.spdk``).
"""

from __future__ import annotations

import json
import logging
import os
import stat
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

from appliance.config import units
from appliance.config import (
    LABEL_BYTES,
    MIN_SEGMENTS_PER_POOL,
    POOL_ALIGN,
    Config,
    DeviceConfig,
    PoolConfig,
    align_up,
    percent_bytes,
)

log = logging.getLogger("smartswitch")

LABEL_MAGIC = b"SSLABEL1"
LABEL_HEADER = struct.Struct("<8sII")  # magic, JSON length, crc32 of the JSON
LABEL_BLOCK = 4096                     # the label is written as one block
STORE_MAGIC = b"SSSPOOL1"              # ss_store_internal.h SS_SUPER_MAGIC, little endian
SUPERBLOCK_BYTES = 4096
LABEL_VERSION = 1


class ProvisionError(Exception):
    """The config can't be provisioned; the message names the device and the fix."""


# ------------------------------------------------------------------ label


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


def encode_label(device: str, pools: list[PoolRegion]) -> bytes:
    """The label block for these pools (LABEL_BLOCK bytes)."""
    body = json.dumps({"version": LABEL_VERSION, "device": device,
                       "pools": [p.__dict__ for p in sorted(pools, key=lambda p: p.offset)]},
                      sort_keys=True, separators=(",", ":")).encode()
    head = LABEL_HEADER.pack(LABEL_MAGIC, len(body), zlib.crc32(body))
    if len(head) + len(body) > LABEL_BLOCK:
        raise ProvisionError(f"device {device}: too many pools for one label block")
    return (head + body).ljust(LABEL_BLOCK, b"\0")


def decode_label(block: bytes, where: str) -> list[PoolRegion] | None:
    """The pools a label block lists; None for a blank device.

    Raises:
        ProvisionError: the block holds something else (never overwritten).
    """
    if not block.strip(b"\0"):
        return None
    if block[:8] == STORE_MAGIC:
        raise ProvisionError(f"{where} holds a store formatted before device labels "
                             f"(one pool at offset 0); move it aside to start with an empty "
                             f"cache, nothing was changed")
    magic, length, crc = LABEL_HEADER.unpack_from(block)
    if magic != LABEL_MAGIC:
        raise ProvisionError(f"{where} holds data that is not a SmartSwitch device label; "
                             f"refusing to overwrite it (wipe it deliberately first)")
    body = block[LABEL_HEADER.size:LABEL_HEADER.size + length]
    if len(body) != length or zlib.crc32(body) != crc:
        raise ProvisionError(f"{where}: the device label is damaged (checksum mismatch); "
                             f"nothing was changed")
    doc = json.loads(body)
    return [PoolRegion(**p) for p in doc["pools"]]


# ---------------------------------------------------------------- drivers


@dataclass(frozen=True)
class DeviceState:
    """What probing found on a device (read only)."""

    exists: bool
    size: int                        # bytes now (0 when missing)
    label: list[PoolRegion] | None   # None: blank


class DeviceDriver(Protocol):
    """What provisioning needs from one kind of device."""

    def probe(self, dev: DeviceConfig, where: str) -> DeviceState:
        """Read the device's size and label; raise ProvisionError if unusable."""

    def capacity(self, dev: DeviceConfig, state: DeviceState, where: str) -> int:
        """Bytes the pools may be laid into; raise ProvisionError if too small."""

    def prepare(self, dev: DeviceConfig, state: DeviceState, capacity: int) -> list[Step]:
        """Steps that make the device hold capacity bytes (create, extend)."""

    def write_label(self, dev: DeviceConfig, block: bytes) -> None:
        """Write and sync the label block at offset 0."""


def _read_block(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(LABEL_BLOCK).ljust(LABEL_BLOCK, b"\0")


def _write_block(path: Path, block: bytes) -> None:
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    try:
        os.pwrite(fd, block, 0)
        os.fsync(fd)
    finally:
        os.close(fd)


class FileDriver:
    """kind: file: a regular file, created and extended (sparsely) as needed."""

    def probe(self, dev: DeviceConfig, where: str) -> DeviceState:
        try:
            st = dev.path.stat()
        except FileNotFoundError:
            parent = dev.path.parent
            probe_dir = next((p for p in [parent, *parent.parents] if p.exists()), None)
            if probe_dir is None or not os.access(probe_dir, os.W_OK | os.X_OK):
                raise ProvisionError(f"{where}.path: cannot create {dev.path}: {probe_dir} "
                                     f"is not writable; fix its permissions or choose "
                                     f"another path") from None
            return DeviceState(False, 0, None)
        except OSError as exc:
            raise ProvisionError(f"{where}.path: cannot use {dev.path}: "
                                 f"{exc.strerror}") from None
        if not stat.S_ISREG(st.st_mode):
            raise ProvisionError(f"{where}.path: {dev.path} is not a regular file; use "
                                 f"kind: block for a raw block device")
        if not os.access(dev.path, os.R_OK | os.W_OK):
            raise ProvisionError(f"{where}.path: cannot open {dev.path} for reading and "
                                 f"writing; fix its permissions or choose another path")
        return DeviceState(True, st.st_size, decode_label(_read_block(dev.path),
                                                          f"{where}.path: {dev.path}"))

    def capacity(self, dev: DeviceConfig, state: DeviceState, where: str) -> int:
        assert dev.size is not None  # config: files have a size
        return dev.size

    def prepare(self, dev: DeviceConfig, state: DeviceState, capacity: int) -> list[Step]:
        if not state.exists:
            return [CreateFile(dev.path, capacity)]
        if state.size < capacity:
            return [ExtendFile(dev.path, state.size, capacity)]
        return []

    def write_label(self, dev: DeviceConfig, block: bytes) -> None:
        _write_block(dev.path, block)


class BlockDriver:
    """kind: block: a raw block device; never created, never resized."""

    def probe(self, dev: DeviceConfig, where: str) -> DeviceState:
        try:
            st = dev.path.stat()
        except FileNotFoundError:
            raise ProvisionError(f"{where}.path: block device {dev.path} does not exist; "
                                 f"attach it or fix the path") from None
        except OSError as exc:
            raise ProvisionError(f"{where}.path: cannot use {dev.path}: "
                                 f"{exc.strerror}") from None
        if not stat.S_ISBLK(st.st_mode):
            raise ProvisionError(f"{where}.path: {dev.path} is not a block device; use "
                                 f"kind: file for a regular file")
        try:
            fd = os.open(dev.path, os.O_RDWR | os.O_CLOEXEC)
        except OSError as exc:
            raise ProvisionError(f"{where}.path: cannot open {dev.path} for reading and "
                                 f"writing: {exc.strerror}") from None
        try:
            size = os.lseek(fd, 0, os.SEEK_END)
        finally:
            os.close(fd)
        return DeviceState(True, size, decode_label(_read_block(dev.path),
                                                    f"{where}.path: {dev.path}"))

    def capacity(self, dev: DeviceConfig, state: DeviceState, where: str) -> int:
        want = dev.size if dev.size is not None else state.size
        if state.size < want:
            raise ProvisionError(f"{where}.size: block device {dev.path} holds "
                                 f"{units.format_size(state.size)} but the config asks for "
                                 f"{units.format_size(want)}; use a larger device or lower "
                                 f"its size")
        return want

    def prepare(self, dev: DeviceConfig, state: DeviceState, capacity: int) -> list[Step]:
        return []

    def write_label(self, dev: DeviceConfig, block: bytes) -> None:
        _write_block(dev.path, block)


# Label-based kinds; kind spdk is planned by appliance.provision_spdk.
DRIVERS: dict[str, DeviceDriver] = {"file": FileDriver(), "block": BlockDriver()}


# ------------------------------------------------------------------ steps


@dataclass(frozen=True)
class Step:
    """One change to a device; describe() is the plan line an operator reads."""

    def describe(self) -> str:
        raise NotImplementedError

    def lines(self) -> list[str]:
        """The plan lines of this step (one, except for steps that bundle several)."""
        return [self.describe()]


@dataclass(frozen=True)
class CreateFile(Step):
    path: Path
    size: int

    def describe(self) -> str:
        return f"create file {self.path} of {units.format_size(self.size)} ({self.size} bytes)"


@dataclass(frozen=True)
class ExtendFile(Step):
    path: Path
    old: int
    new: int

    def describe(self) -> str:
        return (f"extend file {self.path} from {units.format_size(self.old)} to "
                f"{units.format_size(self.new)}")


@dataclass(frozen=True)
class ReservePool(Step):
    device: str
    region: PoolRegion

    def describe(self) -> str:
        r = self.region
        served = "" if r.role == "memcached" else " (objects: reserved, not served yet)"
        return (f"pool {r.name} on {self.device} at offset {r.offset} size {r.size} "
                f"({units.format_size(r.size)}), segment_size "
                f"{units.format_size(r.segment_size)}{served}")


@dataclass(frozen=True)
class GrowPool(Step):
    device: str
    region: PoolRegion
    old: int

    def describe(self) -> str:
        return (f"grow pool {self.region.name} on {self.device} from "
                f"{units.format_size(self.old)} to {units.format_size(self.region.size)}")


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


@dataclass(frozen=True)
class WriteLabel(Step):
    device: DeviceConfig
    pools: tuple[PoolRegion, ...]

    def describe(self) -> str:
        return (f"write label on {self.device.name} ({self.device.path}): "
                + ", ".join(f"{p.name}@{p.offset}+{p.size}" for p in self.pools))


# ------------------------------------------------------------------- plan


@dataclass(frozen=True)
class Plan:
    """What provisioning will do, and the layout the devices will have after.

    Attributes:
        steps: in the order apply() performs them (empty: nothing to do).
        regions: pool name -> its region after the plan is applied.
        devices: device name -> capacity in bytes after the plan.
        notes: lines worth logging that are not changes (reserved leftovers).
        spdk: device name -> provision_spdk.SpdkProvisioned for kind spdk
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


def _where(config: Config, dev: DeviceConfig) -> str:
    i = next(i for i, d in enumerate(config.storage.devices) if d.name == dev.name)
    return f"storage.devices[{i}]"


def _pool_where(config: Config, pool: PoolConfig) -> str:
    i = next(i for i, p in enumerate(config.storage.pools) if p.name == pool.name)
    return f"storage.pools[{i}]"


def pool_bytes(pool: PoolConfig, capacity: int) -> int:
    """A pool's size in bytes on a device of capacity bytes."""
    return percent_bytes(capacity, pool.size_percent) if pool.size_percent is not None \
        else int(pool.size)


def _free_after(regions: list[PoolRegion], offset: int, capacity: int, skip: str) -> int:
    """Where the next region after offset starts (or the device end)."""
    starts = [r.offset for r in regions if r.name != skip and r.offset >= offset]
    return min(starts, default=capacity)


def _place(regions: list[PoolRegion], size: int, capacity: int) -> int | None:
    """First aligned gap of size bytes after the label, or None."""
    at = LABEL_BYTES
    for r in sorted(regions, key=lambda r: r.offset):
        if align_up(at) + size <= r.offset:
            return align_up(at)
        at = max(at, r.end)
    return align_up(at) if align_up(at) + size <= capacity else None


def _plan_device(config: Config, dev: DeviceConfig, driver: DeviceDriver,
                 steps: list[Step], regions_out: dict[str, PoolRegion],
                 notes: list[str]) -> int:
    where = _where(config, dev)
    state = driver.probe(dev, where)
    capacity = driver.capacity(dev, state, where)
    existing = {r.name: r for r in state.label or []}
    pools = [p for p in config.storage.pools if p.device == dev.name]
    device_steps: list[Step] = []
    # Pools the label has but the config dropped keep their space: removing
    # a pool is not a thing provisioning does silently.
    kept = [r for name, r in existing.items() if name not in {p.name for p in pools}]
    for r in kept:
        notes.append(f"pool {r.name} is in the label of {dev.name} but not in the config; "
                     f"its space stays reserved")
    layout = list(kept)
    for pool in pools:  # pools already on the device first, so new ones fit around them
        if pool.name not in existing:
            continue
        old = existing[pool.name]
        pwhere = _pool_where(config, pool)
        size = pool_bytes(pool, capacity)
        if old.segment_size != pool.segment_size or old.role != pool.role:
            what = "segment_size" if old.segment_size != pool.segment_size else "role"
            was = units.format_size(old.segment_size) if what == "segment_size" else old.role
            raise ProvisionError(f"{pwhere}.{what}: the pool on {dev.name} was provisioned "
                                 f"with {what} {was}; changing it means recreating the pool: "
                                 f"restore it (nothing was changed)")
        region = PoolRegion(pool.name, pool.role, old.offset, size, pool.segment_size)
        if size > old.size:
            limit = _free_after(list(existing.values()), old.offset + 1, capacity, pool.name)
            if old.offset + size > limit:
                raise ProvisionError(
                    f"{pwhere}.size: pool cannot grow to {units.format_size(size)} on "
                    f"{dev.name}: only {units.format_size(limit - old.offset)} are free from "
                    f"its offset {old.offset} (the next pool or the device end); nothing "
                    f"was changed")
            device_steps.append(GrowPool(dev.name, region, old.size))
        elif size < old.size:
            if not pool.allow_shrink:
                raise ProvisionError(
                    f"{pwhere}.size: shrinking pool {pool.name} from "
                    f"{units.format_size(old.size)} to {units.format_size(size)} would evict "
                    f"items; refused (set allow_shrink: true on the pool to allow it, with "
                    f"the appliance stopped); nothing was changed")
            device_steps.append(ShrinkPool(dev.name, dev.path, region, old.size))
        layout.append(region)
    for pool in pools:
        if pool.name in existing:
            continue
        size = pool_bytes(pool, capacity)
        offset = _place(layout, size, capacity)
        if offset is None:
            raise ProvisionError(
                f"{_pool_where(config, pool)}.size: {units.format_size(size)} does not fit on "
                f"device {dev.name} ({units.format_size(capacity)}, label and other pools "
                f"included); shrink the pool or grow the device; nothing was changed")
        region = PoolRegion(pool.name, pool.role, offset, size, pool.segment_size)
        device_steps.append(ReservePool(dev.name, region))
        layout.append(region)
    for r in layout:
        if r.size < MIN_SEGMENTS_PER_POOL * r.segment_size + SUPERBLOCK_BYTES and \
                r.name not in {k.name for k in kept}:
            pool = next(p for p in pools if p.name == r.name)
            raise ProvisionError(f"{_pool_where(config, pool)}.size: "
                                 f"{units.format_size(r.size)} on {dev.name} is under "
                                 f"{MIN_SEGMENTS_PER_POOL} segments")
        if r.end > capacity:
            raise ProvisionError(f"{where}: pool {r.name} ends at {r.end} but the device "
                                 f"holds {capacity} bytes; nothing was changed")
        regions_out[r.name] = r
    new_label = sorted(layout, key=lambda r: r.offset)
    # Order keeps a crash at any point safe: the store opens at the size the
    # label gives whenever its superblock has no more segments than that
    # (it grows itself), so a shrink goes before the label and a grow after.
    steps.extend(driver.prepare(dev, state, capacity))
    steps.extend(s for s in device_steps if isinstance(s, ShrinkPool))
    steps.extend(s for s in device_steps if isinstance(s, ReservePool))
    if new_label != sorted(state.label or [], key=lambda r: r.offset):
        steps.append(WriteLabel(dev, tuple(new_label)))
    steps.extend(s for s in device_steps if isinstance(s, GrowPool))
    return capacity


def plan(config: Config) -> Plan:
    """Probe every device (read only) and plan the changes the config asks for.

    Raises:
        ProvisionError: a device is missing, too small or unusable, or the
            change would lose data unasked; nothing has been touched.
    """
    steps: list[Step] = []
    regions: dict[str, PoolRegion] = {}
    devices: dict[str, int] = {}
    notes: list[str] = []
    spdk: dict[str, Any] = {}
    for dev in config.storage.devices:
        if dev.kind == "spdk":
            from appliance import provision_spdk  # imports spdk_bindings only when needed
            devices[dev.name] = provision_spdk.plan_device(
                config, dev, _where(config, dev), steps, regions, notes, spdk)
            continue
        driver = DRIVERS.get(dev.kind)
        if driver is None:
            raise ProvisionError(f"{_where(config, dev)}: kind {dev.kind} is not supported "
                                 f"yet")
        devices[dev.name] = _plan_device(config, dev, driver, steps, regions, notes)
    return Plan(tuple(steps), regions, devices, tuple(notes), spdk)


# ------------------------------------------------------------------ apply

Shrinker = Callable[[ShrinkPool], None]
Progress = Callable[[str], None]


def _fill(path: Path, old: int, new: int, progress: Progress) -> None:
    """Make a file new bytes long (sparse: no data written, so it is fast)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        os.ftruncate(fd, new)
        os.fsync(fd)
    finally:
        os.close(fd)
    progress(f"  {path}: {units.format_size(new)} done")


def apply(p: Plan, config: Config, *, shrinker: Shrinker | None = None,
          progress: Progress | None = None, grower: Callable[[GrowPool], None] | None = None,
          ) -> None:
    """Perform a plan's steps in order.

    Args:
        p: from plan(), on the same config.
        config: the config it was planned from.
        shrinker: shrinks a store offline (the runner opens it with no
            listeners); required when the plan has a ShrinkPool step.
        progress: receives one line per step as it starts (and progress
            lines for slow ones); default: the log.
        grower: grows a pool that is being served (reload); None at start,
            where the store grows itself when opened at the larger size.
    """
    say = progress or log.info
    for step in p.steps:
        say(step.describe())
        if isinstance(step, CreateFile):
            step.path.parent.mkdir(parents=True, exist_ok=True)
            _fill(step.path, 0, step.size, say)
        elif isinstance(step, ExtendFile):
            _fill(step.path, step.old, step.new, say)
        elif isinstance(step, ShrinkPool):
            if step.region.role == "memcached":
                if shrinker is None:
                    raise ProvisionError(f"pool {step.region.name}: shrinking needs the "
                                         f"appliance stopped")
                shrinker(step)
        elif isinstance(step, GrowPool):
            if grower is not None and step.region.role == "memcached":
                grower(step)
        elif isinstance(step, WriteLabel):
            DRIVERS[step.device.kind].write_label(step.device, encode_label(
                step.device.name, list(step.pools)))
        else:
            from appliance import provision_spdk
            if isinstance(step, provision_spdk.SpdkDeviceStep):
                provision_spdk.apply_device(step, p.regions, p.devices, say, shrinker, grower)


def state(config: Config, p: Plan | None = None) -> dict[str, object]:
    """Devices and pools for stats and the console (what the labels say)."""
    p = p or plan(config)
    devices = []
    for d in config.storage.devices:
        dev: dict[str, object] = {"name": d.name, "kind": d.kind,
                                  "path": None if d.path is None else str(d.path),
                                  "capacity": p.devices.get(d.name, 0)}
        if d.name in p.spdk:
            from appliance import provision_spdk
            dev.update(provision_spdk.device_state(p.spdk[d.name]))
        devices.append(dev)
    pools = []
    for pool in config.storage.pools:
        r = p.regions[pool.name]
        entry: dict[str, object] = {
            "name": r.name, "role": r.role, "device": pool.device, "offset": r.offset,
            "size": r.size, "segment_size": r.segment_size, "served": r.role == "memcached"}
        if pool.device in p.spdk:
            from appliance import provision_spdk
            entry.update(provision_spdk.pool_state(p.spdk[pool.device], pool.name))
        pools.append(entry)
    return {"devices": devices, "pools": pools, "pending": p.lines() if p.steps else []}


def memcached_region(p: Plan, config: Config) -> PoolRegion:
    """The region of the one served pool."""
    return p.regions[config.storage.memcached_pool.name]


__all__ = ["ProvisionError", "Plan", "PoolRegion", "DeviceDriver", "DRIVERS", "plan", "apply",
           "state", "memcached_region", "encode_label", "decode_label", "POOL_ALIGN"]
