"""Proxy-mode sections of the config: back ends, their defaults, spare pools, routing.

A non-empty ``backends`` list turns proxy mode on; without it the appliance is
standalone and these sections change nothing. Per-back-end timeouts and the
failure policy may be written on each back end or once in
``backend_defaults``; after loading, every BackendConfig carries its resolved
values (never None), so nothing downstream looks at the defaults again.

The word lists below are in the order of the C enums in
dataplane/include/ss_proxy.h (their index is the value C receives);
tests/unit/test_config_proxy.py checks HASHES against the built data plane.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from appliance.config.schema import (
    UINT32_MAX,
    Context,
    boolean,
    build,
    duration_ms,
    fail,
    identifier,
    int_range,
    ip_literal,
    join,
    one_of,
    optional,
    scalar,
    setting,
    size_range,
)
from appliance.config.yaml_source import ConfigError, Node, describe

# enum ss_hash_kind (SS_HASHES in ss_proxy.h), in order.
HASHES: tuple[str, ...] = ("md5", "crc32", "crc32a", "fnv1_64", "fnv1a_64", "fnv1_32",
                           "fnv1a_32", "one_at_a_time", "murmur", "jenkins", "hsieh")
# enum ss_distribution, ss_failure_policy, ss_admission.
DISTRIBUTIONS: tuple[str, ...] = ("ketama", "modula")
FAILURE_POLICIES: tuple[str, ...] = ("eject", "fail", "failover")
ADMISSIONS: tuple[str, ...] = ("always", "second_hit", "never")
COMPATS: tuple[str, ...] = ("libmemcached", "twemproxy")

# Fields a back end may set itself or inherit from backend_defaults.
INHERITED = ("connect_timeout", "request_timeout", "failure_limit", "retry_after",
             "failure_policy", "failover_pool")

_CONNECT_TIMEOUT = duration_ms(1, 60_000)
_REQUEST_TIMEOUT = duration_ms(1, 3_600_000)
_FAILURE_LIMIT = int_range(1, 1000, "a number of failures")
_RETRY_AFTER = duration_ms(10, 3_600_000)
_POLICY = one_of(*FAILURE_POLICIES)
_DEFAULT = "the backend_defaults value"


@dataclass(frozen=True)
class BackendDefaultsConfig:
    """`backend_defaults`: what a back end uses for the settings it leaves out."""

    NOUN = "back-end defaults"

    connect_timeout: int = setting(scalar(_CONNECT_TIMEOUT), "200ms")
    request_timeout: int = setting(scalar(_REQUEST_TIMEOUT), "500ms")
    failure_limit: int = setting(scalar(_FAILURE_LIMIT), 3)
    retry_after: int = setting(scalar(_RETRY_AFTER), "1s")
    failure_policy: str = setting(scalar(_POLICY), "eject")
    failover_pool: str | None = setting(scalar(optional(identifier, "none")), None)


@dataclass(frozen=True)
class BackendConfig:
    """An entry of `backends` or of a spare pool: one memcached >= 1.6 node.

    Durations are in milliseconds. The inherited fields are None only while
    the file is being validated; a loaded Config has them resolved.
    """

    NOUN = "back ends"

    name: str = setting(scalar(identifier))
    host: str = setting(scalar(ip_literal))
    port: int = setting(scalar(int_range(1, 65535, "a port number")))
    weight: int = setting(scalar(int_range(1, 1_000_000, "a weight")), 1)
    connect_timeout: int = setting(scalar(optional(_CONNECT_TIMEOUT, _DEFAULT)), None)
    request_timeout: int = setting(scalar(optional(_REQUEST_TIMEOUT, _DEFAULT)), None)
    failure_limit: int = setting(scalar(optional(_FAILURE_LIMIT, _DEFAULT)), None)
    retry_after: int = setting(scalar(optional(_RETRY_AFTER, _DEFAULT)), None)
    failure_policy: str = setting(scalar(optional(_POLICY, _DEFAULT)), None)
    failover_pool: str | None = setting(scalar(optional(identifier, _DEFAULT)), None)

    @property
    def address(self) -> str:
        """HOST:PORT as logs and the CLI show it (IPv6 in brackets)."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def identity(self) -> tuple[str, str, int]:
        """What must stay equal for a reload to carry this back end's state over."""
        return (self.name, self.host, self.port)


