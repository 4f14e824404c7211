/*
 * ss_sweep.c - the store's background walks of the index, a batch per
 * housekeeping tick, each resuming at the key it stopped at:
 *
 *   - feeding every key to a rebuild of the DRAM filter (and, at open,
 *     building it whole): the filter knows hashes only, so the walk that
 *     reads the index in bulk is here, not in ss_filter.c;
 *   - deleting the entries a flush_all made dead.
 *
 * Uses the index's cursor, the filter and the committer; called from
 * ss_store.c's open and housekeeping only (the control thread).
 */
#include <errno.h>
#include <string.h>

#include "common/ss_hash.h"
#include "ss_store_internal.h"

#define PURGE_BATCH 20000u        /* entries looked at per tick */
#define FILTER_SWEEP_BATCH 32768u /* keys fed to a filter rebuild per tick */

/*
 * Feed up to max index keys to the filter being rebuilt, resuming at the
 * last key fed (fed again: harmless). With count_pinned (the build at
 * open) the pinned figures are built from the same walk; a key resumed at
 * was counted already. Returns 1 when the walk reached the end, 0 if not
 * yet, -errno.
 */
static int filter_feed_batch(struct ss_store *st, unsigned max, bool count_pinned)
{
    struct ss_sweep_pos *w = &st->filter_sweep;
    struct ss_index_txn *txn;
    struct ss_index_cursor *cur;
    int rc = ss_index_begin(st->index, false, &txn);
    if (rc)
        return rc;
    rc = ss_index_cursor_open(txn, &cur);
    if (rc) {
        ss_index_abort(txn);
        return rc;
    }
    struct ss_index_item it;
    bool resumed = w->nkey != 0;
    rc = ss_index_cursor_seek(cur, w->key, w->nkey, &it);
    for (unsigned n = 0; rc == 0 && n < max; n++) {
        ss_filter_rebuild_feed(st, ss_hash64(it.key, it.nkey));
        bool seen = n == 0 && resumed && it.nkey == w->nkey && !memcmp(it.key, w->key, w->nkey);
        if (count_pinned && it.valid && !seen)
            ss_pinned_note(st, &it.e, it.nkey);
        if (it.nkey <= sizeof(w->key)) {
            memcpy(w->key, it.key, it.nkey);
            w->nkey = it.nkey;
        }
        rc = ss_index_cursor_next(cur, &it);
    }
    ss_index_cursor_close(cur);
    ss_index_abort(txn);
    if (rc == -ENOENT)
        return 1;
    return rc;
}

/* Steps 1 and 2 of a rebuild (ss_filter.c): a filter sized for twice what
 * the index holds plus what is on its way there, then what is pending
 * committed so the walk meets it. 0 or -ENOMEM. */
static int filter_rebuild_begin(struct ss_store *st)
{
    uint64_t items = ss_index_count(st->index) + atomic_load(&st->pending_ops);
    int rc = ss_filter_rebuild_begin(st, items * 2);
    if (rc)
        return rc;
    if (st->committer_running)
        ss_pend_commit_now(st, NULL);
    struct ss_sweep_pos *w = &st->filter_sweep;
    w->nkey = 0;
    w->active = true;
    return 0;
}

static void filter_rebuild_end(struct ss_store *st, bool done)
{
    if (done)
        ss_filter_rebuild_finish(st);
    else
        ss_filter_rebuild_abandon(st);
    st->filter_sweep.active = false;
}

/* At open, before anyone else uses the store: build the whole filter, and
 * the pinned figures from the same walk. */
int ss_sweep_filter_build(struct ss_store *st)
{
    int rc = filter_rebuild_begin(st);
    while (rc == 0)
        rc = filter_feed_batch(st, FILTER_SWEEP_BATCH, true);
    filter_rebuild_end(st, rc == 1);
    st->filter_rebuilds = 0; /* the first build is not a rebuild */
    return rc < 0 ? rc : 0;
}

/*
 * One housekeeping step of the filter: start a rebuild when it is full, or
 * feed it one more batch. Returns 0 or -errno (a failed rebuild is
 * abandoned; the old filter stays, still correct).
 */
int ss_sweep_filter_step(struct ss_store *st)
{
    if (!st->filter_sweep.active) {
        if (!ss_filter_full(st))
            return 0;
        int rc = filter_rebuild_begin(st);
        if (rc)
            return rc;
    }
    int rc = filter_feed_batch(st, FILTER_SWEEP_BATCH, false);
    if (rc != 0)
        filter_rebuild_end(st, rc == 1);
    return rc < 0 ? rc : 0;
}

/*
 * Delete up to PURGE_BATCH index entries that a flush_all made dead,
 * resuming where the last pass stopped. Returns 1 when the index is clean.
 */
int ss_sweep_purge_flushed(struct ss_store *st, uint64_t flush_seq)
{
    struct ss_sweep_pos *w = &st->purge_sweep;
    struct ss_index_txn *txn;
    struct ss_index_cursor *cur;
    if (ss_index_begin(st->index, true, &txn))
        return 0;
    if (ss_index_cursor_open(txn, &cur)) {
        ss_index_abort(txn);
        return 0;
    }
    struct ss_index_item it;
    int rc = ss_index_cursor_seek(cur, w->key, w->nkey, &it);
    for (unsigned seen = 0; rc == 0 && seen < PURGE_BATCH; seen++) {
        /* A pinned entry is left for its key's stripe lock (a look-up or
         * the copy forward drops it): its figures change only under it. */
        if (it.valid && it.e.seq < flush_seq && !(it.e.bits & SS_ITEM_PINNED))
            ss_index_cursor_del(cur);
        rc = ss_index_cursor_next(cur, &it);
    }
    int done = rc != 0;
    if (!done) { /* resume at the first key not yet seen */
        w->nkey = it.nkey;
        memcpy(w->key, it.key, it.nkey);
    } else {
        w->nkey = 0;
    }
    ss_index_cursor_close(cur);
    if (ss_index_commit(txn))
        return 0;
    return done;
}

/* A walk for callers outside the store (the object plane's open and purges). */
int ss_store_keys(struct ss_store *st, const void *prefix, size_t nprefix,
                  int (*fn)(void *arg, const void *key, size_t nkey), void *arg)
{
    struct ss_index_txn *txn;
    struct ss_index_cursor *cur;
    int rc = ss_index_begin(st->index, false, &txn);
    if (rc)
        return rc;
    rc = ss_index_cursor_open(txn, &cur);
    if (rc) {
        ss_index_abort(txn);
        return rc;
    }
    /* A copy: the cursor's key is only valid until it moves, and fn may
     * change the index (its own transactions; ours is a snapshot). */
    char key[SS_KEY_MAX_LENGTH];
    struct ss_index_item it;
    rc = ss_index_cursor_seek(cur, prefix, nprefix, &it);
    while (rc == 0) {
        if (it.nkey < nprefix || memcmp(it.key, prefix, nprefix) != 0)
            break;
        size_t nkey = it.nkey < sizeof(key) ? it.nkey : sizeof(key);
        memcpy(key, it.key, nkey);
        rc = fn(arg, key, nkey);
        if (rc)
            break;
        rc = ss_index_cursor_next(cur, &it);
    }
    ss_index_cursor_close(cur);
    ss_index_abort(txn);
    return rc == -ENOENT ? 0 : rc;
}
