/*
 * ss_store.h - SmartSwitch's item store: DRAM hot tier, LMDB index, and a log
 * of fixed-size segments on a device.
 *
 * The store is a storage engine, not a protocol: memcached semantics (add vs
 * set, cas checks, incr, meta flags) live in ss_mc_exec.c and are built from
 * the per-key critical sections below. Every operation on a key happens with
 * that key's stripe lock held, which is what makes check-then-write sequences
 * (cas, add, incr, append) atomic across worker threads:
 *
 *     ss_store_lock(t, key, nkey);
 *     rc = ss_store_find(t, key, nkey, &item, SS_FIND_VALUE);
 *     ... decide ...
 *     rc = ss_store_write(t, key, nkey, &item, iov, niov, 0);
 *     ss_store_unlock(t);
 *
 * A thread holds at most one stripe lock at a time.
 *
 * Layout: the device holds a superblock and N segments. Writes append records
 * (header, key, value, checksummed) to the open segment in memory; it is
 * written to the device when full or by ss_store_housekeep(). Reusing the
 * oldest segment is the eviction (FIFO, like memcached's extstore). The LMDB
 * index maps key -> (segment, offset, generation, metadata); a record whose
 * generation or checksum does not match is dropped, never served.
 *
 * Pinned records (SS_WRITE_PINNED) are the exception: a store of record's
 * data (the object store's chunks), never evicted. Before their segment is
 * reused they are copied into the open segment and their entries moved
 * there; a pinned write that would leave the ring too little room to do that
 * fails with -ENOSPC. The DRAM tier caches them like any item.
 */
#ifndef SS_STORE_H
#define SS_STORE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "ss_buf.h"
#include "ss_counters.h"

#define SS_KEY_MAX_LENGTH 250 /* protocol.txt: "the key must not exceed 250 characters" */

struct ss_store;
struct ss_index_txn; /* the index's own (ss_store_thread keeps a reader) */
struct ss_io;        /* a thread's io_uring (ss_read.c) */
struct ss_read;      /* one asynchronous device read (ss_read.c) */

/* Lock stripes, which are also the DRAM tier's shards. A power of two. */
#define SS_STRIPES 256u

/* cffi: begin */
struct ss_store_settings {
    const char *index_dir;       /* LMDB environment directory (created) */
    const char *device_path;     /* file or raw block device */
    uint64_t device_bytes;       /* bytes of the device this pool may use */
    uint32_t segment_bytes;      /* segment size; > item_size_max + record header */
    uint64_t hot_bytes;          /* DRAM hot tier budget (0 = no DRAM tier) */
    uint32_t item_size_max;      /* largest value accepted */
    uint64_t index_map_bytes;    /* LMDB map size (0 = derive from device size) */
    uint32_t flush_interval_ms;  /* write a partly filled open segment after this */
    /* Appended (issue 4): a pool is a region of its device. */
    uint64_t device_offset;      /* where the pool starts (its superblock); 4 KiB aligned */
    const char *pool_name;       /* shown in stats as pool:<name>:...; NULL = "items" */
    /* Appended (direct I/O): open the device O_DIRECT (storage.devices[].direct_io). */
    int direct_io;
    /* Appended (SPDK data path): an opened struct ss_device * to use instead
     * of opening device_path (which may then be NULL; direct_io is ignored).
     * ss_store_open takes it over whether it succeeds or not: the store
     * closes it on failure and in ss_store_close. */
    void *device;
    /* Appended (direct segment writes): without direct_io, write segments
     * around the page cache all the same (storage.devices[].direct_writes). */
    int direct_writes;
};
/* cffi: end */

/* Bits of struct ss_item.bits; meta protocol state kept with the item. */
#define SS_ITEM_FETCHED  0x01u /* read at least once since it was stored */
#define SS_ITEM_STALE    0x02u /* marked stale by meta invalidation (md I, ms I) */
#define SS_ITEM_WIN_SENT 0x04u /* a W (win) token was handed out for it */
/* Written with SS_WRITE_PINNED: never evicted from the log. Find reports it;
 * a write sets it only through the flag, and meta updates keep it. */
#define SS_ITEM_PINNED   0x08u
/* Written with SS_WRITE_DRAM_ONLY: the value lives in the DRAM tier only,
 * with no log record and no index entry, so dropping it costs no index
 * delete. A write or a meta update never carries it over to another copy. */
