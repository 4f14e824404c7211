/*
 * ss_proxy.h - proxy mode: routing keys to back-end memcached nodes.
 *
 * The control plane builds the ring (appliance/proxy/ring.py computes ketama
 * points exactly as libmemcached or twemproxy do) and hands it over as a
 * table with ss_dataplane_set_routing(); the data plane copies it into a
 * routing table it owns and swaps it in atomically. Workers never wait on the
 * control plane: an old table is freed only after every worker has passed a
 * quiescent point.
 *
 * Back ends are spoken to in memcached 1.6's protocol: a miss is fetched as
 * `mg <key> v f c t k q`, writes are forwarded as the client sent them (less
 * noreply/q, which the appliance applies itself), and every batch sent on a
 * back-end connection ends with `mn`, so replies are framed exactly whatever
 * the command. Back ends must therefore be memcached >= 1.6.
 */
#ifndef SS_PROXY_H
#define SS_PROXY_H

#include <stddef.h>
#include <stdint.h>

/* cffi: begin */
/* Key hash functions, named as in libmemcached/twemproxy configs. */
#define SS_HASHES(X)            \
    X(MD5, "md5")               \
    X(CRC32, "crc32")           \
    X(CRC32A, "crc32a")         \
    X(FNV1_64, "fnv1_64")       \
    X(FNV1A_64, "fnv1a_64")     \
    X(FNV1_32, "fnv1_32")       \
    X(FNV1A_32, "fnv1a_32")     \
    X(ONE_AT_A_TIME, "one_at_a_time") \
    X(MURMUR, "murmur")         \
    X(JENKINS, "jenkins")       \
    X(HSIEH, "hsieh")

enum ss_hash_kind {
#define SS_HASH_ENUM(name, str) SS_HASH_##name,
    SS_HASHES(SS_HASH_ENUM)
#undef SS_HASH_ENUM
    SS_HASH__COUNT
};

enum ss_distribution { SS_DIST_KETAMA = 0, SS_DIST_MODULA = 1 };

enum ss_failure_policy {
    SS_POLICY_EJECT = 0,    /* remap to the rest of the ring (auto_eject_hosts) */
    SS_POLICY_FAIL = 1,     /* answer SERVER_ERROR at once */
    SS_POLICY_FAILOVER = 2, /* send to the spare pool named in failover_ring */
};

enum ss_backend_state {
    SS_BACKEND_UP = 0,
    SS_BACKEND_DOWN = 1,     /* failure_limit failures in a row; probed by the control plane */
    SS_BACKEND_DRAINING = 2, /* operator: no new keys routed to it (console, issue 6) */
    SS_BACKEND_EJECTED = 3,  /* operator: treated as down until restored */
};

enum ss_admission { SS_ADMIT_ALWAYS = 0, SS_ADMIT_SECOND_HIT = 1, SS_ADMIT_NEVER = 2 };

struct ss_backend_settings {
    const char *name;
    const char *host;           /* numeric IPv4/IPv6 */
    int port;
    uint32_t weight;
    uint32_t connect_timeout_ms;
    uint32_t request_timeout_ms;
    uint32_t failure_limit;     /* consecutive failures that mark it down */
    uint32_t policy;            /* enum ss_failure_policy */
    int32_t failover_ring;      /* ring index for SS_POLICY_FAILOVER, else -1 */
    uint32_t initial_state;     /* enum ss_backend_state (kept across reloads) */
};

/* One ketama point: keys whose hash is <= point go to backend (the first such). */
struct ss_ring_point {
    uint32_t point;
    uint32_t backend; /* index into ss_routing_settings.backends */
};

/* A ring over some of the back ends: ring 0 is the primary pool, the others
 * are spare pools for SS_POLICY_FAILOVER. */
struct ss_ring_settings {
    const char *name;
    uint32_t distribution;               /* enum ss_distribution */
    const struct ss_ring_point *points;  /* sorted by point (ketama) */
    uint32_t npoints;
    const uint32_t *members;             /* backend indexes in config order (modula) */
    uint32_t nmembers;
    /* Optional (ss_ring_index_build): for each of 2^index_bits equal slices
     * of the hash space, the first point at or above its start, so a lookup
     * scans a slice instead of searching the whole ring. NULL = search. */
    const uint32_t *index;
    uint32_t index_bits;
};