@dataclass(frozen=True)
class SparePoolConfig:
    """An entry of `spare_pools`: back ends that take over for failover."""

    name: str
    backends: tuple[BackendConfig, ...]


@dataclass(frozen=True)
class RoutingConfig:
    """`routing`: how keys map to back ends and what is kept locally."""

    NOUN = "routing settings"

    distribution: str = setting(scalar(one_of(*DISTRIBUTIONS)), "ketama")
    hash: str = setting(scalar(one_of(*HASHES)), "md5")
    compat: str = setting(scalar(one_of(*COMPATS)), "libmemcached")
    connections_per_backend: int = setting(
        scalar(int_range(1, 64, "a number of connections")), 2)
    admission: str = setting(scalar(one_of(*ADMISSIONS)), "always")
    admission_window: int = setting(scalar(duration_ms(1, UINT32_MAX)), "10s")
    admission_max_size: int = setting(scalar(size_range(0, UINT32_MAX)), "256KiB")
    local_ttl_max: int = setting(scalar(duration_ms(0, UINT32_MAX // 1000 * 1000,
                                                    whole_seconds=True)), "60s")
    allow_flush_all: bool = setting(scalar(boolean), False)


def spare_pools(node: Node, path: str, ctx: Context) -> tuple[SparePoolConfig, ...]:
    """Converter for `spare_pools`: a mapping of pool name -> list of back ends."""
    if node.value is None:
        return ()
    if not isinstance(node.value, dict):
        raise fail(f"expected a mapping of spare pool name to a list of back ends, got "
                   f"{describe(node)}", node, path)
    pools = []
    for name, child in node.value.items():
        at = join(path, name)
        line = node.key_lines.get(name, node.line)
        try:
            identifier(name)
        except ValueError as exc:
            raise ConfigError(f"expected {exc} as a spare pool name, got {name!r}",
                              path=at, line=line) from None
        if not isinstance(child.value, list) or not child.value:
            got = "an empty list" if child.value == [] else describe(child)
            raise fail(f"expected a list of at least one back end, got {got}", child, at)
        members = tuple(build(BackendConfig, item, f"{at}[{i}]", ctx)
                        for i, item in enumerate(child.value))
        pools.append(SparePoolConfig(name, members))
    return tuple(pools)


# ------------------------------------------------------------ cross-checks


@dataclass(frozen=True)
class _Slot:
    """Where one back end was written: for messages and line numbers."""

    path: str            # e.g. backends[2] or spare_pools.spare[0]
    steps: tuple[Any, ...]  # Node.child steps to its mapping
    spare: bool


def _slots(backends: tuple[BackendConfig, ...],
           pools: tuple[SparePoolConfig, ...]) -> list[tuple[BackendConfig, _Slot]]:
    out = [(b, _Slot(f"backends[{i}]", ("backends", i), False))
           for i, b in enumerate(backends)]
    for pool in pools:
        out += [(b, _Slot(f"spare_pools.{pool.name}[{i}]", ("spare_pools", pool.name, i), True))
                for i, b in enumerate(pool.backends)]
    return out


