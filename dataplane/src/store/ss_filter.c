/*
 * ss_filter.c - a compact DRAM filter of the keys the store holds, so a
 * miss is decided without an index lookup.
 *
 * The switch fast path has ~100 ns per packet and an LMDB lookup costs
 * ~1.5 us, so a key the hot tier lacks is first checked here: "no" is
 * final (the key is not in the index, pending or committing), "maybe" goes
 * on to the index. The structure is a split-block Bloom filter: 32-byte
 * blocks of eight 32-bit words; a key picks one block from its hash and
 * sets one bit in each word, so a lookup touches one cache line.
 *
 * No false negatives. Every index insertion goes through put_entry() in
 * ss_store.c, which adds the key here under the key's stripe lock before
 * the entry becomes visible anywhere. Nothing is ever removed (deletes,
 * evictions, expiry and flush_all leave their bits: a false positive only
 * costs the index lookup we would have done anyway). Bits that no longer
 * stand for live keys are shed by a rebuild:
 *
 *   1. under every stripe lock, install an empty `next` filter; from then
 *      on put_entry adds each key to both filters;
 *   2. commit what is pending (ss_pend_commit_now), so every key written
 *      before step 1 is in LMDB;
 *   3. walk LMDB in key order, a batch per housekeeping tick (resuming at
 *      the last key seen), adding every key to `next`; a key present since
 *      step 2 is met by the walk, one written since step 1 is in `next`
 *      already;
 *   4. under every stripe lock, make `next` the filter; free the old one.
 *
 * Readers and writers use the filter only with a stripe lock held, so
 * holding all of them makes each swap atomic for everyone; the walk adds
 * to `next` without a lock, hence atomic ORs on its words. A rebuild
 * starts when the filter has taken as many insertions as it was sized for
 * (it then sizes for twice the index's items), and at open.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/ss_hash.h"
#include "ss_store_internal.h"

#define FILTER_MIN_ITEMS   65536u  /* 128 KiB: the smallest filter built */
#define FILTER_BITS_PER_ITEM 16u   /* ~0.1-0.5% false positives at capacity */
#define FILTER_SCAN_BATCH  32768u  /* index entries walked per housekeeping tick */

struct ss_filter {
    uint64_t nblocks;
    uint64_t capacity;               /* items it was sized for */
    _Atomic uint64_t inserts;        /* insertions since it was created */
    uint32_t (*blocks)[8];
};

/* Odd constants that spread a 32-bit value over the eight words' bit
 * positions (any distinct odd multipliers do; these are random). */
static const uint32_t salt[8] = {0x47b6137bu, 0x44974d91u, 0x8824ad5bu, 0xa2b7289du,
                                 0x705495c7u, 0x2df1424bu, 0x9efc4947u, 0x5c6bfb31u};

static inline uint64_t block_of(const struct ss_filter *f, uint64_t h)
{
    return (uint64_t)(((unsigned __int128)(h >> 32) * f->nblocks) >> 32);
}

/* 32 bits for the in-block positions that do not repeat the block choice. */
static inline uint32_t bits_of(uint64_t h)
{
    return (uint32_t)((h * 0x9e3779b97f4a7c15ull) >> 32) ^ (uint32_t)h;
}

struct ss_filter *ss_filter_new(uint64_t items)
{
    if (items < FILTER_MIN_ITEMS)
        items = FILTER_MIN_ITEMS;
    struct ss_filter *f = calloc(1, sizeof(*f));
    if (!f)
        return NULL;
    f->capacity = items;
    f->nblocks = (items * FILTER_BITS_PER_ITEM + 255) / 256;
    size_t bytes = (size_t)f->nblocks * sizeof(*f->blocks);
    f->blocks = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
    if (!f->blocks) {
        free(f);
        return NULL;
    }
    memset(f->blocks, 0, bytes);
    return f;
}

void ss_filter_free(struct ss_filter *f)
{
    if (!f)
        return;
    free(f->blocks);
    free(f);
}

uint64_t ss_filter_bytes(const struct ss_filter *f)
{
    return f ? f->nblocks * sizeof(*f->blocks) : 0;
}

static void filter_add(struct ss_filter *f, uint64_t h)
{
    uint32_t *b = f->blocks[block_of(f, h)];
    uint32_t x = bits_of(h);
    for (int i = 0; i < 8; i++)
        __atomic_fetch_or(&b[i], 1u << ((x * salt[i]) >> 27), __ATOMIC_RELAXED);
    atomic_fetch_add_explicit(&f->inserts, 1, memory_order_relaxed);
}

static bool filter_maybe(const struct ss_filter *f, uint64_t h)
{
    const uint32_t *b = f->blocks[block_of(f, h)];
    uint32_t x = bits_of(h);
    uint32_t miss = 0;
    for (int i = 0; i < 8; i++)
        miss |= ~__atomic_load_n(&b[i], __ATOMIC_RELAXED) & (1u << ((x * salt[i]) >> 27));
    return miss == 0;
}

/* Stripe lock of the key held. */
void ss_filter_note(struct ss_store *st, uint64_t hash)
{
    struct ss_filter *f = st->filter, *n = st->filter_next;
    if (f)
        filter_add(f, hash);
    if (n)
        filter_add(n, hash);
}

/* Stripe lock of the key held. False: the store does not hold the key. */
bool ss_filter_maybe(struct ss_store *st, uint64_t hash)
{
    return !st->filter || filter_maybe(st->filter, hash);
}

/* Without a lock (ss_store_prefetch): from the store's copies of the bit
 * array's address and size, so nothing that a swap may free is read; a
 * torn pair only prefetches a useless address, and a prefetch never faults. */