struct ss_routing_settings {
    uint32_t hash;                       /* enum ss_hash_kind, for keys */
    const struct ss_backend_settings *backends;
    uint32_t nbackends;
    const struct ss_ring_settings *rings;
    uint32_t nrings;
    uint32_t connections_per_backend;    /* per worker */
    uint32_t admission;                  /* enum ss_admission */
    uint32_t admission_window_ms;        /* SS_ADMIT_SECOND_HIT window */
    uint32_t admission_max_bytes;        /* never admit values larger than this */
    uint32_t local_ttl_max_s;            /* bound on a local copy's life; 0 = none */
    int allow_flush_all;
    /* Every forwarded set keeps its value locally, cached before or not
     * (switch mode, whose forwarded gets fill nothing); else only a set of a
     * key that had a local copy does. */
    int write_allocate;
};

/* Per back-end figures, summed over workers. */
#define SS_BACKEND_LATENCY_BUCKETS 32 /* bucket i: latency < 2^i microseconds */
struct ss_backend_stats {
    uint64_t requests;
    uint64_t errors;        /* connection failures, garbage replies */
    uint64_t timeouts;
    uint64_t in_flight;
    uint64_t state_changes;
    uint32_t state;         /* enum ss_backend_state */
    uint32_t consecutive_failures;
    uint64_t latency_us[SS_BACKEND_LATENCY_BUCKETS];
};

struct ss_dataplane;

/*
 * Install or replace the routing table (a reload). r == NULL or
 * r->nbackends == 0 returns to standalone mode. The table is copied; the
 * caller's arrays may be freed on return. Returns 0 or -errno with err set.
 */
int ss_dataplane_set_routing(struct ss_dataplane *dp, const struct ss_routing_settings *r,
                             char *err, size_t errlen);
int ss_dataplane_backend_count(struct ss_dataplane *dp);
int ss_dataplane_backend_stats(struct ss_dataplane *dp, uint32_t idx, struct ss_backend_stats *out);
/* Operator or prober action: set a back end's state (enum ss_backend_state). */
int ss_dataplane_backend_set_state(struct ss_dataplane *dp, uint32_t idx, uint32_t state);

/* The key hash (enum ss_hash_kind) as libmemcached/twemproxy compute it. */
uint32_t ss_hash_key(uint32_t kind, const void *key, size_t len);

/* Instruction sets ss_hash_md5_batch() can use (its `isa` argument). */
enum ss_hash_isa {
    SS_HASH_ISA_BEST = -1,    /* the widest this CPU runs */
    SS_HASH_ISA_SCALAR = 0,   /* one key at a time; always available */
    SS_HASH_ISA_AVX2 = 1,     /* 8 keys at a time */
    SS_HASH_ISA_AVX512F = 2,  /* 16 keys at a time */
};
/*
 * ss_hash_key(SS_HASH_MD5, ...) of a burst of keys, several at once in SIMD
 * lanes (ss_hashkit_md5x.c): out[i] is keys[i][0..lens[i])'s hash for i in
 * [0, n). Returns 0, or -ENOTSUP when isa is unknown or this CPU lacks it.
 */
int ss_hash_md5_batch(const char *const *keys, const uint32_t *lens, uint32_t n,
                      uint32_t *out, int isa);
/* The back-end index a hash maps to on a ring (ketama: first point >= hash,
 * wrapping; modula: hash % nmembers). Pure: used by the data plane and, via
 * cffi, by `smartswitch route`, so both agree by construction. */
uint32_t ss_ring_lookup(const struct ss_ring_settings *ring, uint32_t hash);
/* Slices for a ketama ring of npoints: how many index bits, and the index
 * (2^bits + 1 entries) for ring->points; the caller owns the array. */
uint32_t ss_ring_index_bits(uint32_t npoints);
void ss_ring_index_build(const struct ss_ring_settings *ring, uint32_t bits, uint32_t *index);
/* cffi: end */

/*
 * The first back end that usable(ctx, b) accepts, walking the ring from
 * hash's point onward (ketama: the following points; modula: the following
 * members), or UINT32_MAX when none is. How `eject` remaps a down owner's
 * keys, in proxy mode and on the switch fast path alike. C only (not in the
 * cdef).
 */
uint32_t ss_ring_walk(const struct ss_ring_settings *ring, uint32_t hash,
                      int (*usable)(const void *ctx, uint32_t backend), const void *ctx);

#endif
