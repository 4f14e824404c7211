/*
 * ss_dram_only.c - copies kept in the DRAM tier only (SS_WRITE_DRAM_ONLY,
 * SS_ITEM_DRAM_ONLY): proxy mode's copy of a value a client has just written
 * through the appliance, whose back end is the store of record. Such a copy
 * has no log record and no index entry, so writing it costs no append, CRC
 * or group commit, and dropping it no index delete; it is gone when DRAM
 * evicts it or the store closes. ss_store_withdraw (a variant of
 * ss_store_remove) hides one for the length of a forwarded write,
 * and the write that follows rewrites it in place (ss_hot_rewrite), found
 * through the reference the withdraw gave (ss_store_write_over) rather than
 * by a second walk of its hash chain, a cache miss per set at scale.
 *
 * The invariant that keeps reads fresh: while a DRAM-only item is in the
 * table, the index holds nothing for its key (a DRAM-only write deletes the
 * entry of a device-backed copy it replaces; a normal write replaces the
 * DRAM-only item). So once DRAM lets go, the key is a miss, never an older
 * device copy. A device-backed copy withdrawn with a reference (a proxy's
 * fill about to be overwritten by a set) keeps that invariant by losing its
 * index entry as it becomes DRAM-only.
 */
#include <errno.h>

#include "ss_store_internal.h"

int ss_store_withdraw(struct ss_store_thread *t, const void *key, size_t nkey,
                      struct ss_value_hold **held)
{
    struct ss_stripe *s = &t->store->stripes[t->locked_stripe];
    struct ss_hot_item *hi = ss_hot_lookup(s, t->locked_hash, key, nkey);
    if (held)
        *held = NULL;
    /* A device-backed copy (a fill) asked for with a reference becomes a
     * DRAM-only one: its index entry goes, as a remove's would, and its DRAM
     * item stays for the write to rewrite instead of allocating anew. */
    bool dram_only = hi && (hi->e.bits & SS_ITEM_DRAM_ONLY);
    bool convert = held && hi && !dram_only && !(hi->e.bits & SS_ITEM_PINNED);
    if (!dram_only && !convert)
        return ss_remove_found(t, key, nkey, hi);
    ss_copies_stale(t); /* hidden from here on (ss_hot_get), kept for ss_hot_rewrite */
    if (convert)
        ss_entry_del(t, key, nkey);
    hi->e.bits |= SS_HOT_WITHDRAWN | SS_ITEM_DRAM_ONLY;
    if (held)
        *held = (struct ss_value_hold *)ss_hot_hold(hi);
    return 0;
}

/* The copy held for the write (NULL, or the key's item as withdrawn), if the
 * table still has it: an item stays the key's while it is linked, so this
 * reads one line the prefetch brought in and no hash chain. */
static struct ss_hot_item *still_linked(struct ss_hot_item *held)
{
    return held && !(held->e.bits & SS_HOT_UNLINKED) ? held : NULL;
}

void ss_store_held_prefetch(const struct ss_value_hold *held)
{
    const char *p = (const char *)held;
    __builtin_prefetch(p, 1);
    __builtin_prefetch(p + 64, 1);
    __builtin_prefetch(p + 128, 1);
}

int ss_store_write_over(struct ss_store_thread *t, struct ss_value_hold *held, const void *key,
                        size_t nkey, struct ss_item *it, const struct iovec *iov, int niov,
                        unsigned flags)
{
    size_t n;
    int64_t now;
    int rc = ss_write_begin(t, iov, niov, &n, &now);
    return rc ? rc
              : ss_write_dram_only(t, key, nkey, it, iov, niov, n, flags | SS_WRITE_DRAM_ONLY,
                                   now, (struct ss_hot_item *)held);
}

int ss_write_dram_only(struct ss_store_thread *t, const void *key, size_t nkey,
                       struct ss_item *it, const struct iovec *iov, int niov, size_t n,
                       unsigned flags, int64_t now, struct ss_hot_item *over)
{
    struct ss_store *st = t->store;
    struct ss_stripe *s = &st->stripes[t->locked_stripe];
    struct ss_hot_item *old = still_linked(over);
    uint32_t held = old != NULL;
    if (!old)
        old = ss_hot_lookup(s, t->locked_hash, key, nkey);
    if (old && !(old->e.bits & SS_ITEM_DRAM_ONLY))
        ss_entry_del(t, key, nkey); /* its device copy must not outlive ours */
    struct ss_index_entry e = ss_entry_for_write(st, it, n, flags, now, SS_ITEM_DRAM_ONLY);
    int rc = old && ss_hot_rewrite(old, &e, iov, niov, held);
    if (!rc)
        rc = ss_hot_put(st, s, t->locked_hash, key, nkey, &e, iov, niov, t->ctr, NULL);
    if (rc < 0) {
        t->ctr->errors_out_of_memory++;
        ss_hot_remove(st, s, t->locked_hash, key, nkey);
        return -ENOBUFS;
    }
    if (rc == 0)
        return -ENOBUFS;
    return ss_write_done(t, it, &e);
}
