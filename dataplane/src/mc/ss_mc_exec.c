/*
 * ss_mc_exec.c - memcached's item semantics built on the store's per-key
 * critical sections: the storage commands (set, add, replace, append,
 * prepend, cas, with meta's stale-set), incr/decr, and the counters that go
 * with them. Shared by the text and meta protocols (and by proxy mode for
 * its local copy).
 *
 * Every function takes the key's stripe lock (or documents that the caller
 * holds it) so check-then-write sequences are atomic across workers.
 */
#include <errno.h>
#include <stdlib.h>

#include "common/ss_clock.h"
#include "ss_mc_internal.h"
#include "server/ss_worker.h"

/* Old values are copied here before a rewrite: the store's value pointer
 * is only valid until its next call. Grows once, then reused. */
static __thread struct ss_buf exec_scratch;

/* Count why a lookup missed (a miss of any kind is counted by the caller). */
void ss_mc_count_miss(struct ss_conn *c, int rc)
{
    if (rc == -ETIME)
        c->w->ctr.get_expired++;
    else if (rc == -ECANCELED)
        c->w->ctr.get_flushed++;
}

/* Count which tier answered a hit. */
void ss_mc_count_hit_tier(struct ss_conn *c, const struct ss_item *it)
{
    if (it->tier == SS_TIER_DRAM)
        c->w->ctr.hits_dram++;
    else if (it->tier == SS_TIER_DEVICE)
        c->w->ctr.hits_device++;
}

/* Write a value with explicit metadata (lock held). Returns 0 or -errno. */
static int write_item(struct ss_store_thread *t, const char *key, size_t nkey,
                      struct ss_item *it, const struct iovec *iov, int niov)
{
    it->last_access = (uint32_t)ss_clock_unix_seconds();
    return ss_store_write(t, key, nkey, it, iov, niov, SS_WRITE_KEEP_META);
}

/* memcached's do_store_item() with the lock held. */
static enum ss_mc_store_res store_locked(struct ss_conn *c, const struct ss_mc_store_req *r,
                                         uint64_t *cas_out)
{
    struct ss_store_thread *t = &c->w->st;
    struct ss_counters *ctr = &c->w->ctr;
    struct ss_item old;
    bool need_value = r->op == SS_MC_OP_APPEND || r->op == SS_MC_OP_PREPEND;
    unsigned fflags = SS_FIND_NO_BUMP | (need_value ? SS_FIND_VALUE : 0);
    int rc = ss_store_find(t, r->key, r->nkey, &old, fflags);
    bool exists = rc == 0;

    struct ss_item it = {
        .cas = 0,
        .exptime = r->exptime,
        .flags = r->flags,
        .bits = r->key_binary ? SS_MC_ITEM_KEY_BINARY : 0,
    };
    struct iovec iov[2] = {{(void *)r->value, r->vlen}, {NULL, 0}};
    int niov = 1;

    if (!exists) {
        switch (r->op) {
        case SS_MC_OP_ADD:
        case SS_MC_OP_SET:
            break;
        case SS_MC_OP_CAS:
            ctr->cas_misses++;
            return SS_MC_NOT_FOUND;
        default:
            return SS_MC_NOT_STORED;
        }
    } else {
        enum { CAS_NONE, CAS_MATCH, CAS_BADVAL, CAS_STALE } cas_res;
        if (r->cas == 0)
            cas_res = CAS_NONE;
        else if (r->cas == old.cas)
            cas_res = CAS_MATCH;
        else if (r->set_stale && r->cas < old.cas)
            cas_res = CAS_STALE;
        else
            cas_res = CAS_BADVAL;

        switch (r->op) {
        case SS_MC_OP_ADD:
            return SS_MC_NOT_STORED;
        case SS_MC_OP_CAS:
            if (cas_res == CAS_STALE) {
                /* A late writer's value is kept but marked stale, with the
                 * current ttl and win state, so readers know to refresh. */
                it.exptime = old.exptime;
                it.bits |= SS_ITEM_STALE | (old.bits & SS_ITEM_WIN_SENT);
            } else if (cas_res != CAS_MATCH) {
                ctr->cas_badval++;
                return SS_MC_EXISTS;
            }
            ctr->cas_hits++;
            break;
        case SS_MC_OP_APPEND:
        case SS_MC_OP_PREPEND: {
            if (cas_res != CAS_NONE && cas_res != CAS_MATCH)
                return SS_MC_EXISTS;
            if (!ss_mc_item_fits(c, r->nkey, old.flags, (size_t)old.nbytes + r->vlen))
                return SS_MC_NOT_STORED;
            exec_scratch.len = 0;
            if (ss_buf_append(&exec_scratch, t->value, t->value_len))
                return SS_MC_STORE_ERROR;
            struct iovec o = {exec_scratch.data, exec_scratch.len};
            if (r->op == SS_MC_OP_APPEND) {
                iov[1] = iov[0];
                iov[0] = o;
            } else {
                iov[1] = o;
            }
            niov = 2;
            it.flags = old.flags;
            it.exptime = old.exptime;
            /* memcached allocates a fresh item for the joined value: no
             * state bits carry over, not even "key was base64". */
            it.bits = 0;
            break;
        }
        default:
            break;
        }
    }

    rc = write_item(t, r->key, r->nkey, &it, iov, niov);
    if (rc)
        return SS_MC_STORE_ERROR;
    *cas_out = it.cas;
    return SS_MC_STORED;
}

