/*
 * ss_index.h - the store's index: key -> struct ss_index_entry, plus a small
 * metadata table. The only part of SmartSwitch that speaks LMDB
 * (ss_index.c); everything else sees the opaque types below, so a change of
 * index engine or of its flags stays in one file.
 *
 * Several operations that must land together (a group commit, a segment's
 * reclaim, a repair's deletions) share one transaction: begin it with
 * ss_index_begin, pass the handle to the ss_index_txn_* calls, then commit
 * or abort it. A walk of the items table in key order is a cursor inside a
 * transaction.
 *
 * Int functions return 0 or -errno: -ENOENT (no such key, or the end of a
 * walk), -ENOSPC (the index is full), -EAGAIN (too many readers), -EIO.
 */
#ifndef SS_INDEX_H
#define SS_INDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One item's index entry (also the DRAM tier's and pending map's metadata). */
struct ss_index_entry {
    uint64_t cas;
    uint64_t seq;       /* store-wide write order; flush_all compares it */
    int64_t exptime;
    uint32_t flags;
    uint32_t nbytes;
    uint32_t segment;
    uint32_t offset;
    uint32_t seg_gen;
    uint32_t last_access;
    uint32_t bits;
    uint32_t pad;
};

struct ss_index;        /* the environment and its tables */
struct ss_index_txn;    /* a transaction, or a thread's reusable reader */
struct ss_index_cursor; /* a position in the items table, inside a txn */

/*
 * Open (creating) the index in dir with a map of map_bytes. Exactly one per
 * directory per process: LMDB forbids opening an environment twice. NULL
 * with err filled (it says what to check).
 */
struct ss_index *ss_index_open(const char *dir, uint64_t map_bytes, char *err, size_t errlen);
/* Sync and close. NULL is ignored. */
void ss_index_close(struct ss_index *ix);
/* Write the index's dirty pages to disk (housekeeping, after the device). */
int ss_index_sync(struct ss_index *ix);
uint64_t ss_index_count(struct ss_index *ix);
/* Bytes of the map in use (pages up to the last one used). */
uint64_t ss_index_bytes(struct ss_index *ix);

/*
 * Read one entry through a thread's reusable reader (*reader starts NULL and
 * is created on first use; free it with ss_index_reader_free). The reader is
 * reset after each call, so no snapshot pins old pages between requests.
 * 0, -ENOENT, or -errno.
 */
int ss_index_get(struct ss_index *ix, struct ss_index_txn **reader, const void *key,
                 size_t nkey, struct ss_index_entry *e);
void ss_index_reader_free(struct ss_index_txn *reader);

/* One operation in its own write transaction (the write-through paths). */
int ss_index_put(struct ss_index *ix, const void *key, size_t nkey,
                 const struct ss_index_entry *e);
int ss_index_del(struct ss_index *ix, const void *key, size_t nkey);
/* A fixed-size metadata value. 0, -ENOENT, or -EIO on a size mismatch. */
int ss_index_meta_get(struct ss_index *ix, const char *name, void *buf, size_t len);
int ss_index_meta_put(struct ss_index *ix, const char *name, const void *buf, size_t len);

/* A shared transaction: read-only unless `write`. 0 or -errno. */
int ss_index_begin(struct ss_index *ix, bool write, struct ss_index_txn **txn);
/* Called before every write transaction begins (ss_index_begin with write,
 * ss_index_put, _del, _meta_put), on the caller's thread: LMDB has one
 * writer at a time, and the store raises a low-priority writer that holds
 * the lock (ss_pending.c). Set once, before any writer runs. */
void ss_index_on_write(struct ss_index *ix, void (*fn)(void *arg), void *arg);
/* Commit (ends the txn whatever it returns). 0 or -errno. */
int ss_index_commit(struct ss_index_txn *txn);
void ss_index_abort(struct ss_index_txn *txn);
/* 0, -ENOENT, -EIO (an entry of the wrong size), -errno. */
int ss_index_txn_get(struct ss_index_txn *txn, const void *key, size_t nkey,
                     struct ss_index_entry *e);
int ss_index_txn_put(struct ss_index_txn *txn, const void *key, size_t nkey,
                     const struct ss_index_entry *e);
/* 0, -ENOENT (no such key), -errno. */
int ss_index_txn_del(struct ss_index_txn *txn, const void *key, size_t nkey);
int ss_index_txn_meta_put(struct ss_index_txn *txn, const char *name, const void *buf,
                          size_t len);
/* Empty the items table (a new device, or an index of another device). */
int ss_index_txn_drop_items(struct ss_index_txn *txn);

/* What a cursor is on. key points into the index, valid until the cursor
 * moves or its txn ends; valid is false for an entry of the wrong size
 * (e is then unset). */
struct ss_index_item {
    const void *key;
    size_t nkey;
    bool valid;
    struct ss_index_entry e;
};

int ss_index_cursor_open(struct ss_index_txn *txn, struct ss_index_cursor **cur);
void ss_index_cursor_close(struct ss_index_cursor *cur);
/* Go to the first key >= from (nfrom 0: the first key). 0, -ENOENT (none), -errno. */
int ss_index_cursor_seek(struct ss_index_cursor *cur, const void *from, size_t nfrom,
                         struct ss_index_item *it);
/* The next key. 0, -ENOENT (the end), -errno. */
int ss_index_cursor_next(struct ss_index_cursor *cur, struct ss_index_item *it);
/* Delete the entry the cursor is on (write txn). 0 or -errno. */
int ss_index_cursor_del(struct ss_index_cursor *cur);

#endif
