/*
 * ss_ring.c - which back end owns a key: the key hash and the ring lookup.
 *
 * The ring itself (ketama points, modula members) is built by the control
 * plane (appliance/proxy/ring.py) exactly as libmemcached or twemproxy build
 * theirs; here are only the two pure steps every request takes, shared with
 * `smartswitch route` through cffi so the CLI and the data path agree.
 */
#include "ss_hashkit.h"
#include "ss_proxy.h"

typedef uint32_t (*ss_hashkit_fn)(const char *key, size_t len);

/* Indexed by enum ss_hash_kind; the order is SS_HASHES'. */
static const ss_hashkit_fn ss_hash_fns[SS_HASH__COUNT] = {
    [SS_HASH_MD5] = ss_hashkit_md5,
    [SS_HASH_CRC32] = ss_hashkit_crc32,
    [SS_HASH_CRC32A] = ss_hashkit_crc32a,
    [SS_HASH_FNV1_64] = ss_hashkit_fnv1_64,
    [SS_HASH_FNV1A_64] = ss_hashkit_fnv1a_64,
    [SS_HASH_FNV1_32] = ss_hashkit_fnv1_32,
    [SS_HASH_FNV1A_32] = ss_hashkit_fnv1a_32,
    [SS_HASH_ONE_AT_A_TIME] = ss_hashkit_one_at_a_time,
    [SS_HASH_MURMUR] = ss_hashkit_murmur,
    [SS_HASH_JENKINS] = ss_hashkit_jenkins,
    [SS_HASH_HSIEH] = ss_hashkit_hsieh,
};

/*
 * The key hash `kind` (enum ss_hash_kind) of key[0..len), as libmemcached
 * and twemproxy compute it. An unknown kind falls back to md5 (the config
 * layer rejects unknown names, so this is only a guard against a bad cast).
 */
uint32_t ss_hash_key(uint32_t kind, const void *key, size_t len)
{
    if (kind >= SS_HASH__COUNT)
        kind = SS_HASH_MD5;
    return ss_hash_fns[kind]((const char *)key, len);
}

/* The first ketama point >= hash (npoints if none): within the hash's
 * slice when the ring has an index, else by binary search. */
static uint32_t first_at_or_above(const struct ss_ring_settings *ring, uint32_t hash)
{
    uint32_t lo = 0, hi = ring->npoints;
    if (ring->index) {
        uint32_t slice = ring->index_bits ? hash >> (32 - ring->index_bits) : 0;
        lo = ring->index[slice];
        hi = ring->index[slice + 1];
        while (lo < hi && ring->points[lo].point < hash)
            lo++;
        return lo;
    }
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (ring->points[mid].point < hash)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

uint32_t ss_ring_index_bits(uint32_t npoints)
{
    uint32_t bits = 0;
    while (bits < 16 && (1u << bits) < npoints)
        bits++;
    return bits;
}

void ss_ring_index_build(const struct ss_ring_settings *ring, uint32_t bits, uint32_t *index)
{
    uint32_t nslices = 1u << bits, p = 0;
    for (uint32_t s = 0; s < nslices; s++) {
        uint64_t start = (uint64_t)s << (32 - bits);
        while (p < ring->npoints && ring->points[p].point < start)
            p++;
        index[s] = p;
    }
    index[nslices] = ring->npoints;
}

/*
 * The back-end index that owns `hash` on `ring`. Ketama: the first point
 * whose value is >= hash, wrapping to the first point past the end (the
 * lower-bound search libmemcached's dispatch_host and twemproxy's
 * ketama_dispatch both use, so equal points resolve alike). Modula:
 * members[hash % nmembers] (twemproxy lists a member once per unit of
 * weight; libmemcached once). Returns UINT32_MAX for an empty ring.
 */
uint32_t ss_ring_lookup(const struct ss_ring_settings *ring, uint32_t hash)
{
    if (ring == NULL)
        return UINT32_MAX;
    if (ring->distribution == SS_DIST_MODULA) {
        if (ring->nmembers == 0 || ring->members == NULL)
            return UINT32_MAX;
        return ring->members[hash % ring->nmembers];
    }
    if (ring->npoints == 0 || ring->points == NULL)
        return UINT32_MAX;
    uint32_t lo = first_at_or_above(ring, hash);
    if (lo == ring->npoints)
        lo = 0;
    return ring->points[lo].backend;
}

uint32_t ss_ring_walk(const struct ss_ring_settings *ring, uint32_t hash,
                      int (*usable)(const void *ctx, uint32_t backend), const void *ctx)
{
    if (ring == NULL)
        return UINT32_MAX;
    if (ring->distribution == SS_DIST_MODULA) {
        if (ring->nmembers == 0 || ring->members == NULL)
            return UINT32_MAX;
        uint32_t start = hash % ring->nmembers;
        for (uint32_t i = 0; i < ring->nmembers; i++) {
            uint32_t b = ring->members[(start + i) % ring->nmembers];
            if (usable(ctx, b))
                return b;
        }
        return UINT32_MAX;
    }
    if (ring->npoints == 0 || ring->points == NULL)
        return UINT32_MAX;
    uint32_t lo = first_at_or_above(ring, hash);
    for (uint32_t i = 0; i < ring->npoints; i++) {
        uint32_t b = ring->points[(lo + i) % ring->npoints].backend;
        if (usable(ctx, b))
            return b;
    }
    return UINT32_MAX;
}
