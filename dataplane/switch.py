"""Thin wrapper over switch mode, 1:1 with dataplane/include/ss_switch.h.

Python initialises DPDK's EAL once, creates the switch over a running
Dataplane, lends one thread per lcore to ss_switch_run (cffi releases the GIL
for the call), and reads every counter in one call. Nothing here runs per
packet.
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass, field
from typing import Any

from dataplane.fastpath import Dataplane, DataplaneError, _check, c_string, load

_ERR_LEN = 512


class SwitchUnavailable(DataplaneError):
    """This build has no DPDK (ss_sw_stub.c)."""

    remedy = "install dpdk-dev and rebuild with `make build`"


class SwitchCreateError(DataplaneError):
    """EAL initialisation or ss_switch_create refused; the message is C's reason."""


@dataclass(frozen=True)
class Rule:
    """struct ss_sw_rule. chain holds enum ss_sw_function values."""

    name: str
    protocol: int
    dst_port: int
    src_addr: int
    src_prefix_len: int
    chain: tuple[int, ...]


@dataclass(frozen=True)
class SwitchSettings:
    """struct ss_switch_settings (field for field; addresses as text here)."""

    port: str
    exception_port: str | None
    lcores: int
    service_addr: str
    service_mac: str | None
    udp_port: int
    rewrite: int
    mbufs: int
    rate_limit_pps: int
    rate_limit_burst: int
    reply_cache_bytes: int = 0
    rules: tuple[Rule, ...] = field(default_factory=tuple)
    park_max: int = 0  # 0: SS_SW_PARK_DEFAULT


def available() -> bool:
    """Wraps ss_switch_available(): was the data plane built with DPDK?"""
    _, lib = load()
    return bool(lib.ss_switch_available())


def eal_init(args: list[str]) -> None:
    """Wraps ss_switch_eal_init(): initialise DPDK once per process.

    Args:
        args: the EAL command line, program name first.

    Raises:
        SwitchUnavailable: no DPDK in this build.
        SwitchCreateError: EAL refused (the message says why).
    """
    ffi, lib = load()
    if not lib.ss_switch_available():
        raise SwitchUnavailable("dataplane.mode: dpdk needs a data plane built with DPDK; "
                                "install dpdk-dev (pkg-config libdpdk) and run `make build`")
    bufs = [ffi.new("char[]", a.encode()) for a in args]
    argv = ffi.new("char *[]", bufs + [ffi.NULL])
    err = ffi.new("char[]", _ERR_LEN)
    rc = lib.ss_switch_eal_init(len(args), argv, err, _ERR_LEN)
    if rc < 0:
        raise SwitchCreateError(ffi.string(err).decode("utf-8", "replace"), -rc)
    # EAL may keep pointers into argv for the life of the process.
    _EAL_KEEP.extend([bufs, argv])


_EAL_KEEP: list[Any] = []


def _mac_bytes(mac: str) -> bytes:
    return bytes(int(x, 16) for x in mac.split(":"))


