"""The routing table a config asks for: every back end and one ring per pool.

``routing_settings(config, states)`` is the struct ss_routing_settings a config asks
for: every back end (primary, then each spare pool, which is the index order C uses),
ring 0 over ``backends`` and one ring per spare pool, built by appliance.proxy.ring
exactly as libmemcached or twemproxy would. Pure: the applier is
appliance.runtime.reload.Reloader, which pushes it into the data plane.
"""

from __future__ import annotations

from appliance.config import BackendConfig, Config
from appliance.config.proxy import ADMISSIONS, DISTRIBUTIONS, FAILURE_POLICIES, HASHES
from appliance.proxy import ring
from dataplane.fastpath import (
    BACKEND_STATES,
    BackendSettings,
    RingSettings,
    RoutingSettings,
)

PRIMARY_RING = "backends"

Identity = tuple[str, str, int]


def routing_settings(config: Config,
                     states: dict[Identity, str] | None = None) -> RoutingSettings | None:
    """The routing table config asks for (None in standalone mode).

    Args:
        config: a validated config.
        states: state by back-end identity to install with (default up).

    Returns:
        The table for Dataplane.set_routing.

    Raises:
        ring.RingError: a ring can't be built (validation should prevent it).
    """
    if not config.proxy:
        return None
    states = states or {}
    everyone = config.all_backends
    pools = [p.name for p in config.spare_pools]
    backends = tuple(
        BackendSettings(
            name=b.name, host=b.host, port=b.port, weight=b.weight,
            connect_timeout_ms=b.connect_timeout, request_timeout_ms=b.request_timeout,
            failure_limit=b.failure_limit, policy=FAILURE_POLICIES.index(b.failure_policy),
            failover_ring=1 + pools.index(b.failover_pool) if b.failover_pool else -1,
            initial_state=BACKEND_STATES.index(states.get(b.identity, "up")))
        for b in everyone)
    routing = config.routing
    rings = []
    first = 0
    for name, members in [(PRIMARY_RING, config.backends)] + [
            (p.name, p.backends) for p in config.spare_pools]:
        built = build_ring(config, members, first)
        rings.append(RingSettings(name, DISTRIBUTIONS.index(routing.distribution),
                                  tuple(built.points), tuple(built.members)))
        first += len(members)
    return RoutingSettings(
        hash=HASHES.index(routing.hash), backends=backends, rings=tuple(rings),
        connections_per_backend=routing.connections_per_backend,
        admission=ADMISSIONS.index(routing.admission),
        admission_window_ms=routing.admission_window,
        admission_max_bytes=routing.admission_max_size,
        local_ttl_max_s=routing.local_ttl_max // 1000,
        allow_flush_all=routing.allow_flush_all,
        # Switch mode forwards get misses as packets, without fills: its
        # copies come from the sets it sees.
        write_allocate=config.dataplane.mode == "dpdk")


def build_ring(config: Config, members: tuple[BackendConfig, ...], first: int = 0) -> ring.Ring:
    """The ring over members (data-plane indexes from first) as config.routing says.

    Ring 0, over config.backends from index 0, is where keys go while their
    owner is up; `smartswitch route` asks it too.
    """
    return ring.build_ring([ring.RingMember(first + i, b.name, b.host, b.port, b.weight)
                            for i, b in enumerate(members)],
                           config.routing.distribution, config.routing.compat)