#define SS_ITEM_DRAM_ONLY 0x10u

enum ss_tier { SS_TIER_NONE = 0, SS_TIER_DRAM = 1, SS_TIER_DEVICE = 2 };

/* One item's metadata, as the store returns it and as a writer passes it. */
struct ss_item {
    uint64_t cas;         /* write: 0 = assign a fresh unique cas */
    int64_t exptime;      /* absolute unix seconds; 0 = never expires */
    uint32_t flags;       /* client flags */
    uint32_t nbytes;      /* value length (find fills it; write ignores it) */
    uint32_t last_access; /* unix seconds of the last fetch or store */
    uint32_t bits;        /* SS_ITEM_* */
    uint32_t tier;        /* enum ss_tier; where find found it */
};

/* Per-thread store state: one per worker thread (and per control thread). */
struct ss_store_thread {
    struct ss_store *store;
    struct ss_counters *ctr;   /* counters this thread adds to */
    /* After a successful ss_store_find with SS_FIND_VALUE: the value. Valid
     * until the next store call on this thread or ss_store_unlock. */
    const char *value;
    uint32_t value_len;
    /* private */
    struct ss_index_txn *rtxn; /* reusable index reader */
    struct ss_buf scratch;     /* device reads land here */
    int locked_stripe;         /* -1 when no stripe lock is held */
    uint64_t locked_hash;      /* ss_hash64 of the locked key */
    /* Appended (direct I/O): device reads land here when the device wants
     * aligned buffers; t->value then points into it (no further copy). */
    char *dio_buf;             /* aligned to the device's align; NULL until needed */
    size_t dio_cap;
    /* Appended (asynchronous reads, ss_read.c): this thread's io_uring, the
     * read the last SS_FIND_ASYNC lookup started, the completed read a lookup
     * takes its record from instead of the device. */
    struct ss_io *io;
    struct ss_read *started;
    struct ss_read *use_read;
    /* Appended (ss_store_value_hold): the DRAM item t->value lies in, if any. */
    struct ss_hot_item *value_hot;
};

/*
 * Copies of items kept outside the store (the switch's per-lcore reply
 * cache) stay valid while these are unchanged: one counter per stripe,
 * bumped under its lock before any item of it changes, and one for
 * flush_all, odd while a delayed flush is due. A struct ss_store begins
 * with them, so the check below is inline on the fast path without the
 * rest of the store being visible here.
 */
struct ss_store_copies {
    _Atomic uint32_t flush_gen __attribute__((aligned(64)));
    _Atomic uint32_t stripe_gen[SS_STRIPES] __attribute__((aligned(64)));
};

/* What a copy of the item with this ss_hash64, made under its stripe lock,
 * depends on; compare it again before serving the copy. A token with
 * SS_COPY_FLUSH_DUE set must not be used (a delayed flush_all is due). */
#define SS_COPY_FLUSH_DUE (1ull << 32)
static inline uint64_t ss_store_copy_token(struct ss_store *st, uint64_t hash)
{
    const struct ss_store_copies *c = (const struct ss_store_copies *)(const void *)st;
    uint64_t f = atomic_load_explicit(&c->flush_gen, memory_order_acquire);
    return f << 32 |
           atomic_load_explicit(&c->stripe_gen[hash & (SS_STRIPES - 1)], memory_order_acquire);
}

/* ss_store_find flags */
#define SS_FIND_VALUE   0x01u /* also fetch the value into t->value */
#define SS_FIND_NO_BUMP 0x02u /* do not mark fetched / update last access */
/* With SS_FIND_VALUE: if the value must be read from the device and this
 * thread has an io_uring (ss_store_io_open), start the read and return
 * -EINPROGRESS instead of waiting (see "Asynchronous reads" below). */
#define SS_FIND_ASYNC   0x04u
/* With SS_FIND_VALUE: if the value would need a device read that can block
 * (not in DRAM, the open segment or the page cache), return -EAGAIN having
 * done nothing: for a caller that must not wait and cannot park (a switch
 * lcore whose park is full hands the packet to the kernel instead). */
#define SS_FIND_NO_WAIT 0x08u