def check_proxy(root: Node, backends: tuple[BackendConfig, ...],
                defaults: BackendDefaultsConfig, pools: tuple[SparePoolConfig, ...],
                own_address: tuple[str, int]) -> tuple[tuple[BackendConfig, ...],
                                                       tuple[SparePoolConfig, ...]]:
    """Cross-field rules of the proxy sections; resolve inherited settings.

    Args:
        root: the document's root node (for line numbers).
        backends: `backends` as converted.
        defaults: `backend_defaults`.
        pools: `spare_pools` as converted.
        own_address: (memcached.listen, memcached.tcp_port): a back end there
            would be the appliance itself.

    Returns:
        (backends, spare pools) with every inherited field resolved.

    Raises:
        ConfigError: the first rule broken, at the field to change.
    """
    if pools and not backends:
        raise fail("spare pools serve proxy mode only; add a backends list or remove "
                   "spare_pools", root.child("spare_pools"), "spare_pools")
    pool_names = [p.name for p in pools]
    if defaults.failover_pool is not None and defaults.failover_pool not in pool_names:
        raise _no_such_pool(defaults.failover_pool, pool_names, "backend_defaults.failover_pool",
                            root.line_of("backend_defaults", "failover_pool"))
    names: dict[str, str] = {}
    addresses: dict[tuple[str, int], str] = {}
    for backend, slot in _slots(backends, pools):
        if backend.name in names:
            raise ConfigError(f"duplicate name {backend.name!r} (also {names[backend.name]})",
                              path=f"{slot.path}.name", line=root.line_of(*slot.steps, "name"))
        names[backend.name] = slot.path
        key = (backend.host, backend.port)
        if key in addresses:
            raise ConfigError(f"duplicate address {backend.address} (also {addresses[key]})",
                              path=f"{slot.path}.port", line=root.line_of(*slot.steps, "port"))
        addresses[key] = slot.path
        if key == own_address:
            raise ConfigError(f"{backend.address} is this appliance's own memcached.listen and "
                              f"tcp_port; a back end must be another server",
                              path=f"{slot.path}.port", line=root.line_of(*slot.steps, "port"))
    resolved = [_resolve(b, slot, defaults, pool_names, root) for b, slot in
                _slots(backends, pools)]
    out_backends = tuple(resolved[:len(backends)])
    rest = resolved[len(backends):]
    out_pools = []
    for pool in pools:
        out_pools.append(dataclasses.replace(pool, backends=tuple(rest[:len(pool.backends)])))
        rest = rest[len(pool.backends):]
    return out_backends, tuple(out_pools)


def _no_such_pool(name: str, pool_names: list[str], path: str,
                  line: int | None) -> ConfigError:
    known = f" ({', '.join(pool_names)})" if pool_names else " (there are none)"
    return ConfigError(f"expected the name of a pool in spare_pools{known}, got {name!r}",
                       path=path, line=line)


def _resolve(backend: BackendConfig, slot: _Slot, defaults: BackendDefaultsConfig,
             pool_names: list[str], root: Node) -> BackendConfig:
    """Fill a back end's left-out settings from backend_defaults and check its policy."""
    values = {f: getattr(backend, f) if getattr(backend, f) is not None else getattr(defaults, f)
              for f in INHERITED}
    own_policy = backend.failure_policy is not None
    policy_at = (f"{slot.path}.failure_policy", root.line_of(*slot.steps, "failure_policy")) \
        if own_policy else ("backend_defaults.failure_policy",
                            root.line_of("backend_defaults", "failure_policy"))
    pool_at = (f"{slot.path}.failover_pool", root.line_of(*slot.steps, "failover_pool"))
    if slot.spare and values["failure_policy"] == "failover":
        if own_policy:
            raise ConfigError("a back end in a spare pool can't fail over further; use eject "
                              "or fail", path=policy_at[0], line=policy_at[1])
        # An inherited failover means "stay within this pool" for spares.
        values["failure_policy"] = "eject"
    if values["failure_policy"] == "failover":
        if values["failover_pool"] is None:
            known = ", ".join(pool_names) if pool_names else "none are defined"
            raise ConfigError(f"failure_policy failover needs failover_pool, the name of a "
                              f"pool in spare_pools ({known})", path=policy_at[0],
                              line=policy_at[1])
        if backend.failover_pool is not None and backend.failover_pool not in pool_names:
            raise _no_such_pool(backend.failover_pool, pool_names, *pool_at)
    elif backend.failover_pool is not None:
        raise ConfigError(f"failover_pool is used only with failure_policy failover (this "
                          f"back end's is {values['failure_policy']})", path=pool_at[0],
                          line=pool_at[1])
    else:
        values["failover_pool"] = None
    return dataclasses.replace(backend, **values)


# ------------------------------------------------------------------ helpers


def all_backends(backends: tuple[BackendConfig, ...],
                 pools: tuple[SparePoolConfig, ...]) -> tuple[BackendConfig, ...]:
    """Every back end in data-plane index order: the primary list, then each pool's."""
    out = list(backends)
    for pool in pools:
        out += pool.backends
    return tuple(out)


def describe_proxy(backends: tuple[BackendConfig, ...], pools: tuple[SparePoolConfig, ...],
                   routing: RoutingConfig) -> str:
    """The proxy part of the config summary line."""
    spare = "".join(f", spare pool {p.name}: {len(p.backends)}" for p in pools)
    return (f"proxy to {len(backends)} back ends ({routing.distribution} {routing.hash} "
            f"{routing.compat}{spare})")
