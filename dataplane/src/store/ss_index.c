/*
 * ss_index.c - the LMDB index: key -> struct ss_index_entry, plus a small
 * metadata table (format, log head and generations, cas reservation, flush
 * marks). The one file that calls LMDB (ss_index.h says why).
 *
 * Exactly one struct ss_store opens the environment; LMDB forbids opening
 * one environment twice in a process. Durability is traded for speed with
 * MDB_NOSYNC|MDB_WRITEMAP|MDB_NOMETASYNC: a process crash loses nothing (the
 * pages are in the kernel), housekeeping syncs about once a second, and
 * every record is verified on read, so an index entry that outlived its data
 * is dropped rather than served.
 *
 * The opaque handles cost nothing: struct ss_index_txn is an MDB_txn and
 * struct ss_index_cursor an MDB_cursor under another name, and a txn finds
 * its tables through the environment's user context, so sharing a
 * transaction allocates nothing beyond what LMDB does.
 */
#include <errno.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ss_index.h"

struct ss_index {
    MDB_env *env;
    MDB_dbi items;
    MDB_dbi meta;
    void (*on_write)(void *arg); /* before a write transaction begins */
    void *on_write_arg;
};

void ss_index_on_write(struct ss_index *ix, void (*fn)(void *arg), void *arg)
{
    ix->on_write = fn;
    ix->on_write_arg = arg;
}

static int write_txn_begin(struct ss_index *ix, MDB_txn **txn)
{
    if (ix->on_write)
        ix->on_write(ix->on_write_arg);
    return mdb_txn_begin(ix->env, NULL, 0, txn);
}

static inline MDB_txn *mdb_txn_of(struct ss_index_txn *txn) { return (MDB_txn *)txn; }
static inline MDB_cursor *mdb_cursor_of(struct ss_index_cursor *c) { return (MDB_cursor *)c; }

static struct ss_index *index_of_txn(MDB_txn *txn)
{
    return mdb_env_get_userctx(mdb_txn_env(txn));
}

static int index_errno(int rc)
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

static int open_tables(struct ss_index *ix)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(ix->env, NULL, 0, &txn);
    if (rc)
        return rc;
    rc = mdb_dbi_open(txn, "items", MDB_CREATE, &ix->items);
    if (!rc)
        rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &ix->meta);
    if (rc) {
        mdb_txn_abort(txn);
        return rc;
    }
    return mdb_txn_commit(txn);
}

struct ss_index *ss_index_open(const char *dir, uint64_t map_bytes, char *err, size_t errlen)
{
    struct ss_index *ix = calloc(1, sizeof(*ix));
    if (!ix) {
        snprintf(err, errlen, "out of memory opening the index in %s", dir);
        return NULL;
    }
    int rc = mdb_env_create(&ix->env);
    if (rc) {
        snprintf(err, errlen, "cannot create the LMDB environment: %s", mdb_strerror(rc));
        free(ix);
        return NULL;
    }
    mdb_env_set_userctx(ix->env, ix);
    mdb_env_set_mapsize(ix->env, (size_t)map_bytes);
    mdb_env_set_maxdbs(ix->env, 4);
    mdb_env_set_maxreaders(ix->env, 512);
    rc = mdb_env_open(ix->env, dir,
                      MDB_NOSYNC | MDB_NOMETASYNC | MDB_WRITEMAP | MDB_NOTLS | MDB_NORDAHEAD,
                      0600);
    if (rc) {
        snprintf(err, errlen, "cannot open the index in %s: %s; check storage.dir "
                 "(it must be a writable directory on a local file system)",
                 dir, mdb_strerror(rc));
        goto fail;
    }
    rc = open_tables(ix);
    if (rc) {
        snprintf(err, errlen, "cannot open the index tables in %s: %s", dir, mdb_strerror(rc));
        goto fail;
    }
    return ix;
fail:
    mdb_env_close(ix->env);
    free(ix);
    return NULL;
}

void ss_index_close(struct ss_index *ix)
{
    if (!ix)
        return;
    mdb_env_sync(ix->env, 1);
    mdb_env_close(ix->env);
    free(ix);
}

