"""The ring: key hashes (C, via cffi), the ketama/modula builder and the lookup.

Pinned vectors, and how they were produced (2024, on Debian 12 x86-64):

* HASH_VECTORS: twemproxy's own src/hashkit/*.c (v0.5.0 sources, compiled
  under /tmp into a throwaway shared library) for all 11 hashes, and for the
  10 it has (not crc32a, not hsieh: Debian builds it without) libmemcached
  1.1.4's libhashkit (libhashkit.so.2, `libhashkit_<name>()` through ctypes),
  which agreed on every value.
* LIBMEMCACHED_OWNERS: pylibmc 1.6's bundled libmemcached 1.0.x,
  `Client.hash(key)` (memcached_generate_hash: the owning server's index) with
  behaviors ketama_weighted then hash, servers "host:port:weight".
* TWEMPROXY_OWNERS: nutcracker 0.5.0 (Debian) in front of five memcached
  with servers "127.0.0.1:<port>:<weight> mcN": keys set through it, then
  found on the back ends. With named servers the points depend only on the
  names, so the ports do not matter.

The live cross-checks at the end compare against libhashkit/libmemcached
through ctypes when those shared libraries are installed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import random

import pytest

from appliance.proxy.ring import (
    Ring,
    RingError,
    RingMember,
    build_ring,
    ketama_points_per_server,
    owner,
    point_prefix,
)

pytest.importorskip("dataplane._fastpath", reason="the C data plane is not built")

from dataplane import fastpath  # noqa: E402  (after the skip above)

HASH_KEYS = (b"", b"a", b"foo", b"hello world", b"user:1234:profile", b"0123456789abc",
             b"\x80", "caf\u00e9 \u2713".encode(), b"k" * 250)

HASH_VECTORS = {
    "md5": (0xd98c1dd4, 0xb975c10c, 0xdb18bdac, 0xbb3bb65e, 0xf72b6854, 0x71d9312d,
            0x7edd398d, 0x5a328d4e, 0x7f7b2f93),
    "crc32": (0x00000000, 0x000068b7, 0x00000c73, 0x00000d4a, 0x00006f60, 0x00004e68,
              0x00003fba, 0x0000232d, 0x00000497),
    "crc32a": (0x00000000, 0xe8b7be43, 0x8c736521, 0x0d4a1185, 0xef60c9b7, 0xce68ad26,
               0x3fba6cad, 0x232d4dd0, 0x04977bc1),
    "fnv1_64": (0x84222325, 0x8601b7be, 0x6ba13533, 0xb1910e6f, 0x205857fb, 0x0d0f5624,
                0x79fe485f, 0x5424e7f4, 0xee19992f),
    "fnv1a_64": (0x84222325, 0x8601ec8c, 0xfed9d577, 0x023cd2e7, 0xc891e897, 0x0bd2b7f6,
                 0x79fdec5f, 0xbaa166b2, 0x8cb408db),
    "fnv1_32": (0x811c9dc5, 0x050c5d7e, 0x408f5e13, 0x548da96f, 0x3522225b, 0x54a63804,
                0xfaf3a29f, 0xef7fbc34, 0x2c096bef),
    "fnv1a_32": (0x811c9dc5, 0xe40c292c, 0xa9f37ed7, 0xd58b3fa7, 0xb2e90f77, 0x8136b5b6,
                 0x04f3b29f, 0xf113b2d2, 0xdbece11b),
    "one_at_a_time": (0x00000000, 0xca2e9442, 0x238678dd, 0x3e4a5a57, 0x2eb60d9e, 0xcae77770,
                      0xc31d4e27, 0xdd7d5d30, 0x64ea6c90),
    "murmur": (0x00000000, 0x4b41757c, 0xc4e0338f, 0x5e19153b, 0x2199ba16, 0xc23faf3e,
               0x90556245, 0x16843ceb, 0xd8b0adcb),
    "jenkins": (0xdeadbefc, 0xe0a38690, 0x99f84f99, 0x153343fb, 0x42443da9, 0x37f93ead,
                0xb16fde48, 0xbcf01a84, 0x4afa8cb0),
    "hsieh": (0x00000000, 0x93642e87, 0x76d4d427, 0x4f799873, 0x2b33ae2d, 0x9aefedfa,
              0xd6f4cb32, 0xf8f21f38, 0x601dfad4),
}

OWNER_KEYS = tuple(b"k%d" % i for i in range(16)) + (b"user:42", b"session/abcdef",
                                                      "caf\u00e9".encode())


def _local(weights: tuple[int, ...], named: bool = False) -> list[RingMember]:
    return [RingMember(i, f"mc{i + 1}" if named else "", "127.0.0.1", 11301 + i, w)
            for i, w in enumerate(weights)]


MIXED = [RingMember(0, "a", "127.0.0.1", 11211, 2), RingMember(1, "b", "10.0.0.2", 11211, 1),
         RingMember(2, "c", "cache-3.example", 11212, 3)]

# (members, hash, owners of OWNER_KEYS) from libmemcached (see the module docstring).
LIBMEMCACHED_OWNERS = [
    (_local((1, 2, 3, 1, 5)), "md5",
     (4, 0, 2, 4, 4, 2, 4, 4, 4, 4, 4, 2, 4, 4, 4, 1, 4, 2, 0)),
    # total weight 25 over 5 servers: single-precision rounding gives the
    # weight-1 server 28 points where double precision would give 32.
    (_local((1, 2, 3, 4, 15)), "md5",
     (4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 2, 4, 4, 3, 4, 4, 2, 0)),
    # port 11211 is left out of the point names ("host-N").
    (MIXED, "md5", (2, 2, 0, 0, 0, 2, 0, 0, 2, 1, 0, 2, 2, 1, 2, 2, 1, 1, 2)),
    (_local((1, 2, 3, 1, 5)), "fnv1a_64",
     (2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 3, 2, 4)),
]

# (distribution, hash, owners of OWNER_KEYS) from nutcracker, servers mc1..mc5 weights 1,2,3,1,5.
TWEMPROXY_OWNERS = [
    ("ketama", "md5", (4, 4, 1, 2, 4, 4, 2, 4, 0, 1, 3, 2, 4, 0, 1, 0, 4, 4, 2)),
    ("ketama", "murmur", (3, 2, 2, 4, 3, 1, 4, 4, 2, 4, 2, 4, 2, 1, 4, 4, 1, 2, 4)),
    ("modula", "crc32a", (2, 1, 2, 2, 1, 2, 3, 2, 4, 4, 2, 4, 2, 2, 0, 3, 4, 2, 2)),
]


# ------------------------------------------------------------------ hashes


@pytest.mark.parametrize("name", sorted(HASH_VECTORS))
def test_hash_vectors(name: str) -> None:
    got = tuple(fastpath.hash_key(name, key) for key in HASH_KEYS)
    assert got == HASH_VECTORS[name]


def test_hash_names_cover_the_enum() -> None:
    _, lib = fastpath.load()
    assert set(HASH_VECTORS) == set(fastpath.HASH_NAMES)
    assert len(fastpath.HASH_NAMES) == lib.SS_HASH__COUNT
    for i, name in enumerate(fastpath.HASH_NAMES):
        assert getattr(lib, "SS_HASH_" + name.upper()) == i


def test_unknown_hash_name_is_refused() -> None:
    with pytest.raises(fastpath.InvalidArgumentError):
        fastpath.hash_key("sha1", b"x")


def test_crc32_is_the_top_15_bits_of_crc32a() -> None:
    rnd = random.Random(5)
    for _ in range(200):
        key = rnd.randbytes(rnd.randrange(0, 64))
        assert fastpath.hash_key("crc32", key) == (fastpath.hash_key("crc32a", key) >> 16) & 0x7FFF


# ------------------------------------------------------------------ builder


def test_points_per_server_single_precision() -> None:
    assert [ketama_points_per_server(w, 12, 5) for w in (1, 2, 3, 1, 5)] == [64, 132, 200, 64, 332]
    assert ketama_points_per_server(1, 1, 1) == 160
    # double precision would give 32 here; libmemcached and twemproxy give 28
    assert ketama_points_per_server(1, 25, 5) == 28


@pytest.mark.parametrize("compat", ["libmemcached", "twemproxy"])
def test_ketama_ring_shape(compat: str) -> None:
    ring = build_ring(_local((1, 2, 3, 1, 5), named=True), "ketama", compat)
    assert ring.distribution == "ketama" and ring.compat == compat and ring.members == []
    assert len(ring.points) == 64 + 132 + 200 + 64 + 332
    assert [p for p, _ in ring.points] == sorted(p for p, _ in ring.points)
    counts = [sum(1 for _, m in ring.points if m == i) for i in range(5)]
    assert counts == [64, 132, 200, 64, 332]


def test_equal_weights_give_160_points_each() -> None:
    ring = build_ring(_local((1, 1, 1)), "ketama", "libmemcached")
    assert len(ring.points) == 480


def test_point_names() -> None:
    m = RingMember(0, "mc1", "127.0.0.1", 11300, 1)
    assert point_prefix(m, "libmemcached") == "127.0.0.1:11300"
    assert point_prefix(m, "twemproxy") == "mc1"
    d = RingMember(0, "", "10.1.2.3", 11211, 1)
    assert point_prefix(d, "libmemcached") == "10.1.2.3"
    assert point_prefix(d, "twemproxy") == "10.1.2.3"
    assert point_prefix(RingMember(0, "", "h", 1, 1), "twemproxy") == "h:1"


def test_member_indexes_are_kept() -> None:
    members = [RingMember(7, "x", "127.0.0.1", 1, 1), RingMember(3, "y", "127.0.0.1", 2, 1)]
    ring = build_ring(members, "ketama", "twemproxy")
    assert {m for _, m in ring.points} == {3, 7}
    assert build_ring(members, "modula", "libmemcached").members == [7, 3]


def test_modula_members() -> None:
    members = _local((1, 3, 2))
    assert build_ring(members, "modula", "libmemcached").members == [0, 1, 2]
    assert build_ring(members, "modula", "twemproxy").members == [0, 1, 1, 1, 2, 2]


@pytest.mark.parametrize(("members", "distribution", "compat"), [
    ([], "ketama", "libmemcached"),
    ([RingMember(0, "a", "h", 1, 0)], "ketama", "libmemcached"),
    ([RingMember(0, "a", "h", 1, 1), RingMember(0, "b", "h", 2, 1)], "ketama", "twemproxy"),
    ([RingMember(-1, "a", "h", 1, 1)], "modula", "twemproxy"),
    ([RingMember(0, "a", "h", 1, 1)], "random", "twemproxy"),
    ([RingMember(0, "a", "h", 1, 1)], "ketama", "spymemcached"),
])
def test_bad_rings_are_refused(members: list[RingMember], distribution: str, compat: str) -> None:
    with pytest.raises(RingError):
        build_ring(members, distribution, compat)


# ------------------------------------------------------------------ lookup


def test_ketama_lookup_lower_bound_and_wrap() -> None:
    ring = Ring("ketama", "twemproxy", points=[(100, 1), (200, 2), (300, 3)])
    assert fastpath.ring_lookup(ring, 0) == 1
    assert fastpath.ring_lookup(ring, 100) == 1     # equal: that point
    assert fastpath.ring_lookup(ring, 101) == 2
    assert fastpath.ring_lookup(ring, 300) == 3
    assert fastpath.ring_lookup(ring, 301) == 1     # past the last: wraps
    assert fastpath.ring_lookup(ring, 0xFFFFFFFF) == 1


@pytest.mark.parametrize("npoints", [1, 2, 3, 160, 161, 480, 5000, 70000])
def test_indexed_lookup_agrees_with_the_binary_search(npoints: int) -> None:
    """The data plane looks keys up through a slice index; a ring without one
    by binary search. Both must pick the same point everywhere,
    including ties, empty slices, both ends of the hash space and the wrap."""
    rnd = random.Random(npoints)
    values = sorted(rnd.choice((0, 1, 0xFFFFFFFF, rnd.getrandbits(32), rnd.getrandbits(12) << 20))
                    for _ in range(npoints))
    ring = Ring("ketama", "libmemcached", points=[(v, i % 7) for i, v in enumerate(values)])
    probes = [0, 1, 0xFFFFFFFE, 0xFFFFFFFF] + values + [v + 1 for v in values if v < 0xFFFFFFFF]
    probes += [rnd.getrandbits(32) for _ in range(3000)]
    for h in probes:
        assert fastpath.ring_lookup(ring, h) == fastpath.ring_lookup(ring, h, indexed=False), h


def test_ketama_lookup_ties_take_the_first() -> None:
    ring = Ring("ketama", "libmemcached", points=[(5, 0), (9, 4), (9, 2), (12, 1)])
    assert fastpath.ring_lookup(ring, 6) == 4


def test_modula_lookup() -> None:
    ring = Ring("modula", "twemproxy", members=[0, 1, 1, 2])
    assert [fastpath.ring_lookup(ring, h) for h in range(6)] == [0, 1, 1, 2, 0, 1]


def test_empty_rings_answer_minus_one() -> None:
    assert fastpath.ring_lookup(Ring("ketama", "twemproxy"), 5) == -1
    assert fastpath.ring_lookup(Ring("modula", "twemproxy"), 5) == -1


def test_single_member_owns_everything() -> None:
    ring = build_ring([RingMember(4, "only", "127.0.0.1", 11211, 3)], "ketama", "libmemcached")
    assert {owner(ring, b"key%d" % i, "md5") for i in range(500)} == {4}


# ------------------------------------------------------- pinned owner vectors


@pytest.mark.parametrize(("members", "hash_name", "want"), LIBMEMCACHED_OWNERS)
def test_owner_vectors_libmemcached(members: list[RingMember], hash_name: str,
                                    want: tuple[int, ...]) -> None:
    ring = build_ring(members, "ketama", "libmemcached")
    assert tuple(owner(ring, k, hash_name) for k in OWNER_KEYS) == want


@pytest.mark.parametrize(("distribution", "hash_name", "want"), TWEMPROXY_OWNERS)
def test_owner_vectors_twemproxy(distribution: str, hash_name: str,
                                 want: tuple[int, ...]) -> None:
    ring = build_ring(_local((1, 2, 3, 1, 5), named=True), distribution, "twemproxy")
    assert tuple(owner(ring, k, hash_name) for k in OWNER_KEYS) == want


# ------------------------------------------- live cross-checks (when installed)


def _cdll(name: str) -> ctypes.CDLL:
    path = ctypes.util.find_library(name)
    if path is None:
        pytest.skip(f"lib{name} not installed (Debian: libmemcached-dev)")
    return ctypes.CDLL(path)


# libhashkit's names for our hashes (crc32a is twemproxy's only).
_LIBHASHKIT = {"md5": "md5", "crc32": "crc32", "fnv1_64": "fnv1_64", "fnv1a_64": "fnv1a_64",
               "fnv1_32": "fnv1_32", "fnv1a_32": "fnv1a_32", "one_at_a_time": "one_at_a_time",
               "murmur": "murmur", "jenkins": "jenkins", "hsieh": "hsieh"}
# hashkit_hash_algorithm_t values, for libhashkit_has_algorithm().
_HASHKIT_ALGO = {"hsieh": 7, "murmur": 8}


def test_hashes_match_installed_libhashkit() -> None:
    hk = _cdll("hashkit")
    rnd = random.Random(11)
    keys = [rnd.randbytes(rnd.randrange(0, 300)) for _ in range(400)]
    for ours, theirs in _LIBHASHKIT.items():
        if ours in _HASHKIT_ALGO and not hk.libhashkit_has_algorithm(_HASHKIT_ALGO[ours]):
            continue
        fn = getattr(hk, "libhashkit_" + theirs)
        fn.restype = ctypes.c_uint32
        fn.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
        for key in keys:
            assert fastpath.hash_key(ours, key) == fn(key, len(key)), (ours, key)


def test_owner_matches_installed_libmemcached() -> None:
    lm = _cdll("memcached")
    lm.memcached_create.restype = ctypes.c_void_p
    lm.memcached_create.argtypes = [ctypes.c_void_p]
    lm.memcached_free.argtypes = [ctypes.c_void_p]
    lm.memcached_server_add_with_weight.argtypes = [ctypes.c_void_p, ctypes.c_char_p,
                                                    ctypes.c_ushort, ctypes.c_uint32]
    lm.memcached_behavior_set.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint64]
    lm.memcached_generate_hash.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
    lm.memcached_generate_hash.restype = ctypes.c_uint32
    behavior_ketama_weighted = 16  # MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED
    rnd = random.Random(12)
    keys = [b"key-%d-%x" % (i, rnd.getrandbits(32)) for i in range(3000)]
    for members in (_local((1, 2, 3, 1, 5)), _local((1, 2, 3, 4, 15)), MIXED):
        memc = lm.memcached_create(None)
        try:
            for m in members:
                assert lm.memcached_server_add_with_weight(memc, m.host.encode(), m.port,
                                                           m.weight) == 0
            assert lm.memcached_behavior_set(memc, behavior_ketama_weighted, 1) == 0
            ring = build_ring(members, "ketama", "libmemcached")
            for key in keys:
                assert owner(ring, key, "md5") == lm.memcached_generate_hash(memc, key, len(key))
        finally:
            lm.memcached_free(memc)


def test_twemproxy_truncates_long_point_names() -> None:
    long_a = RingMember(0, "n" * 300 + "a", "127.0.0.1", 1, 1)
    long_b = RingMember(0, "n" * 300 + "b", "127.0.0.1", 1, 1)
    # twemproxy hashes only the first 272 bytes of "<name>-N": same points
    assert build_ring([long_a], "ketama", "twemproxy").points == \
        build_ring([long_b], "ketama", "twemproxy").points