/* ss_store_write flags */
#define SS_WRITE_KEEP_META 0x01u /* keep last_access/bits from `it` as given */
/* The record is pinned (SS_ITEM_PINNED): the log never evicts it, only an
 * overwrite, removal, expiry or flush_all ends it. Its bytes count against
 * the pinned limit (ss_store_stats.pinned_limit): past it the write fails
 * with -ENOSPC and the key keeps its previous value. */
#define SS_WRITE_PINNED    0x02u
/* A cache's copy kept in the DRAM tier only (SS_ITEM_DRAM_ONLY): no log
 * append, no CRC, no index write or group commit, and so no warm restart
 * and gone when DRAM evicts it. For proxy mode's copy of a value a client
 * just wrote through it, where the back end is the store of record. The
 * caller has removed the key under this lock since anything last stored
 * it in the index (ss_store_remove), so no older device copy can show
 * through once this one is evicted; a device-backed copy still in DRAM
 * has its index entry deleted here all the same. Returns -ENOBUFS, having
 * kept nothing, when DRAM does not admit the value (write it normally
 * then); not with SS_WRITE_PINNED. */
#define SS_WRITE_DRAM_ONLY 0x04u

/*
 * Open or create a store. Returns NULL with err filled (it names the path or
 * setting at fault and what to do).
 */
struct ss_store *ss_store_open(const struct ss_store_settings *s, char *err, size_t errlen);
/* Write the open segment, sync device and index, close. Safe to call once. */
void ss_store_close(struct ss_store *st);

/* Attach a thread to the store. Returns 0 or -errno. */
int ss_store_thread_init(struct ss_store_thread *t, struct ss_store *st, struct ss_counters *ctr);
void ss_store_thread_fini(struct ss_store_thread *t);

void ss_store_lock(struct ss_store_thread *t, const void *key, size_t nkey);
/* The same, with the key's ss_hash64 already computed (the switch's batches). */
void ss_store_lock_hash(struct ss_store_thread *t, uint64_t hash);
/*
 * Prefetch what a lookup of the key with this ss_hash64 will touch, without
 * the lock: a burst calls ss_store_prefetch for every packet (the stripe,
 * the filter block), then ss_store_prefetch_bucket for every packet (the
 * DRAM bucket, whose address is in the stripe), then, once the buckets are
 * in, ss_store_prefetch_item (the first item of the bucket's chain), then
 * looks the keys up. Nothing a concurrent resize or rebuild may free is
 * dereferenced.
 */
void ss_store_prefetch(struct ss_store *st, uint64_t hash);
void ss_store_prefetch_bucket(struct ss_store *st, uint64_t hash);
void ss_store_prefetch_item(struct ss_store *st, uint64_t hash);
/* All three stages for n keys at once (a multi-get's, a pipeline's). */
void ss_store_prefetch_keys(struct ss_store *st, const uint64_t *hash, unsigned n);
void ss_store_unlock(struct ss_store_thread *t);

/*
 * Look a key up (lock held). Expired and flushed items are removed and
 * reported missing (counting get_expired / get_flushed is the caller's job:
 * the return code says which). Returns:
 *   0          found; *it filled, and t->value/value_len when SS_FIND_VALUE
 *   -ENOENT    no such item
 *   -ETIME     the item had expired (now removed)
 *   -ECANCELED the item was flushed by flush_all (now removed)
 *   -EBADMSG   the record failed verification: torn or zeroed (removed; a miss)
 *   -EIO       the device failed the read, or it came back short (removed,
 *              unless pinned: the record may read next time; the protocol's
 *              server error)
 *   -EINPROGRESS, -EAGAIN  with SS_FIND_ASYNC / SS_FIND_NO_WAIT (below)
 */
int ss_store_find(struct ss_store_thread *t, const void *key, size_t nkey,
                  struct ss_item *it, unsigned flags);

/*
 * ---- Asynchronous reads (ss_read.c) ----
 *
 * A worker that opened an io_uring (ss_store_io_open) may look a key up with
 * SS_FIND_ASYNC. When the value is on the device, ss_store_find then starts
 * the read and returns -EINPROGRESS, with t->started the read and nothing
 * else done (no counter, no bump): the caller unlocks, attaches a callback
 * with ss_store_read_on_done, and parks its request. The worker loop submits
 * every read started during its turn at once (ss_store_io_submit) and reaps
 * completions when the ring's eventfd fires (ss_store_io_reap), calling each
 * callback with no lock held. The callback runs its lookup again with
 * ss_store_read_use(t, rd): ss_store_find then takes the record from rd's
 * buffer when it is still the record the key's entry points to, verifies it
 * (generation, key, length, checksum: a torn, stale or failed read is never
 * served, and the item is dropped as on a synchronous read), and otherwise
 * does whatever a synchronous lookup does. ss_store_read_release gives rd
 * back once the value has been copied out.
 */
