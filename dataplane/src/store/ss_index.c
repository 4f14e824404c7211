/*
 * ss_index.c - the LMDB index: key -> struct ss_index_entry, plus a small
 * metadata table (format, log head and generations, cas reservation, flush
 * marks).
 *
 * Exactly one struct ss_store opens the environment; LMDB forbids opening
 * one environment twice in a process. Durability is traded for speed with
 * MDB_NOSYNC|MDB_WRITEMAP|MDB_NOMETASYNC: a process crash loses nothing (the
 * pages are in the kernel), housekeeping syncs about once a second, and
 * every record is verified on read, so an index entry that outlived its data
 * is dropped rather than served.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "ss_store_internal.h"

int ss_mdb_errno(int rc)
{
    switch (rc) {
    case 0:
        return 0;
    case MDB_NOTFOUND:
        return -ENOENT;
    case MDB_MAP_FULL:
    case MDB_TXN_FULL:
        return -ENOSPC;
    case MDB_READERS_FULL:
        return -EAGAIN;
    default:
        return rc > 0 ? -rc : -EIO;
    }
}

int ss_index_open(struct ss_store *st, char *err, size_t errlen)
{
    int rc = mdb_env_create(&st->env);
    if (rc) {
        snprintf(err, errlen, "cannot create the LMDB environment: %s", mdb_strerror(rc));
        return -EIO;
    }
    uint64_t map = st->set.index_map_bytes;
    if (!map) /* sparse: small items can take more index than device bytes */
        map = 2 * st->set.device_bytes + (64ull << 20);
    mdb_env_set_mapsize(st->env, (size_t)map);
    mdb_env_set_maxdbs(st->env, 4);
    mdb_env_set_maxreaders(st->env, 512);
    rc = mdb_env_open(st->env, st->index_dir,
                      MDB_NOSYNC | MDB_NOMETASYNC | MDB_WRITEMAP | MDB_NOTLS | MDB_NORDAHEAD,
                      0600);
    if (rc) {
        snprintf(err, errlen, "cannot open the index in %s: %s; check storage.dir "
                 "(it must be a writable directory on a local file system)",
                 st->index_dir, mdb_strerror(rc));
        mdb_env_close(st->env);
        st->env = NULL;
        return -EIO;
    }
    MDB_txn *txn;
    rc = mdb_txn_begin(st->env, NULL, 0, &txn);
    if (!rc)
        rc = mdb_dbi_open(txn, "items", MDB_CREATE, &st->items);
    if (!rc)
        rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &st->meta);
    if (!rc)
        rc = mdb_txn_commit(txn);
    else
        mdb_txn_abort(txn);
    if (rc) {
        snprintf(err, errlen, "cannot open the index tables in %s: %s", st->index_dir,
                 mdb_strerror(rc));
        mdb_env_close(st->env);
        st->env = NULL;
        return -EIO;
    }
    return 0;
}

void ss_index_close(struct ss_store *st)
{
    if (!st->env)
        return;
    mdb_env_sync(st->env, 1);
    mdb_env_close(st->env);
    st->env = NULL;
}

/*
 * Look a key up through the thread's reusable read transaction (renewed per
 * call and reset after, so no snapshot pins old pages between requests).
 */
int ss_index_get(struct ss_store_thread *t, const void *key, size_t nkey,
                 struct ss_index_entry *e)
{
    struct ss_store *st = t->store;
    MDB_txn *txn = t->rtxn;
    int rc = txn ? mdb_txn_renew(txn) : mdb_txn_begin(st->env, NULL, MDB_RDONLY, &txn);
    if (rc) {
        t->ctr->errors_index++;
        return ss_mdb_errno(rc);
    }
    t->rtxn = txn;
    MDB_val k = {.mv_size = nkey, .mv_data = (void *)key}, v;
    rc = mdb_get(txn, st->items, &k, &v);
    if (!rc) {
        if (v.mv_size == sizeof(*e))
            memcpy(e, v.mv_data, sizeof(*e));
        else
            rc = MDB_CORRUPTED;
    }
    mdb_txn_reset(txn);
    if (rc && rc != MDB_NOTFOUND)
        t->ctr->errors_index++;
    return ss_mdb_errno(rc);
}

int ss_index_put(struct ss_store *st, const void *key, size_t nkey, const struct ss_index_entry *e)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(st->env, NULL, 0, &txn);
    if (rc)
        return ss_mdb_errno(rc);
    MDB_val k = {.mv_size = nkey, .mv_data = (void *)key};
    MDB_val v = {.mv_size = sizeof(*e), .mv_data = (void *)e};
    rc = mdb_put(txn, st->items, &k, &v, 0);
    if (rc) {
        mdb_txn_abort(txn);
        return ss_mdb_errno(rc);
    }
    return ss_mdb_errno(mdb_txn_commit(txn));
}

