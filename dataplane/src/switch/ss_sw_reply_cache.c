/*
 * ss_sw_reply_cache.c - each lcore's cache of finished get replies.
 *
 * A DRAM hit through the store costs the key's stripe mutex, the chain walk,
 * the LRU touch and formatting the VALUE line; the seed's MemSwitch answered
 * hits from a table on the switch itself. Each lcore keeps a two-way associative
 * table of the reply payloads it sent (VALUE line, value, END) for small
 * items, and serves a get of one key from it without taking any lock.
 *
 * Coherence: an entry records the store's copy token for the key's stripe
 * (ss_store_copy_token) at the time it was filled under the stripe lock. Any
 * change to an item of that stripe (a write through any path, delete,
 * touch, an invalidating write passing through the switch, an expired or
 * unreadable item dropped) bumps the stripe's counter before the change, and
 * flush_all bumps the flush counter; an entry whose token no longer matches
 * is not used, so a get after a write has been answered sees the write.
 * Expiry is checked against the lcore's clock, read once per burst. An item
 * evicted for space keeps its entry: its value is still the newest written.
 */
#include <string.h>

#include <rte_malloc.h>

#include "ss_store.h"
#include "ss_sw_csum.h"
#include "ss_sw_internal.h"

int sw_rc_init(struct sw_lcore *lc, uint64_t bytes)
{
    uint64_t n = bytes / sizeof(struct sw_rc_entry);
    if (n < 2)
        return 0; /* off */
    while (n & (n - 1))
        n &= n - 1; /* a power of two, not above the budget */
    lc->rc = rte_zmalloc("ss_sw_reply_cache", n * sizeof(struct sw_rc_entry), 64);
    if (!lc->rc)
        return -1;
    lc->rc_mask = (uint32_t)(n - 1);
    return 0;
}

void sw_rc_free(struct sw_lcore *lc)
{
    rte_free(lc->rc);
    lc->rc = NULL;
}

bool sw_rc_valid(struct sw_lcore *lc, struct ss_store *st, const struct sw_rc_entry *e,
                 uint64_t khash, const char *key, size_t nkey)
{
    if (e->nkey != nkey || memcmp(e->data, key, nkey) != 0)
        return false;
    if (e->token != ss_store_copy_token(st, khash) ||
        (e->exptime && e->exptime <= lc->now_s)) {
        lc->ctr[SW_C_mc_reply_cache_stale]++;
        return false;
    }
    return true;
}

void sw_rc_fill(struct sw_lcore *lc, const struct ss_store_thread *t, const char *key,
                size_t nkey, int64_t exptime, const char *payload, size_t plen)
{
    if (nkey + plen > sizeof(((struct sw_rc_entry *)0)->data))
        return;
    uint64_t token = ss_store_copy_token(t->store, t->locked_hash);
    if (token & SS_COPY_FLUSH_DUE)
        return;
    /* The key's own entry, else an empty one, else the one the hash picks
     * (a cheap stand-in for the older of the two). */
    struct sw_rc_entry *set = sw_rc_set(lc, t->locked_hash), *e;
    if (set[0].khash == t->locked_hash || set[0].khash == 0)
        e = &set[0];
    else if (set[1].khash == t->locked_hash || set[1].khash == 0)
        e = &set[1];
    else
        e = &set[(t->locked_hash >> 39) & 1];
    e->khash = t->locked_hash;
    e->token = token;
    e->exptime = exptime;
    e->nkey = (uint16_t)nkey;
    e->plen = (uint16_t)plen;
    memcpy(e->data, key, nkey);
    memcpy(e->data + nkey, payload, plen);
    e->psum = sw_csum_add(0, payload, plen);
    lc->ctr[SW_C_mc_reply_cache_fills]++;
}