int ss_index_sync(struct ss_index *ix)
{
    return index_errno(mdb_env_sync(ix->env, 1));
}

uint64_t ss_index_count(struct ss_index *ix)
{
    MDB_txn *txn;
    MDB_stat ms;
    if (mdb_txn_begin(ix->env, NULL, MDB_RDONLY, &txn))
        return 0;
    int rc = mdb_stat(txn, ix->items, &ms);
    mdb_txn_abort(txn);
    return rc ? 0 : (uint64_t)ms.ms_entries;
}

uint64_t ss_index_bytes(struct ss_index *ix)
{
    MDB_envinfo info;
    MDB_stat ms;
    if (mdb_env_info(ix->env, &info) || mdb_env_stat(ix->env, &ms))
        return 0;
    return (uint64_t)(info.me_last_pgno + 1) * ms.ms_psize;
}

/* An entry's bytes as stored: 0, or MDB_CORRUPTED for the wrong size. */
static int entry_from(const MDB_val *v, struct ss_index_entry *e)
{
    if (v->mv_size != sizeof(*e))
        return MDB_CORRUPTED;
    memcpy(e, v->mv_data, sizeof(*e));
    return 0;
}

int ss_index_get(struct ss_index *ix, struct ss_index_txn **reader, const void *key,
                 size_t nkey, struct ss_index_entry *e)
{
    MDB_txn *txn = mdb_txn_of(*reader);
    int rc = txn ? mdb_txn_renew(txn) : mdb_txn_begin(ix->env, NULL, MDB_RDONLY, &txn);
    if (rc)
        return index_errno(rc);
    *reader = (struct ss_index_txn *)txn;
    MDB_val k = {.mv_size = nkey, .mv_data = (void *)key}, v;
    rc = mdb_get(txn, ix->items, &k, &v);
    if (!rc)
        rc = entry_from(&v, e);
    mdb_txn_reset(txn);
    return index_errno(rc);
}

void ss_index_reader_free(struct ss_index_txn *reader)
{
    if (reader)
        mdb_txn_abort(mdb_txn_of(reader));
}

/* One put or delete in a transaction of its own. */
static int write_one(struct ss_index *ix, MDB_dbi dbi, const void *key, size_t nkey,
                     const void *val, size_t len, bool del)
{
    MDB_txn *txn;
    int rc = write_txn_begin(ix, &txn);
    if (rc)
        return index_errno(rc);
    MDB_val k = {.mv_size = nkey, .mv_data = (void *)key};
    MDB_val v = {.mv_size = len, .mv_data = (void *)val};
    rc = del ? mdb_del(txn, dbi, &k, NULL) : mdb_put(txn, dbi, &k, &v, 0);
    if (rc) {
        mdb_txn_abort(txn);
        return index_errno(rc);
    }
    return index_errno(mdb_txn_commit(txn));
}

int ss_index_put(struct ss_index *ix, const void *key, size_t nkey,
                 const struct ss_index_entry *e)
{
    return write_one(ix, ix->items, key, nkey, e, sizeof(*e), false);
}

int ss_index_del(struct ss_index *ix, const void *key, size_t nkey)
{
    return write_one(ix, ix->items, key, nkey, NULL, 0, true);
}

int ss_index_meta_get(struct ss_index *ix, const char *name, void *buf, size_t len)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(ix->env, NULL, MDB_RDONLY, &txn);
    if (rc)
        return index_errno(rc);
    MDB_val k = {.mv_size = strlen(name), .mv_data = (void *)name}, v;
    rc = mdb_get(txn, ix->meta, &k, &v);
    if (!rc) {
        if (v.mv_size != len)
            rc = MDB_CORRUPTED;
        else
            memcpy(buf, v.mv_data, len);
    }
    mdb_txn_abort(txn);
    return index_errno(rc);
}

int ss_index_meta_put(struct ss_index *ix, const char *name, const void *buf, size_t len)
{
    return write_one(ix, ix->meta, name, strlen(name), buf, len, false);
}

