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
 *      on put_entry adds each key to both filters (ss_filter_rebuild_begin);
 *   2. the store commits what is pending, so every key written before
 *      step 1 is in the index;
 *   3. the store walks the index in key order, a batch per housekeeping
 *      tick, feeding every key to `next` (ss_filter_rebuild_feed); a key
 *      present since step 2 is met by the walk, one written since step 1 is
 *      in `next` already;
 *   4. under every stripe lock, make `next` the filter; free the old one
 *      (ss_filter_rebuild_finish).
 *
 * This file knows hashes only: the walk is the store's (ss_store.c), so the
 * index has one user that reads it in bulk and the filter none.
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

#include "ss_store_internal.h"

#define FILTER_MIN_ITEMS   65536u  /* 128 KiB: the smallest filter built */
#define FILTER_BITS_PER_ITEM 16u   /* ~0.1-0.5% false positives at capacity */

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

static struct ss_filter *filter_new(uint64_t items)
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

static void filter_free(struct ss_filter *f)
{
    if (!f)
        return;
    free(f->blocks);
    free(f);
}

static uint64_t filter_bytes(const struct ss_filter *f)
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

int ss_filter_rebuild_begin(struct ss_store *st, uint64_t items)
{
    struct ss_filter *n = filter_new(items);
    if (!n)
        return -ENOMEM;
    lock_all(st);
    st->filter_next = n;
    unlock_all(st);
    return 0;
}

/* Control thread, during a rebuild, without a lock (atomic ORs). */
void ss_filter_rebuild_feed(struct ss_store *st, uint64_t hash)
{
    filter_add(st->filter_next, hash);
}

void ss_filter_rebuild_finish(struct ss_store *st)
{
    lock_all(st);
    struct ss_filter *old = st->filter;
    st->filter = st->filter_next;
    st->filter_next = NULL;
    __atomic_store_n(&st->filter_hint_blocks, st->filter->blocks, __ATOMIC_RELAXED);
    __atomic_store_n(&st->filter_hint_nblocks, st->filter->nblocks, __ATOMIC_RELAXED);
    unlock_all(st);
    filter_free(old); /* no one holds it: every user holds a stripe lock */
    st->filter_rebuilds++;
}

/* The old filter stays, still correct. */
void ss_filter_rebuild_abandon(struct ss_store *st)
{
    lock_all(st);
    struct ss_filter *n = st->filter_next;
    st->filter_next = NULL;
    unlock_all(st);
    filter_free(n);
}

bool ss_filter_full(struct ss_store *st)
{
    struct ss_filter *f = st->filter; /* only the control thread replaces it */
    return f && atomic_load_explicit(&f->inserts, memory_order_relaxed) >= f->capacity;
}

void ss_filter_close(struct ss_store *st)
{
    st->filter_hint_blocks = NULL;
    filter_free(st->filter);
    filter_free(st->filter_next);
    st->filter = st->filter_next = NULL;
}

void ss_filter_stats(struct ss_store *st, uint64_t *bytes, uint64_t *capacity,
                     uint64_t *inserts)
{
    /* Under one stripe lock: the filter cannot be swapped meanwhile. */
    pthread_mutex_lock(&st->stripes[0].lock);
    struct ss_filter *f = st->filter;
    *bytes = filter_bytes(f) + filter_bytes(st->filter_next);
    *capacity = f ? f->capacity : 0;
    *inserts = f ? atomic_load_explicit(&f->inserts, memory_order_relaxed) : 0;
    pthread_mutex_unlock(&st->stripes[0].lock);
}
