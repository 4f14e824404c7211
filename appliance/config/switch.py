"""The `dataplane` section: socket mode (the default) or switch mode over DPDK.

In switch mode (`dataplane.mode: dpdk`) a DPDK port faces the network and the
fast path (dataplane/src/switch/) answers memcached UDP hits and rewrites
misses to their owner; everything else reaches the kernel through a net_tap
interface that carries the service address, where the socket-mode listeners
serve it. The word lists below are in the order of the C enums in
dataplane/include/ss_switch.h (their index is the value C receives).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from dataclasses import dataclass
from typing import Any

from appliance.config.schema import (
    Context,
    boolean,
    build,
    derived,
    fail,
    int_range,
    join,
    list_of,
    one_of,
    optional,
    port,
    scalar,
    section,
    setting,
    size_range,
)
from appliance.config.yaml_source import ConfigError, Node, describe

# enum ss_sw_function (SS_SW_FUNCTIONS in ss_switch.h), in order.
FUNCTIONS: tuple[str, ...] = ("memcached-cache", "memcached-route", "rate-limit", "count",
                              "to-kernel", "drop")
# enum ss_sw_rewrite.
REWRITES: tuple[str, ...] = ("l3", "l2")
PROTOCOLS: dict[str, int] = {"any": 0, "icmp": 1, "tcp": 6, "udp": 17}
RULES_MAX = 32  # SS_SW_RULES_MAX
CHAIN_MAX = 8   # SS_SW_CHAIN_MAX
LCORES_MAX = 16

_MAC = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")
_IFNAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")


def mac_address(raw: Any) -> str:
    """A MAC address written aa:bb:cc:dd:ee:ff (unicast)."""
    if not isinstance(raw, str) or not _MAC.match(raw.strip()):
        raise ValueError("a MAC address like 02:00:00:00:00:01")
    mac = raw.strip().lower()
    if int(mac[:2], 16) & 1:
        raise ValueError("a unicast MAC address (the first byte even), like 02:00:00:00:00:01")
    return mac


def ipv4_interface(raw: Any) -> ipaddress.IPv4Interface:
    """An IPv4 address with its prefix length, like 10.0.0.1/24."""
    expected = "an IPv4 address with its prefix length, like 10.0.0.1/24"
    if not isinstance(raw, str) or "/" not in raw:
        raise ValueError(expected)
    try:
        return ipaddress.IPv4Interface(raw.strip())
    except ValueError:
        raise ValueError(expected) from None


def ipv4_network(raw: Any) -> ipaddress.IPv4Network:
    """An IPv4 prefix like 10.0.0.0/8 (host bits must be zero)."""
    expected = "an IPv4 prefix like 10.0.0.0/8 or 0.0.0.0/0"
    if not isinstance(raw, str):
        raise ValueError(expected)
    try:
        return ipaddress.IPv4Network(raw.strip())
    except ValueError as exc:
        raise ValueError(f"{expected} ({exc})") from None


def interface_name(raw: Any) -> str:
    """A Linux interface name (at most 15 characters)."""
    if not isinstance(raw, str) or not _IFNAME.match(raw):
        raise ValueError("an interface name of at most 15 letters, digits, '.', '-' or '_'")
    return raw


def string_list(what: str) -> Any:
    """A list of non-empty strings, returned as a tuple."""

    def convert(node: Node, path: str, ctx: Context) -> tuple[str, ...]:
        if not isinstance(node.value, list):
            raise fail(f"expected a list of {what}, got {describe(node)}", node, path)
        out = []
        for i, item in enumerate(node.value):
            if not isinstance(item.value, str) or not item.value.strip() or \
                    any(c.isspace() for c in item.value):
                raise fail(f"expected {what} (a string without spaces), got {describe(item)}",
                           item, f"{path}[{i}]")
            out.append(item.value)
        return tuple(out)

    return convert


def mac_table(node: Node, path: str, ctx: Context) -> tuple[tuple[str, str], ...]:
    """A mapping of back-end IPv4 address -> MAC (static neighbours)."""
    if node.value is None:
        return ()
    if not isinstance(node.value, dict):
        raise fail(f"expected a mapping of IPv4 address to MAC address, got "
                   f"{describe(node)}", node, path)
    out = []
    for key, value in node.value.items():
        sub = join(path, str(key))
        line = node.key_lines.get(key, node.line)
        try:
            addr = str(ipaddress.IPv4Address(str(key).strip()))
        except ValueError:
            raise ConfigError(f"expected an IPv4 address as the key, got {key!r}",
                              path=sub, line=line) from None
        out.append((addr, scalar(mac_address)(value, sub, ctx)))
    return tuple(out)


def chain(node: Node, path: str, ctx: Context) -> tuple[str, ...]:
    """A list of built-in function names, run in order."""
    if not isinstance(node.value, list) or not 1 <= len(node.value) <= CHAIN_MAX:
        raise fail(f"expected a list of 1 to {CHAIN_MAX} functions "
                   f"({', '.join(FUNCTIONS)}), got {describe(node)}", node, path)
    return tuple(scalar(one_of(*FUNCTIONS))(item, f"{path}[{i}]", ctx)
                 for i, item in enumerate(node.value))


@dataclass(frozen=True)
class MatchConfig:
    """`rules[].match`: what a packet to the service address must be. Omitted = any."""

    NOUN = "match fields (protocol, dst_port, src)"

    protocol: str = setting(scalar(one_of(*PROTOCOLS)), "any")
    dst_port: int | None = setting(scalar(optional(port, "any port")), None)
    src: ipaddress.IPv4Network = setting(scalar(ipv4_network), "0.0.0.0/0")


@dataclass(frozen=True)
class RuleConfig:
    """An entry of `dataplane.dpdk.rules`: the first rule that matches picks the chain."""

    NOUN = "rules"

    name: str = setting(scalar(lambda raw: raw if isinstance(raw, str) and 0 < len(raw) < 64
                               and " " not in raw else _bad("a name without spaces")))
    match: MatchConfig = setting(section(MatchConfig), {})
    chain: tuple[str, ...] = setting(chain)


def _bad(expected: str) -> Any:
    raise ValueError(expected)


@dataclass(frozen=True)
class ServiceConfig:
    """`dataplane.dpdk.service`: the appliance's address on the network."""

    NOUN = "service settings (address, mac)"

    address: ipaddress.IPv4Interface | None = setting(
        scalar(optional(ipv4_interface, "unset")), None)
    mac: str | None = setting(scalar(optional(mac_address, "the port's own MAC")), None)