class Switch:
    """One switch (ss_switch_create .. ss_switch_destroy)."""

    def __init__(self, ffi: Any, lib: Any, handle: Any, keep: list[Any]) -> None:
        self._ffi = ffi
        self._lib = lib
        self._sw = handle
        self._keep = keep
        self._names: tuple[str, ...] | None = None

    @classmethod
    def create(cls, dp: Dataplane, s: SwitchSettings) -> Switch:
        """Wraps ss_switch_create(): start the ports, attach to dp's store and ring."""
        ffi, lib = load()
        keep: list[Any] = []

        cstr = functools.partial(c_string, ffi, keep)

        c = ffi.new("struct ss_switch_settings *")
        keep.append(c)
        c.port = cstr(s.port)
        c.exception_port = cstr(s.exception_port) if s.exception_port else ffi.NULL
        c.lcores = s.lcores
        c.service_addr = int(ipaddress.IPv4Address(s.service_addr))
        if s.service_mac:
            mac = ffi.new("uint8_t[6]", _mac_bytes(s.service_mac))
            keep.append(mac)
            c.service_mac = mac
        c.udp_port = s.udp_port
        c.rewrite = s.rewrite
        c.mbufs = s.mbufs
        c.rate_limit_pps = s.rate_limit_pps
        c.rate_limit_burst = s.rate_limit_burst
        c.reply_cache_bytes = s.reply_cache_bytes
        c.park_max = s.park_max
        rules = ffi.new("struct ss_sw_rule[]", max(1, len(s.rules)))
        keep.append(rules)
        for i, r in enumerate(s.rules):
            chain = ffi.new("uint32_t[]", list(r.chain))
            keep.append(chain)
            rules[i].name = cstr(r.name)
            rules[i].protocol = r.protocol
            rules[i].dst_port = r.dst_port
            rules[i].src_addr = r.src_addr
            rules[i].src_prefix_len = r.src_prefix_len
            rules[i].chain = chain
            rules[i].nchain = len(r.chain)
        c.rules = rules
        c.nrules = len(s.rules)
        err = ffi.new("char[]", _ERR_LEN)
        handle = lib.ss_switch_create(dp._handle(), c, err, _ERR_LEN)
        if handle == ffi.NULL:
            raise SwitchCreateError(ffi.string(err).decode("utf-8", "replace")
                                    or "ss_switch_create failed")
        return cls(ffi, lib, handle, keep)

    def _handle(self) -> Any:
        if self._sw is None:
            raise DataplaneError("the switch has been destroyed")
        return self._sw

    def mac(self) -> str:
        """Wraps ss_switch_mac(): the MAC the switch answers to."""
        out = self._ffi.new("uint8_t[6]")
        _check(self._lib.ss_switch_mac(self._handle(), out), "reading the switch MAC")
        return ":".join(f"{b:02x}" for b in bytes(self._ffi.buffer(out)))

    def run(self, lcore: int) -> None:
        """Wraps ss_switch_run(): poll queue pair `lcore` until stop()."""
        _check(self._lib.ss_switch_run(self._handle(), lcore), f"switch lcore {lcore}")

    def stop(self) -> None:
        """Wraps ss_switch_stop(). Any thread."""
        if self._sw is not None:
            self._lib.ss_switch_stop(self._sw)

    def destroy(self) -> None:
        """Wraps ss_switch_destroy(); only after every run() has returned. Idempotent."""
        if self._sw is not None:
            handle, self._sw = self._sw, None
            self._lib.ss_switch_destroy(handle)
            self._keep.clear()

    def set_neighbour(self, addr: str, mac: str) -> None:
        """Wraps ss_switch_set_neighbour(): a back end's MAC address."""
        buf = self._ffi.new("uint8_t[6]", _mac_bytes(mac))
        _check(self._lib.ss_switch_set_neighbour(self._handle(),
                                                 int(ipaddress.IPv4Address(addr)), buf),
               f"setting the MAC of {addr}")

    def counter_names(self) -> tuple[str, ...]:
        """Wraps ss_switch_counter_count() / ss_switch_counter_name()."""
        if self._names is None:
            n = _check(self._lib.ss_switch_counter_count(self._handle()), "counting counters")
            buf = self._ffi.new("char[]", 160)
            names = []
            for i in range(n):
                _check(self._lib.ss_switch_counter_name(self._handle(), i, buf, 160),
                       "naming a counter")
                names.append(self._ffi.string(buf).decode())
            self._names = tuple(names)
        return self._names

    def counters(self) -> dict[str, int]:
        """Wraps ss_switch_read_counters(): switch, port, rule and function counters."""
        names = self.counter_names()
        out = self._ffi.new("uint64_t[]", len(names))
        _check(self._lib.ss_switch_read_counters(self._handle(), out, len(names)),
               "reading switch counters")
        return {name: int(out[i]) for i, name in enumerate(names)}