typedef void (*ss_read_done_fn)(void *arg, struct ss_read *rd);
/* Open this thread's ring of `entries` reads. Returns an eventfd that
 * becomes readable when reads complete, or -errno (then SS_FIND_ASYNC is a
 * synchronous lookup, counted in device_reads_sync_fallback). */
int ss_store_io_open(struct ss_store_thread *t, unsigned entries);
void ss_store_read_on_done(struct ss_read *rd, ss_read_done_fn done, void *arg);
/* Submit the reads started since the last call. Returns how many are still
 * unsubmitted (the kernel refused for now): call again soon, not after an
 * unbounded wait. */
unsigned ss_store_io_submit(struct ss_store_thread *t);
/* Call the callbacks of completed reads (no lock held), after draining the
 * eventfd: for a thread that waits in epoll. */
void ss_store_io_reap(struct ss_store_thread *t);
/* The same for a thread that polls (a switch lcore): at most max
 * completions, the eventfd left alone (no system call). Returns how many. */
unsigned ss_store_io_poll(struct ss_store_thread *t, unsigned max);
/* Reads submitted or prepared and not yet reaped (0 without a ring). */
unsigned ss_store_io_in_flight(const struct ss_store_thread *t);
/* The reads go through a polled device's own queues (SPDK): the thread must
 * call ss_store_io_poll each turn while reads are in flight, as no eventfd
 * wakes it for them. */
bool ss_store_io_polled(const struct ss_store_thread *t);
/* Put the completed read rd in hand (NULL: none), and the reads linked
 * after it with ss_store_read_link: a request of several keys (a UDP
 * datagram) runs once with all of its reads. */
void ss_store_read_use(struct ss_store_thread *t, struct ss_read *rd);
void ss_store_read_link(struct ss_read *rd, struct ss_read *next);
struct ss_read *ss_store_read_next(const struct ss_read *rd);
void ss_store_read_release(struct ss_store_thread *t, struct ss_read *rd);

/*
 * Right after a successful ss_store_find with SS_FIND_VALUE, with the key's
 * lock still held: keep t->value's bytes valid past ss_store_unlock, so a
 * reply can send them without copying (ss_conn_out_ref). Returns a handle to
 * give to ss_store_value_put once sent, or NULL when the value lies in no
 * buffer that can be kept (it was read from the device into the thread's
 * scratch): copy it then. The bytes stay what they were even if the key is
 * replaced or removed meanwhile; the DRAM tier no longer counts them, so
 * hold them for one send, not longer.
 */
struct ss_value_hold *ss_store_value_hold(struct ss_store_thread *t);
void ss_store_value_put(void *hold); /* an ss_out_release_fn; any thread */
/* A held value's bytes, and one more hold on them (any thread): for a holder
 * that lends them to readers that may no longer find the key (a fill keeps
 * its DRAM-only chunks for its waiters). */
const char *ss_store_value_bytes(const struct ss_value_hold *hold, size_t *len);
struct ss_value_hold *ss_store_value_dup(struct ss_value_hold *hold);
/* Wait for the reads still in flight (their callbacks run) and close the
 * ring; ss_store_thread_fini does it too. */
void ss_store_io_close(struct ss_store_thread *t);

/*
 * Store a value (lock held) with the metadata in *it. it->cas == 0 assigns a
 * fresh cas; the cas used is written back to it->cas. The value is the
 * concatenation of iov[0..niov). Returns 0, -E2BIG (over item_size_max),
 * -ENOSPC (the index is full; with SS_WRITE_PINNED also: the pinned limit
 * would be passed, or the log found no room in two turns of its ring),
 * -EIO, or -EAGAIN: in a store holding pinned records a write that must wait
 * for them to be copied forward waits without its stripe lock, and another
 * thread changed an item of the same stripe meanwhile; nothing was written,
 * so unlock and redo the whole check-then-write.
 *
 * A write is durable against a crash once ss_store_sync (or housekeeping:
 * within flush_interval_ms and a second) has run after it returned. Until
 * then a crash may lose it; in a store with pinned records the key then
 * keeps its previous value, never a torn one.
 */
