/*
 * ss_hot.c - the DRAM hot tier: one chained hash table and LRU list per lock
 * stripe, each bounded by the stripe's share of the configured bytes.
 *
 * The stripe lock that serialises a key's operations also guards its shard,
 * so a hit is one mutex, one chain walk and one memcpy. Every mutation of a
 * key goes through the hot tier too, so an item present here is always its
 * key's latest version.
 *
 * The byte budget is the store's, not the stripe's: a stripe makes room by
 * evicting its own least recent items until the whole tier fits, so an item
 * of up to 1/SS_HOT_ITEM_SHARE of the tier (a 1 MiB object chunk in a 64 MiB
 * tier) can be kept although it is larger than a stripe's average share.
 * Items are reference-counted so a reply may send a value straight from its
 * item after the lock is released (ss_store_value_hold); an item replaced or
 * evicted meanwhile leaves the table and the budget at once, and its memory
 * goes when the last reply lets go.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/ss_clock.h"
#include "ss_store_internal.h"

#define SS_HOT_MIN_BUCKETS 64u
/* Largest item kept, as a fraction of the tier: larger ones would flush a
 * good part of the working set for one value; they are served from the device. */
#define SS_HOT_ITEM_SHARE 32u

static inline uint64_t hot_item_bytes(size_t nkey, size_t nbytes)
{
    return sizeof(struct ss_hot_item) + nkey + nbytes;
}

/* Bucket index from the hash bits the stripe choice did not use. */
static inline uint32_t hot_bucket(const struct ss_stripe *s, uint64_t hash)
{
    return (uint32_t)(hash >> 16) & (s->nbuckets - 1);
}

int ss_hot_init(struct ss_stripe *s)
{
    s->nbuckets = SS_HOT_MIN_BUCKETS;
    s->buckets = calloc(s->nbuckets, sizeof(*s->buckets));
    return s->buckets ? 0 : -ENOMEM;
}

void ss_hot_drop(struct ss_hot_item *it)
{
    if (atomic_fetch_sub_explicit(&it->refs, 1, memory_order_acq_rel) == 1)
        free(it);
}

void ss_hot_fini(struct ss_store *st, struct ss_stripe *s)
{
    struct ss_hot_item *it = s->lru_head;
    while (it) {
        struct ss_hot_item *next = it->lru_next;
        atomic_fetch_sub_explicit(&st->hot_used, hot_item_bytes(it->nkey, it->e.nbytes),
                                  memory_order_relaxed);
        ss_hot_drop(it);
        it = next;
    }
    free(s->buckets);
    s->buckets = NULL;
    while (s->retired_buckets) {
        struct ss_hot_item **next = (struct ss_hot_item **)s->retired_buckets[0];
        free(s->retired_buckets);
        s->retired_buckets = next;
    }
    s->lru_head = s->lru_tail = NULL;
    s->count = 0;
    s->bytes = 0;
}

static void lru_unlink(struct ss_stripe *s, struct ss_hot_item *it)
{
    if (it->lru_prev)
        it->lru_prev->lru_next = it->lru_next;
    else
        s->lru_head = it->lru_next;
    if (it->lru_next)
        it->lru_next->lru_prev = it->lru_prev;
    else
        s->lru_tail = it->lru_prev;
    it->lru_prev = it->lru_next = NULL;
}

static void lru_push_head(struct ss_stripe *s, struct ss_hot_item *it)
{
    it->lru_prev = NULL;
    it->lru_next = s->lru_head;
    if (s->lru_head)
        s->lru_head->lru_prev = it;
    s->lru_head = it;
    if (!s->lru_tail)
        s->lru_tail = it;
}

/*
 * Moving an item to the LRU head writes its neighbours' links: two cache
 * misses on items that live in other allocations. Like memcached's bump
 * interval, a hot item moves at most once a second, which keeps LRU order
 * where it matters (what has not been read for a while) at a fraction of
 * the cost.
 */