void ss_filter_prefetch(struct ss_store *st, uint64_t hash)
{
    uint32_t (*blocks)[8] = __atomic_load_n(&st->filter_hint_blocks, __ATOMIC_RELAXED);
    uint64_t n = __atomic_load_n(&st->filter_hint_nblocks, __ATOMIC_RELAXED);
    if (blocks)
        __builtin_prefetch(blocks[((hash >> 32) * n) >> 32]);
}

static void lock_all(struct ss_store *st)
{
    for (unsigned i = 0; i < SS_STRIPES; i++)
        pthread_mutex_lock(&st->stripes[i].lock);
}

static void unlock_all(struct ss_store *st)
{
    for (unsigned i = SS_STRIPES; i-- > 0;)
        pthread_mutex_unlock(&st->stripes[i].lock);
}

/*
 * Add up to `max` index entries to st->filter_next, resuming after the last
 * key seen. Returns 1 when the walk reached the end, 0 if not yet, -errno.
 */
static int scan_batch(struct ss_store *st, unsigned max)
{
    struct ss_filter_scan *sc = &st->filter_scan;
    MDB_txn *txn;
    MDB_cursor *cur;
    int rc = mdb_txn_begin(st->env, NULL, MDB_RDONLY, &txn);
    if (rc)
        return ss_mdb_errno(rc);
    rc = mdb_cursor_open(txn, st->items, &cur);
    if (rc) {
        mdb_txn_abort(txn);
        return ss_mdb_errno(rc);
    }
    MDB_val k = {.mv_size = sc->nkey, .mv_data = sc->key}, v;
    rc = sc->nkey ? mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE)
                  : mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    for (unsigned n = 0; rc == 0 && n < max; n++) {
        filter_add(st->filter_next, ss_hash64(k.mv_data, k.mv_size));
        if (k.mv_size <= sizeof(sc->key)) {
            memcpy(sc->key, k.mv_data, k.mv_size);
            sc->nkey = k.mv_size;
        }
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    if (rc == MDB_NOTFOUND)
        return 1;
    return rc ? ss_mdb_errno(rc) : 0;
}

static void swap_in_next(struct ss_store *st)
{
    lock_all(st);
    struct ss_filter *old = st->filter;
    st->filter = st->filter_next;
    st->filter_next = NULL;
    __atomic_store_n(&st->filter_hint_blocks, st->filter->blocks, __ATOMIC_RELAXED);
    __atomic_store_n(&st->filter_hint_nblocks, st->filter->nblocks, __ATOMIC_RELAXED);
    unlock_all(st);
    ss_filter_free(old); /* no one holds it: every user holds a stripe lock */
    st->filter_scan.active = 0;
    st->filter_rebuilds++;
}

/* Steps 1 and 2 of a rebuild. 0 or -ENOMEM. */
static int rebuild_begin(struct ss_store *st)
{
    /* What the index holds plus what is on its way there. */
    uint64_t items = ss_index_count(st) + atomic_load(&st->pending_ops);
    struct ss_filter *n = ss_filter_new(items * 2);
    if (!n)
        return -ENOMEM;
    lock_all(st);
    st->filter_next = n;
    unlock_all(st);
    if (st->committer_running)
        ss_pend_commit_now(st);
    st->filter_scan.nkey = 0;
    st->filter_scan.active = 1;
    return 0;
}

/* At open, before anyone else uses the store: build the whole filter. */
int ss_filter_open(struct ss_store *st)
{
    int rc = rebuild_begin(st);
    while (rc == 0)
        rc = scan_batch(st, FILTER_SCAN_BATCH);
    if (rc < 0) {
        ss_filter_free(st->filter_next);
        st->filter_next = NULL;
        st->filter_scan.active = 0;
        return rc;
    }
    swap_in_next(st);
    st->filter_rebuilds = 0; /* the first build is not a rebuild */
    return 0;
}

void ss_filter_close(struct ss_store *st)
{
    st->filter_hint_blocks = NULL;
    ss_filter_free(st->filter);
    ss_filter_free(st->filter_next);
    st->filter = st->filter_next = NULL;
}

/*
 * One housekeeping step: start a rebuild when the filter is full, or walk
 * one more batch of the index. Control thread only. Returns 0 or -errno
 * (a failed rebuild is abandoned; the old filter stays, still correct).
 */
int ss_filter_housekeep(struct ss_store *st)
{
    struct ss_filter_scan *sc = &st->filter_scan;
    if (!sc->active) {
        struct ss_filter *f = st->filter; /* only this thread replaces it */
        if (!f || atomic_load_explicit(&f->inserts, memory_order_relaxed) < f->capacity)
            return 0;
        int rc = rebuild_begin(st);
        if (rc)
            return rc;
    }
    int rc = scan_batch(st, FILTER_SCAN_BATCH);
    if (rc == 1) {
        swap_in_next(st);
        return 0;
    }
    if (rc < 0) {
        lock_all(st);
        struct ss_filter *n = st->filter_next;
        st->filter_next = NULL;
        unlock_all(st);
        ss_filter_free(n);
        sc->active = 0;
        return rc;
    }
    return 0;
}

void ss_filter_stats(struct ss_store *st, uint64_t *bytes, uint64_t *capacity,
                     uint64_t *inserts)
{
    /* Under one stripe lock: the filter cannot be swapped meanwhile. */
    pthread_mutex_lock(&st->stripes[0].lock);
    struct ss_filter *f = st->filter;
    *bytes = ss_filter_bytes(f) + ss_filter_bytes(st->filter_next);
    *capacity = f ? f->capacity : 0;
    *inserts = f ? atomic_load_explicit(&f->inserts, memory_order_relaxed) : 0;
    pthread_mutex_unlock(&st->stripes[0].lock);
}