int ss_store_write(struct ss_store_thread *t, const void *key, size_t nkey,
                   struct ss_item *it, const struct iovec *iov, int niov,
                   unsigned flags);

/*
 * Change metadata only (exptime, flags' bits, cas, last_access) of an item
 * that exists (lock held), without rewriting its value. it->cas == 0 keeps
 * the current cas. Returns 0 or -ENOENT.
 */
int ss_store_update_meta(struct ss_store_thread *t, const void *key, size_t nkey,
                         const struct ss_item *it);

/* Remove a key (lock held). Returns 0 or -ENOENT. A copy held in DRAM only
 * (SS_ITEM_DRAM_ONLY) goes without an index lookup or delete. */
int ss_store_remove(struct ss_store_thread *t, const void *key, size_t nkey);

/*
 * Remove a key as ss_store_remove does (lock held), except that a copy held
 * in DRAM only stays in memory, hidden from every lookup, so that the
 * SS_WRITE_DRAM_ONLY write that may follow (a proxy's write once its back
 * end has answered) reuses it in place: no allocation, no LRU change.
 * With held non-NULL, *held gets a reference to such a copy (else NULL), for
 * that write to pass to ss_store_write_over; ss_store_value_put lets go of
 * it, with or without the lock. A copy that was device-backed then becomes
 * DRAM-only, its index entry deleted, so the write can reuse its memory.
 * Returns 0 or -ENOENT.
 */
int ss_store_withdraw(struct ss_store_thread *t, const void *key, size_t nkey,
                      struct ss_value_hold **held);

/*
 * ss_store_write with SS_WRITE_DRAM_ONLY (lock held) over the key's copy
 * withdrawn with a reference (held, may be NULL): if the table still has
 * it, it is rewritten without a second walk of the key's hash chain; if not
 * (removed, replaced or evicted meanwhile), the write is an ordinary one.
 * The reference stays the caller's.
 */
int ss_store_write_over(struct ss_store_thread *t, struct ss_value_hold *held, const void *key,
                        size_t nkey, struct ss_item *it, const struct iovec *iov, int niov,
                        unsigned flags);
/* Start loading what ss_store_write_over will read and write of a held copy
 * (its header, key and a short value), a reply or two before it runs. */
void ss_store_held_prefetch(const struct ss_value_hold *held);

/*
 * Remove a key whether or not it exists (lock held), without the index
 * lookup ss_store_remove needs to say which: for callers that only need the
 * key gone (proxy mode invalidating before it forwards a write).
 */
void ss_store_forget(struct ss_store_thread *t, const void *key, size_t nkey);

/*
 * Call fn for every committed key that starts with prefix (nprefix 0: all),
 * in key order, until fn returns non-zero (which is then returned). Keys
 * still pending commit are not seen: commit first (ss_store_sync) if they
 * matter. For the control thread: one read transaction over the whole walk,
 * no stripe lock held while fn runs, so fn may lock, find and remove.
 * Returns 0, fn's non-zero result, or -errno.
 */
int ss_store_keys(struct ss_store *st, const void *prefix, size_t nprefix,
                  int (*fn)(void *arg, const void *key, size_t nkey), void *arg);

/* Bytes a record of this key and value length takes in a segment (header,
 * key, value, alignment): for callers that size their items to pack
 * segments exactly (object chunks). */
uint32_t ss_store_record_bytes(size_t nkey, size_t nbytes);

/* A fresh, never-before-used cas value. */
uint64_t ss_store_next_cas(struct ss_store *st);

/*
 * flush_all: when <= now, every item stored before this call is invalid at
 * once; otherwise every item stored before `when` becomes invalid at `when`
 * (unix seconds). Returns 0.
 */
int ss_store_flush_all(struct ss_store_thread *t, int64_t when);

/*
 * Make every write that returned before this call durable (no stripe lock
 * held): the open segment written, the segment writer done with what it was
 * handed (so the log's state names the segments in use), the index's
 * pending entries committed, then the device and the index synced. The
 * point at which a store of record may acknowledge a write; housekeeping
 * reaches it by itself within flush_interval_ms and a second. Returns 0,
 * -EDEADLK (a stripe lock is held), -EIO.
 */