void ss_hot_touch(struct ss_stripe *s, struct ss_hot_item *it, uint32_t now)
{
    if (s->lru_head == it || it->lru_bumped_at == now)
        return;
    it->lru_bumped_at = now;
    lru_unlink(s, it);
    lru_push_head(s, it);
}

/* Find the chain link pointing at the item for key, or at the chain's end. */
static struct ss_hot_item **hot_find_link(struct ss_stripe *s, uint64_t hash, const void *key,
                                          size_t nkey)
{
    struct ss_hot_item **link = &s->buckets[hot_bucket(s, hash)];
    for (; *link; link = &(*link)->hnext) {
        struct ss_hot_item *it = *link;
        if (it->hash == hash && it->nkey == nkey && memcmp(it->data, key, nkey) == 0)
            break;
    }
    return link;
}

struct ss_hot_item *ss_hot_lookup(struct ss_stripe *s, uint64_t hash, const void *key,
                                  size_t nkey)
{
    if (!s->count)
        return NULL;
    return *hot_find_link(s, hash, key, nkey);
}

struct ss_hot_item *ss_hot_get(struct ss_stripe *s, uint64_t hash, const void *key, size_t nkey)
{
    struct ss_hot_item *it = ss_hot_lookup(s, hash, key, nkey);
    return it && !(it->e.bits & SS_HOT_WITHDRAWN) ? it : NULL;
}

int ss_hot_rewrite(struct ss_hot_item *it, const struct ss_index_entry *e,
                   const struct iovec *iov, int niov, uint32_t held)
{
    if (!(it->e.bits & SS_HOT_WITHDRAWN) || it->e.nbytes != e->nbytes ||
        atomic_load_explicit(&it->refs, memory_order_acquire) != 1 + held)
        return 0;
    char *p = it->data + it->nkey;
    for (int i = 0; i < niov; i++) {
        memcpy(p, iov[i].iov_base, iov[i].iov_len);
        p += iov[i].iov_len;
    }
    it->e = *e;
    it->stored_ms = (uint32_t)ss_clock_mono_ms();
    return 1;
}

/* Unlink and drop the item at *link; returns its bytes, which the caller
 * takes off the tier's count (hot_used). */
static uint64_t hot_unlink(struct ss_stripe *s, struct ss_hot_item **link)
{
    struct ss_hot_item *it = *link;
    uint64_t size = hot_item_bytes(it->nkey, it->e.nbytes);
    *link = it->hnext;
    it->e.bits |= SS_HOT_UNLINKED;
    lru_unlink(s, it);
    s->count--;
    s->bytes -= size;
    ss_hot_drop(it);
    return size;
}

static void hot_unlink_free(struct ss_store *st, struct ss_stripe *s, struct ss_hot_item **link)
{
    atomic_fetch_sub_explicit(&st->hot_used, hot_unlink(s, link), memory_order_relaxed);
}

void ss_hot_remove(struct ss_store *st, struct ss_stripe *s, uint64_t hash, const void *key,
                   size_t nkey)
{
    if (!s->count)
        return;
    struct ss_hot_item **link = hot_find_link(s, hash, key, nkey);
    if (*link)
        hot_unlink_free(st, s, link);
}

/* Double the bucket array when chains get long; failure just keeps them long. */
static void hot_maybe_grow(struct ss_stripe *s)
{
    if (s->count < s->nbuckets) /* load factor 1: a hit walks ~1 item */
        return;
    uint32_t n = s->nbuckets * 2u;
    struct ss_hot_item **nb = calloc(n, sizeof(*nb));
    if (!nb)
        return;
    for (uint32_t i = 0; i < s->nbuckets; i++) {
        struct ss_hot_item *it = s->buckets[i];
        while (it) {
            struct ss_hot_item *next = it->hnext;
            uint32_t b = (uint32_t)(it->hash >> 16) & (n - 1);
            it->hnext = nb[b];
            nb[b] = it;
            it = next;
        }
    }
    /* Retired, not freed (see retired_buckets). The new array is published
     * before its size, so a reader that sees the new size sees the new
     * array, and one that sees the old size indexes either array in bounds. */
    s->buckets[0] = (struct ss_hot_item *)s->retired_buckets;
    s->retired_buckets = s->buckets;
    __atomic_store_n(&s->buckets, nb, __ATOMIC_RELEASE);
    __atomic_store_n(&s->nbuckets, n, __ATOMIC_RELEASE);
}