@dataclass(frozen=True)
class ExceptionConfig:
    """`dataplane.dpdk.exception`: the kernel interface of the exception path."""

    NOUN = "exception path settings (tap)"

    tap: str = setting(scalar(interface_name), "ssw0")


@dataclass(frozen=True)
class RateLimitConfig:
    """`dataplane.dpdk.rate_limit`: the rate-limit function's bucket per source."""

    NOUN = "rate limit settings (packets_per_sec, burst)"

    packets_per_sec: int = setting(scalar(int_range(1, 100_000_000, "packets per second")),
                                   10000)
    burst: int = setting(scalar(int_range(1, 1_000_000, "a number of packets")), 1000)


@dataclass(frozen=True)
class DpdkConfig:
    """`dataplane.dpdk`: EAL, the port, the service address, rewrite, rules."""

    NOUN = ("DPDK settings (lcores, memory, no_huge, vdevs, pci_allow, eal_extra, port, "
            "service, rewrite, backend_macs, exception, mbufs, reply_cache, park, rate_limit, "
            "rules)")

    lcores: int = setting(scalar(int_range(1, LCORES_MAX, "a number of fast-path threads")), 1)
    memory: int = setting(scalar(size_range(64 * 1024**2, 2**40)), "256MiB")
    no_huge: bool = setting(scalar(boolean), False)
    vdevs: tuple[str, ...] = setting(string_list("EAL --vdev arguments"), [])
    pci_allow: tuple[str, ...] = setting(string_list("PCI addresses"), [])
    eal_extra: tuple[str, ...] = setting(string_list("EAL arguments"), [])
    port: str | None = setting(scalar(optional(
        lambda raw: raw if isinstance(raw, str) and raw.strip() else _bad("a DPDK port name"),
        "unset")), None)
    service: ServiceConfig = setting(section(ServiceConfig), {})
    rewrite: str = setting(scalar(one_of(*REWRITES)), "l3")
    backend_macs: tuple[tuple[str, str], ...] = setting(mac_table, {})
    exception: ExceptionConfig | None = setting(
        lambda node, path, ctx: None if node.value is None
        else build(ExceptionConfig, node, path, ctx), {})
    mbufs: int = setting(scalar(int_range(1023, 1 << 24, "a number of packet buffers")), 8191)
    # Per lcore: finished get replies of small items, served without a lock
    # (ss_sw_reply_cache.c); 0 turns it off.
    reply_cache: int = setting(scalar(size_range(0, 2**32)), "4MiB")
    # Per lcore: gets parked while their values are read from the device
    # (ss_sw_mc.c); when all are taken a device hit goes to the kernel path.
    park: int = setting(scalar(int_range(1, 16384, "a number of parked requests")), 256)
    rate_limit: RateLimitConfig = setting(section(RateLimitConfig), {})
    # null: one rule sending memcached UDP through [memcached-cache,
    # memcached-route]; everything else goes to the kernel.
    rules: tuple[RuleConfig, ...] | None = setting(
        lambda node, path, ctx: None if node.value is None
        else list_of(RuleConfig, "rules")(node, path, ctx), None)

    def _check(self, node: Node, path: str) -> DpdkConfig:
        if self.rules is not None:
            if len(self.rules) > RULES_MAX:
                raise fail(f"expected at most {RULES_MAX} rules, got {len(self.rules)}",
                           node.child("rules"), join(path, "rules"))
            seen: dict[str, int] = {}
            for i, rule in enumerate(self.rules):
                if rule.name in seen:
                    raise ConfigError(f"duplicate rule name {rule.name!r} (also "
                                      f"{path}.rules[{seen[rule.name]}])",
                                      path=f"{path}.rules[{i}].name",
                                      line=node.line_of("rules", i, "name"))
                seen[rule.name] = i
        return self


