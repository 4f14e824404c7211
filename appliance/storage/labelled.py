"""Devices that carry a SmartSwitch label: `kind: file` and `kind: block`.

Layout of such a device (docs/architecture.md, "Devices and pools"): a label in
the first LABEL_BYTES (magic, length, crc32, then JSON listing each pool's
name, role, offset, size and segment size), then the pools, each on a
POOL_ALIGN boundary. A pool keeps its offset for life; it grows into free
space after it. The store writes its own superblock at the pool's offset.

``LabelDriver.plan`` probes a device (read only), reads its label and adds the
steps that make it match the config: create or extend a file, reserve a pool,
grow or shrink one, write the label. The two kinds differ only in probing,
sizing and preparing (FileDriver, BlockDriver).
"""

from __future__ import annotations

import json
import os
import stat
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.config import (
    LABEL_BYTES,
    MIN_SEGMENTS_PER_POOL,
    Config,
    DeviceConfig,
    PoolConfig,
    align_up,
    percent_bytes,
    units,
)
from appliance.storage.steps import (
    Applying,
    Draft,
    GrowPool,
    Plan,
    PoolRegion,
    Progress,
    ProvisionError,
    ShrinkPool,
    Step,
    device_where,
    pool_where,
)

LABEL_MAGIC = b"SSLABEL1"
LABEL_HEADER = struct.Struct("<8sII")  # magic, JSON length, crc32 of the JSON
LABEL_BLOCK = 4096                     # the label is written as one block
STORE_MAGIC = b"SSSPOOL1"              # ss_store_internal.h SS_SUPER_MAGIC, little endian
SUPERBLOCK_BYTES = 4096
LABEL_VERSION = 1


# ------------------------------------------------------------------ label


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



class LabelDriver:
    """A labelled kind: the label planner with its own probe, sizing and preparing.

    The serving side is the same for both kinds: the store opens the device's path.
    """

    def probe(self, dev: DeviceConfig, where: str) -> DeviceState:
        """Read the device's size and label; raise ProvisionError if unusable."""
        raise NotImplementedError

    def capacity(self, dev: DeviceConfig, state: DeviceState, where: str) -> int:
        """Bytes the pools may be laid into; raise ProvisionError if too small."""
        raise NotImplementedError

    def prepare(self, dev: DeviceConfig, state: DeviceState, capacity: int) -> list[Step]:
        """Steps that make the device hold capacity bytes (create, extend)."""
        raise NotImplementedError

    def write_label(self, dev: DeviceConfig, block: bytes) -> None:
        """Write and sync the label block at offset 0."""
        _write_block(dev.path, block)

    # DeviceDriver (appliance.storage.steps)

    def plan(self, config: Config, dev: DeviceConfig, draft: Draft) -> int:
        return _plan_device(config, dev, self, draft.steps, draft.regions, draft.notes)

    def device_state(self, p: Plan, dev: DeviceConfig) -> dict[str, Any]:
        return {}

    def pool_state(self, p: Plan, pool: PoolConfig) -> dict[str, Any]:
        return {}

    def store_path(self, dev: DeviceConfig, pool: PoolConfig) -> str:
        return str(dev.path)

    def may_hold_store(self, dev: DeviceConfig) -> bool:
        return dev.path is None or dev.path.exists()

    def prepare_process(self, config: Config, argv: list[str]) -> None:
        return None

    def check_can_serve(self, config: Config) -> None:
        return None

    def open_store_device(self, config: Config, layout: Plan) -> Any:
        return None



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


class FileDriver(LabelDriver):
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


class BlockDriver(LabelDriver):
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




# ------------------------------------------------------------------ steps


@dataclass(frozen=True)
class CreateFile(Step):
    path: Path
    size: int

    def describe(self) -> str:
        return f"create file {self.path} of {units.format_size(self.size)} ({self.size} bytes)"

    def apply(self, run: Applying) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _fill(self.path, 0, self.size, run.say)


@dataclass(frozen=True)
class ExtendFile(Step):
    path: Path
    old: int
    new: int

    def describe(self) -> str:
        return (f"extend file {self.path} from {units.format_size(self.old)} to "
                f"{units.format_size(self.new)}")

    def apply(self, run: Applying) -> None:
        _fill(self.path, self.old, self.new, run.say)


@dataclass(frozen=True)
class ReservePool(Step):
    device: str
    region: PoolRegion

    def describe(self) -> str:
        r = self.region
        served = "" if r.role == "memcached" else " (objects)"
        return (f"pool {r.name} on {self.device} at offset {r.offset} size {r.size} "
                f"({units.format_size(r.size)}), segment_size "
                f"{units.format_size(r.segment_size)}{served}")

    def apply(self, run: Applying) -> None:
        return None  # the WriteLabel step that follows records the pool


@dataclass(frozen=True)
class WriteLabel(Step):
    device: DeviceConfig
    pools: tuple[PoolRegion, ...]

    def describe(self) -> str:
        return (f"write label on {self.device.name} ({self.device.path}): "
                + ", ".join(f"{p.name}@{p.offset}+{p.size}" for p in self.pools))

    def apply(self, run: Applying) -> None:
        LABEL_DRIVERS[self.device.kind].write_label(self.device, encode_label(
            self.device.name, list(self.pools)))


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


def _plan_device(config: Config, dev: DeviceConfig, driver: LabelDriver,
                 steps: list[Step], regions_out: dict[str, PoolRegion],
                 notes: list[str]) -> int:
    where = device_where(config, dev)
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
        pwhere = pool_where(config, pool)
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
                f"{pool_where(config, pool)}.size: {units.format_size(size)} does not fit on "
                f"device {dev.name} ({units.format_size(capacity)}, label and other pools "
                f"included); shrink the pool or grow the device; nothing was changed")
        region = PoolRegion(pool.name, pool.role, offset, size, pool.segment_size)
        device_steps.append(ReservePool(dev.name, region))
        layout.append(region)
    for r in layout:
        if r.size < MIN_SEGMENTS_PER_POOL * r.segment_size + SUPERBLOCK_BYTES and \
                r.name not in {k.name for k in kept}:
            pool = next(p for p in pools if p.name == r.name)
            raise ProvisionError(f"{pool_where(config, pool)}.size: "
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


def _fill(path: Path, old: int, new: int, progress: Progress) -> None:
    """Make a file new bytes long (sparse: no data written, so it is fast)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        os.ftruncate(fd, new)
        os.fsync(fd)
    finally:
        os.close(fd)
    progress(f"  {path}: {units.format_size(new)} done")


LABEL_DRIVERS: dict[str, LabelDriver] = {"file": FileDriver(), "block": BlockDriver()}