/*
 * A DRAM-only item (SS_ITEM_DRAM_ONLY) stored less than this long ago is
 * not evicted to make room: it has no other copy, and whoever stored it may
 * be about to read it back (a fill's waiters read each chunk within a worker
 * tick of its landing, and then hold it). A stripe that holds few items
 * would otherwise evict one the moment the next item of the stripe arrives;
 * the newcomer is refused instead (its writer then puts it on flash). Short,
 * because at a high fill rate everything this young stays: 100 ms of
 * 900 MB/s of misses is 90 MB of the tier.
 */
#define SS_HOT_DRAM_ONLY_MIN_AGE_MS 100u

static bool hot_evictable(const struct ss_hot_item *it, uint32_t now_ms)
{
    return !(it->e.bits & SS_ITEM_DRAM_ONLY) ||
           now_ms - it->stored_ms >= SS_HOT_DRAM_ONLY_MIN_AGE_MS;
}

static bool hot_fits(struct ss_store *st, uint64_t need)
{
    return atomic_load_explicit(&st->hot_used, memory_order_relaxed) + need <= st->hot_limit;
}

/* Evict stripe s's least recently used items (its lock held) until `need`
 * more bytes fit in the tier. 1 when they fit, 0 when s ran out first. */
static int hot_evict_own(struct ss_store *st, struct ss_stripe *s, uint64_t need,
                         struct ss_counters *ctr, uint32_t now_ms)
{
    while (!hot_fits(st, need)) {
        struct ss_hot_item *victim = s->lru_tail;
        while (victim && !hot_evictable(victim, now_ms))
            victim = victim->lru_prev;
        if (!victim)
            return 0;
        struct ss_hot_item **link = hot_find_link(s, victim->hash, victim->data, victim->nkey);
        hot_unlink_free(st, s, link);
        if (ctr)
            ctr->hot_evictions++;
    }
    return 1;
}

/*
 * Make room for `need` bytes in stripe s (its lock held): from its own least
 * recent items first, as before; an item larger than what a stripe holds on
 * average (a 1 MiB object chunk) then takes room from other stripes, each
 * evicting its own least recent items under its lock. Those locks are only
 * tried, never waited for (we hold s's, and another thread may hold one of
 * them while it waits for s's), so this cannot deadlock; a stripe that is
 * busy is passed over.
 */
static int hot_make_room(struct ss_store *st, struct ss_stripe *s, uint64_t need,
                         struct ss_counters *ctr)
{
    uint32_t now_ms = (uint32_t)ss_clock_mono_ms();
    if (hot_evict_own(st, s, need, ctr, now_ms))
        return 1;
    for (uint32_t tries = 0; tries < SS_STRIPES && !hot_fits(st, need); tries++) {
        uint32_t i = atomic_fetch_add_explicit(&st->hot_evict_next, 1, memory_order_relaxed);
        struct ss_stripe *other = &st->stripes[i & (SS_STRIPES - 1)];
        if (other == s || pthread_mutex_trylock(&other->lock) != 0)
            continue;
        (void)hot_evict_own(st, other, need, ctr, now_ms);
        pthread_mutex_unlock(&other->lock);
    }
    return hot_fits(st, need);
}