/*
 * Apply one storage command (the value has fully arrived and been checked).
 * Returns the memcached outcome; *cas_out gets the item's new cas when
 * stored, else 0.
 */
enum ss_mc_store_res ss_mc_exec_store(struct ss_conn *c, const struct ss_mc_store_req *r,
                                      uint64_t *cas_out)
{
    struct ss_store_thread *t = &c->w->st;
    *cas_out = 0;
    c->w->ctr.cmd_set++;
    ss_store_lock(t, r->key, r->nkey);
    enum ss_mc_store_res res = store_locked(c, r, cas_out);
    ss_store_unlock(t);
    return res;
}

/* Drop a key if present: a refused set must not leave the old value. */
void ss_mc_exec_unlink(struct ss_conn *c, const char *key, size_t nkey)
{
    struct ss_store_thread *t = &c->w->st;
    ss_store_lock(t, key, nkey);
    ss_store_remove(t, key, nkey);
    ss_store_unlock(t);
}

/*
 * incr/decr (memcached's do_add_delta) with the lock held: a value that is
 * not a decimal number is refused; incr wraps at 2^64, decr stops at 0; a
 * result no longer than the old value is written in place, right-padded
 * with spaces to the old length; a longer one replaces the item. Both get a
 * fresh cas. Returns the outcome; buf gets the number, *it the new item.
 */
enum ss_mc_delta_res ss_mc_exec_delta_locked(struct ss_conn *c, const char *key, size_t nkey,
                                             bool incr, uint64_t delta, uint64_t req_cas,
                                             char *buf, struct ss_item *it)
{
    struct ss_store_thread *t = &c->w->st;
    struct ss_counters *ctr = &c->w->ctr;
    int rc = ss_store_find(t, key, nkey, it, SS_FIND_VALUE | SS_FIND_NO_BUMP);
    if (rc)
        return SS_MC_DELTA_NOT_FOUND;
    if (t->value_len == 0)
        return SS_MC_DELTA_NON_NUMERIC;
    if (req_cas != 0 && it->cas != req_cas)
        return SS_MC_DELTA_CAS_MISMATCH;
    uint64_t v;
    if (!ss_mc_parse_u64(t->value, t->value_len, &v))
        return SS_MC_DELTA_NON_NUMERIC;
    if (incr)
        v += delta;
    else
        v = delta > v ? 0 : v - delta;
    if (incr)
        ctr->incr_hits++;
    else
        ctr->decr_hits++;

    char *end = ss_mc_u64_to(buf, v);
    *end = '\0';
    size_t res = (size_t)(end - buf);
    size_t old_len = t->value_len;
    char tmp[SS_MC_NUM_MAX + 64];
    struct iovec iov;
    if (res <= old_len) {
        /* In place: keep the length (memcached pads with spaces). */
        exec_scratch.len = 0;
        if (ss_buf_reserve(&exec_scratch, old_len))
            return SS_MC_DELTA_ERROR;
        memcpy(exec_scratch.data, buf, res);
        memset(exec_scratch.data + res, ' ', old_len - res);
        iov.iov_base = exec_scratch.data;
        iov.iov_len = old_len;
        /* the same item in memcached: its state bits stay */
    } else {
        /* a new item in memcached: fresh state, "key was base64" too */
        memcpy(tmp, buf, res);
        iov.iov_base = tmp;
        iov.iov_len = res;
        it->bits = 0;
    }
    it->cas = 0;
    if (write_item(t, key, nkey, it, &iov, 1))
        return SS_MC_DELTA_ERROR;
    return SS_MC_DELTA_OK;
}
