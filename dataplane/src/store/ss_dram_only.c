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
#include <string.h>

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
    bool convert = held && hi && !(hi->e.bits & (SS_ITEM_DRAM_ONLY | SS_ITEM_PINNED));
    if (!hi || (!(hi->e.bits & SS_ITEM_DRAM_ONLY) && !convert))
        return ss_remove_found(t, key, nkey, hi);
    ss_copies_stale(t); /* hidden from here on (ss_hot_get), kept for ss_hot_rewrite */
    if (convert)
        ss_entry_del(t, key, nkey);
    hi->e.bits |= SS_HOT_WITHDRAWN | SS_ITEM_DRAM_ONLY;
    if (held)
        *held = (struct ss_value_hold *)ss_hot_hold(hi);
    return 0;
}

/* The copy ss_store_write_over was given, if the table still has it as the
 * key's item: an item stays linked while it is the key's, and the check
 * reads only lines the withdraw brought into the cache. */
static struct ss_hot_item *held_copy(const struct ss_store_thread *t, const void *key,
                                     size_t nkey)
{
    const struct ss_hot_item *it = t->write_over;
    if (!it || (it->e.bits & SS_HOT_UNLINKED) || it->hash != t->locked_hash ||
        it->nkey != nkey || memcmp(it->data, key, nkey) != 0)
        return NULL;
    return t->write_over;
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
    t->write_over = (struct ss_hot_item *)held;
    int rc = ss_store_write(t, key, nkey, it, iov, niov, flags | SS_WRITE_DRAM_ONLY);
    t->write_over = NULL;
    return rc;
}

int ss_write_dram_only(struct ss_store_thread *t, const void *key, size_t nkey,
                       struct ss_item *it, const struct iovec *iov, int niov, size_t n,
                       unsigned flags, int64_t now)
{
    struct ss_store *st = t->store;
    struct ss_stripe *s = &st->stripes[t->locked_stripe];
    struct ss_hot_item *old = held_copy(t, key, nkey);
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