int ss_hot_put(struct ss_store *st, struct ss_stripe *s, uint64_t hash, const void *key,
               size_t nkey, const struct ss_index_entry *e, const struct iovec *iov, int niov,
               struct ss_counters *ctr, struct ss_hot_item **stored)
{
    uint64_t size = hot_item_bytes(nkey, e->nbytes);
    if (size > st->hot_limit / SS_HOT_ITEM_SHARE) {
        ss_hot_remove(st, s, hash, key, nkey);
        return 0;
    }
    /* Copy first: the caller's value may live in the item being replaced
     * (append and prepend pass the old value back in). */
    struct ss_hot_item *it = malloc(size);
    if (!it)
        return -ENOMEM;
    it->hash = hash;
    it->e = *e;
    it->lru_bumped_at = e->last_access;
    it->stored_ms = (uint32_t)ss_clock_mono_ms();
    it->nkey = (uint8_t)nkey;
    atomic_init(&it->refs, 1);
    memcpy(it->data, key, nkey);
    char *p = it->data + nkey;
    for (int i = 0; i < niov; i++) {
        memcpy(p, iov[i].iov_base, iov[i].iov_len);
        p += iov[i].iov_len;
    }
    /* The tier's count (shared by every worker: one atomic per put, not
     * one for the item replaced and one for its successor) takes the
     * difference; the replaced item's bytes are room already made. */
    struct ss_hot_item **link = hot_find_link(s, hash, key, nkey);
    uint64_t freed = *link ? hot_unlink(s, link) : 0;
    if (size > freed && !hot_make_room(st, s, size - freed, ctr)) {
        atomic_fetch_sub_explicit(&st->hot_used, freed, memory_order_relaxed);
        free(it);
        return 0;
    }
    /* Unsigned: adding size - freed subtracts when the new item is smaller. */
    atomic_fetch_add_explicit(&st->hot_used, size - freed, memory_order_relaxed);
    hot_maybe_grow(s);
    uint32_t b = hot_bucket(s, hash);
    it->hnext = s->buckets[b];
    s->buckets[b] = it;
    lru_push_head(s, it);
    s->count++;
    s->bytes += size;
    if (stored)
        *stored = it;
    return 1;
}

/* See ss_store.h: the stripe (lock, bucket array's address) and the
 * filter block; ss_store_prefetch_bucket follows once the stripe is in. */
void ss_store_prefetch(struct ss_store *st, uint64_t hash)
{
    __builtin_prefetch(&st->stripes[hash & (SS_STRIPES - 1)], 1);
    ss_filter_prefetch(st, hash);
}

/* The bucket for hash, read without the lock: the size before the array
 * (hot_maybe_grow publishes them the other way round), so the index is in
 * bounds of whichever array is read, and outgrown arrays are never freed
 * while the store is open. NULL when the stripe has none. */
static struct ss_hot_item **racy_bucket(struct ss_stripe *s, uint64_t hash)
{
    uint32_t n = __atomic_load_n(&s->nbuckets, __ATOMIC_ACQUIRE);
    struct ss_hot_item **buckets = __atomic_load_n(&s->buckets, __ATOMIC_ACQUIRE);
    return buckets && n ? &buckets[(uint32_t)(hash >> 16) & (n - 1)] : NULL;
}

void ss_store_prefetch_bucket(struct ss_store *st, uint64_t hash)
{
    struct ss_hot_item **b = racy_bucket(&st->stripes[hash & (SS_STRIPES - 1)], hash);
    if (b)
        __builtin_prefetch(b);
}

/* The chain's first item may be freed or replaced meanwhile: its address is
 * only prefetched, never dereferenced. Three lines: its links and hash, and
 * the key and the start of the value (data begins past the first line). */
void ss_store_prefetch_item(struct ss_store *st, uint64_t hash)
{
    struct ss_hot_item **b = racy_bucket(&st->stripes[hash & (SS_STRIPES - 1)], hash);
    const char *it = b ? (const char *)__atomic_load_n(b, __ATOMIC_RELAXED) : NULL;
    if (!it)
        return;
    __builtin_prefetch(it);
    __builtin_prefetch(it + 64);
    __builtin_prefetch(it + 128);
}

void ss_store_prefetch_keys(struct ss_store *st, const uint64_t *hash, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        ss_store_prefetch(st, hash[i]);
    for (unsigned i = 0; i < n; i++)
        ss_store_prefetch_bucket(st, hash[i]);
    for (unsigned i = 0; i < n; i++)
        ss_store_prefetch_item(st, hash[i]);
}