@dataclass(frozen=True)
class DataplaneConfig:
    """`dataplane`: socket (kernel sockets only) or dpdk (switch mode)."""

    NOUN = "dataplane settings (mode, dpdk)"

    mode: str = setting(scalar(one_of("socket", "dpdk")), "socket")
    dpdk: DpdkConfig = setting(section(DpdkConfig), {})
    switch: bool = derived(False)

    def _check(self, node: Node, path: str) -> DataplaneConfig:
        if self.mode != "dpdk":
            return self
        d = self.dpdk
        at = join(path, "dpdk")
        if d.port is None:
            raise ConfigError("missing; switch mode needs the DPDK port facing the network "
                              "(a vdev name like net_af_packet0, or a PCI address)",
                              path=f"{at}.port", line=node.line_of("dpdk"))
        if d.service.address is None:
            raise ConfigError("missing; switch mode needs the appliance's IPv4 address with "
                              "its prefix, like 10.0.0.1/24",
                              path=f"{at}.service.address", line=node.line_of("dpdk", "service"))
        if not d.vdevs and not d.pci_allow:
            raise ConfigError("expected at least one vdev or PCI address, or DPDK has no port "
                              "to drive", path=f"{at}.vdevs", line=node.line_of("dpdk"))
        return dataclasses.replace(self, switch=True)


def default_rules(udp_port: int) -> tuple[RuleConfig, ...]:
    """What runs when dataplane.dpdk.rules is null."""
    return (RuleConfig(name="memcached-udp",
                       match=MatchConfig(protocol="udp", dst_port=udp_port,
                                         src=ipaddress.IPv4Network("0.0.0.0/0")),
                       chain=("memcached-cache", "memcached-route")),)


def check_switch(node: Node, dataplane: DataplaneConfig, listen: str,
                 udp_port: int | None) -> None:
    """Cross-section rules of switch mode (memcached.udp_port, memcached.listen)."""
    if not dataplane.switch:
        return
    if not udp_port:
        raise ConfigError("switch mode serves memcached over UDP: set a port (not null or 0)",
                          path="memcached.udp_port", line=node.line_of("memcached", "udp_port"))
    addr = str(dataplane.dpdk.service.address.ip)
    if listen not in (addr, "0.0.0.0"):
        raise ConfigError(f"in switch mode the kernel's listeners serve the service address: "
                          f"expected {addr} or 0.0.0.0, got {listen}",
                          path="memcached.listen", line=node.line_of("memcached", "listen"))


def describe_switch(dataplane: DataplaneConfig) -> str:
    """One phrase for the config summary."""
    d = dataplane.dpdk
    return (f"switch mode: DPDK port {d.port}, service {d.service.address}, rewrite {d.rewrite}, "
            f"{d.lcores} lcore(s), exception "
            f"{'tap ' + d.exception.tap if d.exception else 'off'}")