int ss_index_begin(struct ss_index *ix, bool write, struct ss_index_txn **txn)
{
    MDB_txn *t;
    int rc = write ? write_txn_begin(ix, &t) : mdb_txn_begin(ix->env, NULL, MDB_RDONLY, &t);
    *txn = rc ? NULL : (struct ss_index_txn *)t;
    return index_errno(rc);
}

int ss_index_commit(struct ss_index_txn *txn)
{
    return index_errno(mdb_txn_commit(mdb_txn_of(txn)));
}

void ss_index_abort(struct ss_index_txn *txn)
{
    mdb_txn_abort(mdb_txn_of(txn));
}

int ss_index_txn_get(struct ss_index_txn *txn, const void *key, size_t nkey,
                     struct ss_index_entry *e)
{
    MDB_txn *t = mdb_txn_of(txn);
    MDB_val k = {.mv_size = nkey, .mv_data = (void *)key}, v;
    int rc = mdb_get(t, index_of_txn(t)->items, &k, &v);
    if (!rc)
        rc = entry_from(&v, e);
    return index_errno(rc);
}

int ss_index_txn_put(struct ss_index_txn *txn, const void *key, size_t nkey,
                     const struct ss_index_entry *e)
{
    MDB_txn *t = mdb_txn_of(txn);
    MDB_val k = {.mv_size = nkey, .mv_data = (void *)key};
    MDB_val v = {.mv_size = sizeof(*e), .mv_data = (void *)e};
    return index_errno(mdb_put(t, index_of_txn(t)->items, &k, &v, 0));
}

int ss_index_txn_del(struct ss_index_txn *txn, const void *key, size_t nkey)
{
    MDB_txn *t = mdb_txn_of(txn);
    MDB_val k = {.mv_size = nkey, .mv_data = (void *)key};
    return index_errno(mdb_del(t, index_of_txn(t)->items, &k, NULL));
}

int ss_index_txn_meta_put(struct ss_index_txn *txn, const char *name, const void *buf,
                          size_t len)
{
    MDB_txn *t = mdb_txn_of(txn);
    MDB_val k = {.mv_size = strlen(name), .mv_data = (void *)name};
    MDB_val v = {.mv_size = len, .mv_data = (void *)buf};
    return index_errno(mdb_put(t, index_of_txn(t)->meta, &k, &v, 0));
}

int ss_index_txn_drop_items(struct ss_index_txn *txn)
{
    MDB_txn *t = mdb_txn_of(txn);
    return index_errno(mdb_drop(t, index_of_txn(t)->items, 0));
}

int ss_index_cursor_open(struct ss_index_txn *txn, struct ss_index_cursor **cur)
{
    MDB_txn *t = mdb_txn_of(txn);
    MDB_cursor *c;
    int rc = mdb_cursor_open(t, index_of_txn(t)->items, &c);
    *cur = rc ? NULL : (struct ss_index_cursor *)c;
    return index_errno(rc);
}

void ss_index_cursor_close(struct ss_index_cursor *cur)
{
    if (cur)
        mdb_cursor_close(mdb_cursor_of(cur));
}

static int cursor_get(struct ss_index_cursor *cur, MDB_val *k, MDB_cursor_op op,
                      struct ss_index_item *it)
{
    MDB_val v;
    int rc = mdb_cursor_get(mdb_cursor_of(cur), k, &v, op);
    if (rc)
        return index_errno(rc);
    it->key = k->mv_data;
    it->nkey = k->mv_size;
    it->valid = entry_from(&v, &it->e) == 0;
    return 0;
}

int ss_index_cursor_seek(struct ss_index_cursor *cur, const void *from, size_t nfrom,
                         struct ss_index_item *it)
{
    MDB_val k = {.mv_size = nfrom, .mv_data = (void *)from};
    return cursor_get(cur, &k, nfrom ? MDB_SET_RANGE : MDB_FIRST, it);
}

int ss_index_cursor_next(struct ss_index_cursor *cur, struct ss_index_item *it)
{
    MDB_val k;
    return cursor_get(cur, &k, MDB_NEXT, it);
}

int ss_index_cursor_del(struct ss_index_cursor *cur)
{
    return index_errno(mdb_cursor_del(mdb_cursor_of(cur), 0));
}
