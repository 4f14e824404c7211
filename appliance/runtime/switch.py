"""Switch mode's lifecycle (dataplane.mode: dpdk): EAL, the exception path's
interface, the switch over the data plane, its lcore threads, and back-end
MAC addresses.

Order at start: EAL init (creates the DPDK ports, the net_tap interface
among them) -> the tap gets the service address and is brought up (so the
data plane's kernel listeners can bind it) -> the data plane -> the switch
(ports started) -> the tap gets the switch's MAC, so one MAC and one address
answer ARP, ping, TCP memcached and the fast path alike.

Back-end MACs come from dataplane.dpdk.backend_macs or from the kernel's
neighbour table for the tap (/proc/net/arp): a learner thread nudges the
kernel to resolve each back end (one empty datagram to the discard port,
which leaves through the exception path) and hands complete entries to C.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import socket
import subprocess
import threading
from typing import Callable

from appliance.config import Config
from appliance.config.switch import FUNCTIONS, PROTOCOLS, REWRITES, default_rules
from dataplane import switch as sw
from dataplane.fastpath import Dataplane, DataplaneError

log = logging.getLogger("smartswitch")

TAP_VDEV = "net_tap_ss0"
LEARN_INTERVAL_S = 0.5
PUBLISH_INTERVAL_S = 0.5
COUNTERS_FILE = "switch-counters.json"  # in storage.dir; `smartswitch switch-stats` reads it
DISCARD_PORT = 9


class SwitchStartError(Exception):
    """Switch mode could not start; the message says what and what to do."""


def serves_from_spdk(config: Config) -> bool:
    """Is the memcached pool on a kind: spdk device (SPDK then shares switch mode's EAL)?"""
    pool = config.storage.memcached_pool
    return config.storage.device(pool.device).kind == "spdk"


def eal_args(config: Config) -> list[str]:
    """The EAL command line for config (pure)."""
    d = config.dataplane.dpdk
    spdk = serves_from_spdk(config)
    memory = d.memory + (config.storage.spdk.mem_size if spdk else 0)
    cpus = sorted(os.sched_getaffinity(0))
    args = ["smartswitch",
            # lcore 0 (this thread during init) may run on any allowed CPU:
            # EAL would otherwise pin the whole process's threads to one.
            f"--lcores=0@({','.join(map(str, cpus))})",
            "-m", str(memory // 1024**2),
            f"--file-prefix=smartswitch{os.getpid()}", "--log-level=lib.eal:warning"]
    if d.no_huge:
        args += ["--no-huge", "--no-shconf"]
    if spdk:
        # The EAL SPDK attaches to must be one SPDK could have started itself: without
        # hugepages, one legacy segment addressed by virtual address; with them, no
        # merging of allocations (SPDK's memory maps track each one).
        args += ["--legacy-mem", "--iova-mode=va"] if d.no_huge else ["--match-allocations"]
    if not d.pci_allow:
        args.append("--no-pci")
    for pci in d.pci_allow:
        args += ["-a", pci]
    for vdev in d.vdevs:
        args.append(f"--vdev={vdev}")
    if d.exception is not None:
        args.append(f"--vdev={TAP_VDEV},iface={d.exception.tap}")
    args += list(d.eal_extra)
    return args


def switch_settings(config: Config) -> sw.SwitchSettings:
    """struct ss_switch_settings for config (pure)."""
    d = config.dataplane.dpdk
    udp_port = config.memcached.udp_port or 0
    rules = d.rules if d.rules is not None else default_rules(udp_port)
    return sw.SwitchSettings(
        port=d.port or "",
        exception_port=TAP_VDEV if d.exception is not None else None,
        lcores=d.lcores,
        service_addr=str(d.service.address.ip),
        service_mac=d.service.mac,
        udp_port=udp_port,
        rewrite=REWRITES.index(d.rewrite),
        mbufs=d.mbufs,
        rate_limit_pps=d.rate_limit.packets_per_sec,
        rate_limit_burst=d.rate_limit.burst,
        reply_cache_bytes=d.reply_cache,
        park_max=d.park,
        rules=tuple(sw.Rule(name=r.name, protocol=PROTOCOLS[r.match.protocol],
                            dst_port=r.match.dst_port or 0,
                            src_addr=int(r.match.src.network_address),
                            src_prefix_len=r.match.src.prefixlen,
                            chain=tuple(FUNCTIONS.index(f) for f in r.chain))
                    for r in rules))


def _ip(*args: str) -> None:
    res = subprocess.run(["ip", *args], capture_output=True, text=True)
    if res.returncode != 0:
        raise SwitchStartError(f"`ip {' '.join(args)}` failed: {res.stderr.strip()}")


def kernel_neighbours(dev: str) -> dict[str, str]:
    """Complete entries of the kernel's ARP table on dev: {address: mac}."""
    out: dict[str, str] = {}
    try:
        with open("/proc/net/arp", encoding="ascii") as f:
            next(f)
            for line in f:
                parts = line.split()
                # IP address, HW type, Flags, HW address, Mask, Device
                if len(parts) >= 6 and parts[5] == dev and int(parts[2], 16) & 0x2:
                    out[parts[0]] = parts[3]
    except OSError:
        pass
    return out


class SwitchRuntime:
    """EAL, the switch and its threads, beside the data plane's own."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.d = config.dataplane.dpdk
        self.switch: sw.Switch | None = None
        self.backends = sorted({b.host for b in config.all_backends
                                if isinstance(ipaddress.ip_address(b.host),
                                              ipaddress.IPv4Address)})

    def _quiet_kernel_on_port(self) -> None:
        """Keep the kernel from answering frames on an af_packet port's interface.

        The packet socket sees every frame, but the kernel's own stack does
        too, and the service address on the tap is local to the whole
        namespace: without this the kernel would answer ARP and UDP arriving
        on the port beside the fast path. Strict reverse-path filtering drops
        IPv4 arriving there (the route back to clients is the tap), and
        arp_ignore 8 never answers ARP on it.
        """
        for vdev in self.d.vdevs:
            name, _, args = vdev.partition(",")
            if name != self.d.port or not name.startswith("net_af_packet"):
                continue
            opts = dict(kv.split("=", 1) for kv in args.split(",") if "=" in kv)
            iface = opts.get("iface")
            if not iface:
                continue
            for path, value in ((f"ipv4/conf/{iface}/rp_filter", "1"),
                                (f"ipv4/conf/{iface}/arp_ignore", "8"),
                                (f"ipv6/conf/{iface}/disable_ipv6", "1")):
                try:
                    with open(f"/proc/sys/net/{path}", "w", encoding="ascii") as f:
                        f.write(value)
                except OSError as exc:
                    log.warning("switch mode: cannot set net.%s=%s (%s); the kernel may "
                                "answer on %s too", path.replace("/", "."), value,
                                exc.strerror, iface)

    def before_dataplane(self) -> None:
        """EAL init, then the tap gets the service address (listeners bind it)."""
        self._quiet_kernel_on_port()
        try:
            sw.eal_init(eal_args(self.config))
        except DataplaneError as exc:
            raise SwitchStartError(f"dataplane.dpdk: {exc}") from None
        if self.d.exception is not None:
            tap = self.d.exception.tap
            _ip("addr", "replace", str(self.d.service.address), "dev", tap)
            _ip("link", "set", "dev", tap, "up")

    def start(self, dp: Dataplane) -> None:
        """Create the switch over dp and give the tap the switch's MAC."""
        try:
            self.switch = sw.Switch.create(dp, switch_settings(self.config))
        except (DataplaneError, ValueError) as exc:
            raise SwitchStartError(f"dataplane.dpdk: {exc}") from None
        mac = self.switch.mac()
        if self.d.exception is not None:
            tap = self.d.exception.tap
            _ip("link", "set", "dev", tap, "down")
            _ip("link", "set", "dev", tap, "address", mac)
            _ip("link", "set", "dev", tap, "up")
        for addr, bmac in self.d.backend_macs:
            self.switch.set_neighbour(addr, bmac)
            log.info("switch mode: back end %s is at %s (static)", addr, bmac)
        log.info("switch mode: port %s mac %s service %s rewrite %s lcores %d exception %s",
                 self.d.port, mac, self.d.service.address, self.d.rewrite, self.d.lcores,
                 self.d.exception.tap if self.d.exception else "off")

    def threads(self, stopping: threading.Event,
                fail: Callable[[str], None]) -> list[threading.Thread]:
        """One thread per lcore, plus the MAC learner."""
        assert self.switch is not None
        out = [threading.Thread(target=self._lcore, args=(i, stopping, fail),
                                name=f"ss-lcore-{i}", daemon=True)
               for i in range(self.d.lcores)]
        if self.d.exception is not None and self.backends:
            out.append(threading.Thread(target=self._learn, args=(stopping,),
                                        name="ss-neigh", daemon=True))
        out.append(threading.Thread(target=self._publish, args=(stopping,),
                                    name="ss-switch-stats", daemon=True))
        return out

    def _publish(self, stopping: threading.Event) -> None:
        """Write the counters for `smartswitch switch-stats` (one call into C each time)."""
        path = self.config.storage.dir / COUNTERS_FILE
        tmp = path.with_suffix(".tmp")
        while True:
            stopped = stopping.wait(PUBLISH_INTERVAL_S)
            try:
                tmp.write_text(json.dumps(self.counters(), indent=0) + "\n")
                os.replace(tmp, path)
            except OSError as exc:
                log.warning("cannot write %s: %s", path, exc.strerror)
            if stopped:
                return

    def _lcore(self, i: int, stopping: threading.Event, fail: Callable[[str], None]) -> None:
        try:
            assert self.switch is not None
            self.switch.run(i)
        except BaseException as exc:
            log.critical("switch lcore %d failed: %s", i, exc)
            fail(f"switch lcore {i} failed")
            return
        if not stopping.is_set():
            fail(f"switch lcore {i} returned")

    def _learn(self, stopping: threading.Event) -> None:
        static = {a for a, _ in self.d.backend_macs}
        known: dict[str, str] = {}
        tap = self.d.exception.tap if self.d.exception else ""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            while True:
                table = kernel_neighbours(tap)
                for addr in self.backends:
                    if addr in static:
                        continue
                    mac = table.get(addr)
                    if mac and known.get(addr) != mac:
                        assert self.switch is not None
                        self.switch.set_neighbour(addr, mac)
                        known[addr] = mac
                        log.info("switch mode: back end %s is at %s", addr, mac)
                    elif not mac:
                        try:  # makes the kernel resolve it (out the tap)
                            s.sendto(b"", (addr, DISCARD_PORT))
                        except OSError:
                            pass
                if stopping.wait(LEARN_INTERVAL_S):
                    return

    def counters(self) -> dict[str, int]:
        return self.switch.counters() if self.switch is not None else {}

    def stop(self) -> None:
        if self.switch is not None:
            self.switch.stop()

    def destroy(self) -> None:
        if self.switch is not None:
            self.switch.destroy()