int ss_index_del(struct ss_store *st, const void *key, size_t nkey)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(st->env, NULL, 0, &txn);
    if (rc)
        return ss_mdb_errno(rc);
    MDB_val k = {.mv_size = nkey, .mv_data = (void *)key};
    rc = mdb_del(txn, st->items, &k, NULL);
    if (rc) {
        mdb_txn_abort(txn);
        return ss_mdb_errno(rc);
    }
    return ss_mdb_errno(mdb_txn_commit(txn));
}

/* Read a fixed-size metadata value. 0, -ENOENT, or -EIO on a size mismatch. */
int ss_index_meta_get(struct ss_store *st, const char *name, void *buf, size_t len)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(st->env, NULL, MDB_RDONLY, &txn);
    if (rc)
        return ss_mdb_errno(rc);
    MDB_val k = {.mv_size = strlen(name), .mv_data = (void *)name}, v;
    rc = mdb_get(txn, st->meta, &k, &v);
    if (!rc) {
        if (v.mv_size != len)
            rc = MDB_CORRUPTED;
        else
            memcpy(buf, v.mv_data, len);
    }
    mdb_txn_abort(txn);
    return ss_mdb_errno(rc);
}

int ss_index_meta_put(struct ss_store *st, const char *name, const void *buf, size_t len)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(st->env, NULL, 0, &txn);
    if (rc)
        return ss_mdb_errno(rc);
    MDB_val k = {.mv_size = strlen(name), .mv_data = (void *)name};
    MDB_val v = {.mv_size = len, .mv_data = (void *)buf};
    rc = mdb_put(txn, st->meta, &k, &v, 0);
    if (rc) {
        mdb_txn_abort(txn);
        return ss_mdb_errno(rc);
    }
    return ss_mdb_errno(mdb_txn_commit(txn));
}

uint64_t ss_index_count(struct ss_store *st)
{
    MDB_txn *txn;
    MDB_stat ms;
    if (mdb_txn_begin(st->env, NULL, MDB_RDONLY, &txn))
        return 0;
    int rc = mdb_stat(txn, st->items, &ms);
    mdb_txn_abort(txn);
    return rc ? 0 : (uint64_t)ms.ms_entries;
}

/*
 * After an unclean stop, drop every index entry whose record does not verify
 * (the open segment's tail may never have reached the device). Returns the
 * number dropped or -errno.
 */
long ss_index_repair(struct ss_store *st, struct ss_counters *ctr)
{
    struct ss_store_thread t;
    int rc = ss_store_thread_init(&t, st, ctr);
    if (rc)
        return rc;
    struct ss_buf doomed = {0}; /* [nkey][key] ... */
    long dropped = 0;
    MDB_txn *txn;
    MDB_cursor *cur;
    rc = mdb_txn_begin(st->env, NULL, MDB_RDONLY, &txn);
    if (!rc)
        rc = mdb_cursor_open(txn, st->items, &cur);
    if (rc) {
        ss_store_thread_fini(&t);
        return ss_mdb_errno(rc);
    }
    MDB_val k, v;
    int op = MDB_FIRST;
    while (mdb_cursor_get(cur, &k, &v, op) == 0) {
        op = MDB_NEXT;
        struct ss_index_entry e;
        int bad = v.mv_size != sizeof(e) || k.mv_size > SS_KEY_MAX_LENGTH;
        if (!bad) {
            memcpy(&e, v.mv_data, sizeof(e));
            bad = ss_log_read(&t, k.mv_data, k.mv_size, &e) != 0;
        }
        if (bad) {
            uint8_t n = (uint8_t)(k.mv_size > 255 ? 255 : k.mv_size);
            if (ss_buf_append(&doomed, &n, 1) || ss_buf_append(&doomed, k.mv_data, n))
                break;
            dropped++;
        }
    }
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    if (dropped) {
        rc = mdb_txn_begin(st->env, NULL, 0, &txn);
        if (!rc) {
            for (size_t off = 0; off < doomed.len;) {
                uint8_t n = (uint8_t)doomed.data[off];
                MDB_val dk = {.mv_size = n, .mv_data = doomed.data + off + 1};
                mdb_del(txn, st->items, &dk, NULL);
                off += 1u + n;
            }
            rc = mdb_txn_commit(txn);
        }
        ctr->errors_checksum += (uint64_t)dropped;
    }
    ss_buf_free(&doomed);
    ss_store_thread_fini(&t);
    return rc ? ss_mdb_errno(rc) : dropped;
}
