"""Which back end owns a key: the ring, built exactly as the operator's clients build it.

SmartSwitch is put in front of a pool that libmemcached clients or twemproxy
already shard. Each key must go to the node those would pick, so the ketama
continuum is rebuilt here point for point:

* libmemcached (``MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED``, libmemcached/hosts.cc
  ``update_continuum``): each server gets
  ``floor(float32(weight / total * 160 / 4 * nservers + 1e-10)) * 4`` points,
  computed in single precision as the C does; point group ``N`` (from 0) is
  named ``"host-N"`` when the port is 11211 and ``"host:port-N"`` otherwise
  (``host`` as given to the client, not resolved), and each md5 digest of a
  name gives 4 points (its four little-endian 32-bit words).
* twemproxy (src/hashkit/nc_ketama.c ``ketama_update``): the same weight
  formula and 4 points per digest, with names ``"<name>-N"`` where ``name`` is
  the server's name from the config, or, when the server has none,
  ``"host"`` for port 11211 and ``"host:port"`` otherwise (nc_conf.c).

Points are sorted by value, ties in the order the references emit them (what
a stable sort gives; a tie between two different back ends needs two 32-bit
md5 words to collide, and how the references' qsort orders it is not
specified), and a key's owner is the first point whose value is >= the key's
hash, wrapping around.

Modula: libmemcached takes ``hash % nservers`` over the servers in order;
twemproxy repeats each server ``weight`` times (nc_modula.c), so its members
list does too.

The ring is plain data (no cffi). Key hashes and the lookup run in C only
(ss_hash_key, ss_ring_lookup), reached here through dataplane.fastpath, so
``smartswitch route`` and the data plane agree by construction.
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

DISTRIBUTIONS = ("ketama", "modula")
COMPATS = ("libmemcached", "twemproxy")

# libmemcached MEMCACHED_POINTS_PER_SERVER_KETAMA, twemproxy KETAMA_POINTS_PER_SERVER.
KETAMA_POINTS_PER_SERVER = 160
# Both take 4 points from each md5 digest of a point name.
KETAMA_POINTS_PER_HASH = 4
# Port both leave out of point names, for compatibility with old clients.
MEMCACHED_DEFAULT_PORT = 11211
# twemproxy formats point names into a 273-byte buffer (KETAMA_MAX_HOSTLEN)
# and hashes at most the 272 bytes that fit.
TWEMPROXY_MAX_POINT_NAME = 272


class RingError(ValueError):
    """The members cannot form a ring (bad weight, distribution or compat)."""


@dataclass(frozen=True)
class RingMember:
    """One back end as the ring sees it.

    Attributes:
        index: the back end's index in ss_routing_settings.backends; points
            and members refer to back ends by it.
        name: the back end's name; twemproxy compat names points from it
            (an empty name falls back to twemproxy's "host[:port]").
        host: the host exactly as the clients were given it (libmemcached
            names points from this string, not from a resolved address).
        port: TCP port.
        weight: relative share of the keys; >= 1 (libmemcached treats 0 as 1,
            twemproxy refuses it, so we refuse it too).
    """

    index: int
    name: str
    host: str
    port: int
    weight: int = 1


@dataclass(frozen=True)
class Ring:
    """A built ring, ready to hand to the data plane as a ss_ring_settings.

    Attributes:
        distribution: "ketama" or "modula".
        compat: "libmemcached" or "twemproxy".
        points: ketama only: (point, member index) pairs sorted by point.
        members: modula only: member indexes; the owner is members[hash % len].
    """

    distribution: str
    compat: str
    points: list[tuple[int, int]] = field(default_factory=list)
    members: list[int] = field(default_factory=list)


def _f32(x: float) -> float:
    """Round a double to the nearest IEEE single, as a C float assignment does."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


def ketama_points_per_server(weight: int, total_weight: int, nservers: int) -> int:
    """How many points a server gets, in the references' single-precision arithmetic.

    Both compute ``(float)w / (float)total`` then ``* 160 / 4 * (float)n``, each
    step rounded to float, add the double 1e-10, round to float, floor, times 4.
    Every intermediate here is rounded the same way (a double holds every
    float exactly and double-rounding of one float operation is exact).

    Args:
        weight: this server's weight.
        total_weight: sum of the weights of the servers on the ring.
        nservers: number of servers on the ring.

    Returns:
        The number of points, a multiple of 4.
    """
    pct = _f32(_f32(float(weight)) / _f32(float(total_weight)))
    x = _f32(pct * KETAMA_POINTS_PER_SERVER)
    x = _f32(x / 4)
    x = _f32(x * _f32(float(nservers)))
    x = _f32(x + 0.0000000001)
    return int(math.floor(x)) * 4


def point_prefix(member: RingMember, compat: str) -> str:
    """The text before "-N" in a member's point names under compat."""
    if compat == "twemproxy" and member.name:
        return member.name
    if member.port == MEMCACHED_DEFAULT_PORT:
        return member.host
    return f"{member.host}:{member.port}"


def _digest_points(name: bytes) -> list[int]:
    """The 4 points an md5 digest of name gives (ketama_server_hash / ketama_hash)."""
    return list(struct.unpack("<4I", hashlib.md5(name).digest()))


def _check_members(members: Sequence[RingMember]) -> None:
    if not members:
        raise RingError("a ring needs at least one back end")
    seen: set[int] = set()
    for m in members:
        if m.weight < 1:
            raise RingError(f"back end {m.name or m.host}: weight must be >= 1, got {m.weight}")
        if m.index < 0 or m.index in seen:
            raise RingError(f"back end {m.name or m.host}: index {m.index} is negative or repeated")
        seen.add(m.index)


def build_ring(members: Sequence[RingMember], distribution: str, compat: str) -> Ring:
    """Build the ring the reference named by compat would build for these back ends.

    Args:
        members: the back ends, in config order (which is the references'
            server order; libmemcached's sort_hosts behaviour is not modelled).
        distribution: "ketama" or "modula".
        compat: "libmemcached" or "twemproxy".

    Returns:
        The Ring: sorted points for ketama, the members list for modula.

    Raises:
        RingError: empty member list, weight < 1, repeated index, or an unknown
            distribution or compat.
    """
    if distribution not in DISTRIBUTIONS:
        raise RingError(f"distribution must be one of {', '.join(DISTRIBUTIONS)}, "
                        f"got {distribution!r}")
    if compat not in COMPATS:
        raise RingError(f"compat must be one of {', '.join(COMPATS)}, got {compat!r}")
    _check_members(members)

    if distribution == "modula":
        if compat == "twemproxy":
            order = [m.index for m in members for _ in range(m.weight)]
        else:
            order = [m.index for m in members]
        return Ring(distribution, compat, members=order)

    total = sum(m.weight for m in members)
    emitted: list[tuple[int, int, int]] = []  # (point, emit order, member index)
    for m in members:
        npoints = ketama_points_per_server(m.weight, total, len(members))
        prefix = point_prefix(m, compat)
        for group in range(npoints // KETAMA_POINTS_PER_HASH):
            name = f"{prefix}-{group}".encode()
            if compat == "twemproxy":
                name = name[:TWEMPROXY_MAX_POINT_NAME]
            for value in _digest_points(name):
                emitted.append((value, len(emitted), m.index))
    emitted.sort()
    return Ring(distribution, compat, points=[(p, idx) for p, _, idx in emitted])


def owner(ring: Ring, key: bytes, hash_name: str) -> int:
    """The member index that owns key, through the data plane's own C code.

    Args:
        ring: a ring from build_ring.
        key: the key as the client sends it.
        hash_name: the key hash, as named in routing.hash (e.g. "md5").

    Returns:
        The owning member's index (RingMember.index).
    """
    from dataplane import fastpath  # the compiled module is optional elsewhere

    return fastpath.ring_lookup(ring, fastpath.hash_key(hash_name, key))