int ss_store_sync(struct ss_store_thread *t);

/*
 * Periodic work (called by the control plane every ~100 ms): write a partly
 * filled open segment that is older than flush_interval_ms, apply a delayed
 * flush_all that is due, sync the index. Returns 0 or -errno.
 */
int ss_store_housekeep(struct ss_store_thread *t);

/* cffi: begin */
/* Store-wide figures for `stats` and the console. */
struct ss_store_stats {
    uint64_t curr_items;        /* keys in the index */
    uint64_t device_bytes;      /* capacity of the log */
    uint64_t device_used_bytes; /* bytes in live segments */
    uint64_t segment_bytes;
    uint64_t segments;
    uint64_t hot_bytes_limit;
    uint64_t hot_bytes_used;
    uint64_t hot_items;
    uint64_t index_bytes;       /* LMDB pages in use * page size */
    uint32_t item_size_max;
    /* Appended (issue 4) */
    uint64_t device_offset;     /* where the pool starts on its device */
    uint64_t segments_used;     /* segments written at least once */
    uint64_t grows;             /* successful ss_store_grow calls since open */
    /* Appended (issue 5): the DRAM key filter (ss_filter.c). */
    uint64_t filter_bytes;      /* its bit array (two while rebuilding) */
    uint64_t filter_capacity;   /* items it is sized for; rebuilt past that */
    uint64_t filter_inserts;    /* insertions since it was built */
    uint64_t filter_rebuilds;   /* rebuilds since open */
    /* Appended (pinned records): records written with SS_WRITE_PINNED. */
    uint64_t pinned_bytes;      /* live pinned records, headers included */
    uint64_t pinned_items;
    uint64_t pinned_copied;     /* records copied forward since open */
    uint64_t pinned_copy_bytes; /* their bytes */
    uint64_t pinned_limit;      /* pinned_bytes a pinned write may not take it past */
    /* Appended (group commit): index transactions the committer ran since
     * open, and the puts and deletes they carried. */
    uint64_t index_commits;
    uint64_t index_committed_ops;
    /* Times the committer, which runs at idle priority where the process
     * may raise it again, was raised to keep up (ss_pending.c). */
    uint64_t index_commit_boosts;
};
/* cffi: end */
void ss_store_get_stats(struct ss_store *st, struct ss_store_stats *out);
/* What the store's own segment writer thread did (ss_log_writer.c), for the
 * counter sums. */
const struct ss_counters *ss_store_writer_counters(const struct ss_store *st);

/*
 * Walk the index and verify each entry against its record on the device
 * (for tests and `smartswitch check-index`). Returns the number of entries
 * that failed verification (0 = consistent) or -errno; *checked gets the
 * number of entries examined.
 */
long ss_store_verify(struct ss_store_thread *t, uint64_t *checked);

/*
 * Grow the pool to new_bytes (superblock included) while serving: the new
 * segments start unused and are placed in the ring right after the open
 * segment, so they are filled before the oldest data is reclaimed. The
 * device must already hold device_offset + new_bytes (provisioning extends
 * it first). Returns 0 (also when new_bytes gives no more segments),
 * -EINVAL (fewer segments than now: use ss_store_shrink), -ENOMEM, -EIO.
 */
int ss_store_grow(struct ss_store *st, uint64_t new_bytes);

/*
 * Shrink the pool to new_bytes, evicting every item in the segments that no
 * longer fit. Offline only: no worker may use the store meanwhile (the
 * provisioner opens it with no listeners). Pinned records are never evicted:
 * a shrink that would cut off one, or leave too little room for them, is
 * refused (ss_store_shrink_check says why). Returns 0, -EINVAL (fewer than 2
 * segments, or more than now: use ss_store_grow), -ENOSPC (the pinned
 * records would not fit), -EBUSY (they are where the shrink cuts), -EIO.
 */
int ss_store_shrink(struct ss_store *st, uint64_t new_bytes);
/* Would ss_store_shrink(new_bytes) be refused for pinned records? 0, or
 * -ENOSPC / -EBUSY with err saying why and what to do. */
int ss_store_shrink_check(struct ss_store *st, uint64_t new_bytes, char *err, size_t errlen);

#endif
