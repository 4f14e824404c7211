/*
 * ss_entry.c - the stripe locks, and one key's index entry as the store
 * sees it under its lock: the newest of DRAM filter, pending map,
 * committing map and LMDB, and changes to it recorded for the group commit
 * (ss_pending.c). Callers are the request threads (ss_store.c) and the
 * segment writer copying pinned records forward (ss_copy_forward.c); the
 * stripe lock is what orders an entry's changes, and the pinned figures'
 * changes with them (ss_pinned.c).
 */
#include <errno.h>

#include "common/ss_hash.h"
#include "ss_store_internal.h"

void ss_store_lock(struct ss_store_thread *t, const void *key, size_t nkey)
{
    ss_store_lock_hash(t, ss_hash64(key, nkey));
}

void ss_store_lock_hash(struct ss_store_thread *t, uint64_t h)
{
    t->locked_hash = h;
    t->locked_stripe = (int)(h & (SS_STRIPES - 1));
    pthread_mutex_lock(&t->store->stripes[t->locked_stripe].lock);
}

void ss_store_unlock(struct ss_store_thread *t)
{
    pthread_mutex_unlock(&t->store->stripes[t->locked_stripe].lock);
    t->locked_stripe = -1;
}

int ss_entry_dead(struct ss_store *st, const struct ss_index_entry *e, int64_t now)
{
    if (e->seq < atomic_load_explicit(&st->flush_seq, memory_order_relaxed))
        return -ECANCELED;
    if (e->exptime && e->exptime <= now)
        return -ETIME;
    return 0;
}

/* Pending, then committing, then the index; the filter already said maybe. */
static int entry_indexed(struct ss_store_thread *t, const void *key, size_t nkey,
                         struct ss_index_entry *e)
{
    struct ss_stripe *s = &t->store->stripes[t->locked_stripe];
    struct ss_pend *p = ss_pend_find(&s->pending, t->locked_hash, key, nkey);
    if (!p)
        p = ss_pend_find(&s->committing, t->locked_hash, key, nkey);
    if (p) {
        if (p->op == SS_PEND_DEL)
            return -ENOENT;
        *e = p->e;
        return 0;
    }
    int rc = ss_index_get(t->store->index, &t->rtxn, key, nkey, e);
    if (rc && rc != -ENOENT)
        t->ctr->errors_index++;
    return rc;
}

int ss_entry_lookup(struct ss_store_thread *t, const void *key, size_t nkey,
                    struct ss_index_entry *e)
{
    if (!ss_filter_maybe(t->store, t->locked_hash)) {
        t->ctr->filter_negatives++;
        return -ENOENT;
    }
    int rc = entry_indexed(t, key, nkey, e);
    if (rc == -ENOENT)
        t->ctr->filter_false_positives++;
    return rc;
}

int ss_entry_get(struct ss_store_thread *t, const void *key, size_t nkey,
                 struct ss_index_entry *e)
{
    if (!ss_filter_maybe(t->store, t->locked_hash))
        return -ENOENT;
    return entry_indexed(t, key, nkey, e);
}

int ss_entry_put(struct ss_store_thread *t, const void *key, size_t nkey,
                 const struct ss_index_entry *e)
{
    struct ss_store *st = t->store;
    /* Before the entry is visible anywhere: the filter never says no to a
     * key the index holds. */
    ss_filter_note(st, t->locked_hash);
    int rc = ss_pend_record(st, &st->stripes[t->locked_stripe], t->locked_hash, key, nkey,
                            SS_PEND_PUT, e);
    if (rc) /* no memory for the pending op: write through instead */
        rc = ss_index_put(st->index, key, nkey, e);
    if (rc)
        t->ctr->errors_index++;
    return rc;
}

void ss_entry_del(struct ss_store_thread *t, const void *key, size_t nkey)
{
    struct ss_store *st = t->store;
    int rc = ss_pend_record(st, &st->stripes[t->locked_stripe], t->locked_hash, key, nkey,
                            SS_PEND_DEL, NULL);
    if (rc) {
        rc = ss_index_del(st->index, key, nkey);
        if (rc && rc != -ENOENT)
            t->ctr->errors_index++;
    }
}

void ss_entry_release_pinned(struct ss_store_thread *t, const void *key, size_t nkey)
{
    struct ss_index_entry e;
    if (ss_pinned_any(t->store) && ss_entry_get(t, key, nkey, &e) == 0)
        ss_pinned_release(t->store, &e, nkey);
}

void ss_entry_drop(struct ss_store_thread *t, const void *key, size_t nkey)
{
    ss_copies_stale(t);
    ss_hot_remove(t->store, &t->store->stripes[t->locked_stripe], t->locked_hash, key,
                  nkey);
    ss_entry_release_pinned(t, key, nkey);
    ss_entry_del(t, key, nkey);
}
