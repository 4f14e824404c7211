/*
 * ss_store_internal.h - the store's private parts, shared by the files of
 * dataplane/src/store/. Nothing outside the store includes it: what another
 * plane needs is in ss_store.h.
 *
 * Dependency order: a file calls only files below it, none calls back up.
 *
 *     ss_store.c     the public API, open/close, housekeeping
 *     ss_copy_forward.c  pinned records copied out of a segment before its
 *                    reuse, and the log's start at open
 *     ss_read.c      asynchronous record reads (io_uring), used by lookups
 *     ss_entry.c     one key's entry: look-up, change, drop (stripe lock held)
 *     ss_sweep.c     background walks of the index: filter rebuild, purge
 *     ss_pending.c   group commit        ss_repair.c   verify, repair
 *     ss_hot.c       the DRAM tier (and ss_store_prefetch)
 *     ss_filter.c    the DRAM key filter: hashes only, calls nothing
 *     ss_log.c       the segment log; ss_log_writer.c its writer thread
 *     ss_log_read.c  records read back and verified
 *     ss_pinned.c    pinned records' figures (log lock): calls nothing
 *     ss_index.c     the index, the only caller of LMDB (ss_index.h)
 *     the device     (ss_device.h)
 *
 * ss_sweep.c feeds the filter the index's keys; ss_pending.c writes the
 * index (and drops DRAM copies when a batch fails); ss_repair.c checks index
 * entries against the log's records (it also holds ss_store_verify);
 * ss_log.c deletes a reclaimed segment's entries in the transaction that
 * moves its head. The segment writer reaches up only through the two hooks
 * ss_store.c gives it (struct ss_log_hooks): copying a segment's pinned
 * records forward, and a group commit. Operations that must land together
 * share a struct ss_index_txn, never an LMDB type.
 */
#ifndef SS_STORE_INTERNAL_H
#define SS_STORE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ss_device.h"
#include "ss_index.h"
#include "ss_store.h"

/* ---- on-device formats (little endian, as the hosts we build for) ---- */

#define SS_SUPER_MAGIC   0x314c4f4f50535353ULL /* "SSSPOOL1" */
#define SS_SUPER_BYTES   4096u                 /* segments start after this */
/* A record's magic says how its checksum was made: CRC-32C for every record
 * written now, zlib's CRC-32 for ones written before (still read). */
#define SS_RECORD_MAGIC      0x52535332u       /* "2SSR": CRC-32C */
#define SS_RECORD_MAGIC_ZLIB 0x52535331u       /* "1SSR": zlib's CRC-32 */
static inline int ss_record_magic_ok(uint32_t magic)
{
    return magic == SS_RECORD_MAGIC || magic == SS_RECORD_MAGIC_ZLIB;
}
#define SS_RECORD_ALIGN  8u

struct ss_superblock {
    uint64_t magic;
    uint32_t version;
    uint32_t segment_bytes;
    uint64_t nsegments;
    uint8_t uuid[16]; /* ties the LMDB index to this device */
};

/*
 * Every value on the device is a record: header, key, value. The checksum
 * covers nbytes, flags, nkey, the key and the value, so a torn write or a
 * record of another key is caught; seg_gen says which reuse of the segment
 * wrote it, so a record left over from before a reclaim is caught too.
 */
struct ss_record_hdr {
    uint32_t magic;
    uint32_t crc;
    uint32_t seg_gen;
    uint32_t nbytes;
    uint64_t cas;
    uint32_t flags;
    uint8_t nkey;
    uint8_t pad[3];
};

static inline uint32_t ss_record_size(size_t nkey, size_t nbytes)
{
    size_t n = sizeof(struct ss_record_hdr) + nkey + nbytes;
    return (uint32_t)((n + SS_RECORD_ALIGN - 1) & ~(size_t)(SS_RECORD_ALIGN - 1));
}

/* ---- DRAM hot tier (one table per stripe) ---- */

struct ss_hot_item {
    /* What a chain walk reads of an item it passes, in its first cache line. */
    struct ss_hot_item *hnext;            /* hash chain */
    uint64_t hash;
    uint8_t nkey;
    struct ss_hot_item *lru_prev, *lru_next;
    struct ss_index_entry e;              /* same metadata as the index */
    uint32_t lru_bumped_at;               /* unix seconds of the last LRU move */
    uint32_t stored_ms;                   /* monotonic ms (truncated) of the last store */
    /* One for the table, one per reply still sending the value without a copy
     * (ss_store_value_hold): the last to let go frees it. The value's bytes
     * never change while a reply holds them (ss_hot_rewrite needs refs 1);
     * its metadata (e) may, under the stripe lock. */
    _Atomic uint32_t refs;
    char data[];                          /* key, then value */
};

/* ---- write-behind index operations (ss_pending.c) ---- */

enum { SS_PEND_PUT = 1, SS_PEND_DEL = 2 };

struct ss_pend {
    struct ss_pend *next;
    uint64_t hash;
    uint8_t op;      /* SS_PEND_PUT or SS_PEND_DEL */
    uint8_t nkey;
    /* The last commit left it out: its record was not yet durable (a store
     * with pinned records commits an entry only once its record is). */
    uint8_t held;
    /* Committed, but its segment use was reopened meanwhile (drop_overtaken). */
    uint8_t overtaken;
    struct ss_index_entry e;
    char key[];
};

struct ss_pend_map {
    struct ss_pend **buckets;
    uint32_t nbuckets; /* power of two */
    uint32_t count;
};

struct ss_stripe {
    pthread_mutex_t lock;
    struct ss_pend_map pending;    /* newest index op per key, not yet committed */
    struct ss_pend_map committing; /* the batch being committed now */
    struct ss_hot_item **buckets;
    uint32_t nbuckets;                    /* power of two */
    uint32_t count;
    /* Bucket arrays outgrown, kept until the store closes (each links the
     * next through its slot 0): ss_store_prefetch_item reads a bucket
     * without the lock, and must never read freed memory. Each growth
     * doubles, so they sum to less than the current array: under 16 bytes
     * per item of the stripe's largest count. */
    struct ss_hot_item **retired_buckets;
    uint64_t bytes;
    struct ss_hot_item *lru_head, *lru_tail; /* head = most recent */
} __attribute__((aligned(64)));

/* ---- the segment log ---- */

/* What the segment writer asks of the layers above it (set by ss_store.c). */
struct ss_log_hooks {
    /* Copy the live pinned records of segment seg (its use gen, read back
     * into buf) forward into the head, durably, and point their entries
     * there (ss_copy_forward.c). No lock held. 0 or -errno. */
    int (*copy_forward)(struct ss_store *st, uint32_t seg, uint32_t gen, const char *buf);
    /* Commit what the group commit holds (ss_pend_commit_now). No lock held. */
    void (*commit)(struct ss_store *st);
};

/* Sealed segments queued for the writer: at most this many, and no more
 * than SS_LOG_SEALED_BYTES of buffers (large segments queue one). */
#define SS_LOG_SEALED_MAX 3u
#define SS_LOG_SEALED_BYTES (32u << 20)

/* A full segment handed to the writer (ss_log_writer.c). */
struct ss_sealed {
    char *buf;
    uint32_t seg, gen;
    uint32_t end;             /* its records end here */
    uint32_t from, to;        /* the span still to write, aligned */
};

struct ss_log {
    pthread_mutex_t lock;
    uint32_t nsegments;
    uint32_t segment_bytes;
    uint32_t head;            /* the open segment */
    uint32_t pos;             /* head's position in order[] */
    uint64_t base;            /* the pool's offset on the device (its superblock) */
    uint32_t *gens;           /* per segment: reuse generation; 0 = never used */
    uint32_t *persisted_gens; /* gens as the index last recorded them */
    /* The ring: order[i + 1] is opened after order[i]. The identity until a
     * grow puts new segments right after the head (ss_log_resize). */
    uint32_t *order;
    uint64_t grows;
    char *buf;                /* the open segment's bytes */
    uint32_t write_off;       /* end of appended records in buf */
    uint32_t flushed_off;     /* buf[0, flushed_off) is on the device */
    uint64_t dirty_since_ms;  /* when buf first held unwritten bytes */
    int flushing;             /* housekeeping is writing buf without the lock */
    pthread_cond_t flushed;   /* signalled when that write is done */
    char *flush_tail;         /* that write's last block, copied under the lock */
    char *reclaim_buf;        /* a segment read back for reclaiming */

    /* The segment writer (ss_log_writer.c). A roll on the request path only
     * swaps buffers: the full segment is queued as sealed and the writer
     * writes it, and the writer reclaims the next segment ahead (`ready`),
     * so no worker writes or reads a whole segment. Records of a sealed
     * segment are read from its buffer until it is written. Several may wait
     * (oldest first), so that a device write slower than usual (a busy
     * disk, page cache pages faulted in for the first time) holds no roll
     * up while the average write rate keeps up. */
    struct ss_sealed sealed[SS_LOG_SEALED_MAX];
    uint32_t nsealed;         /* queued in sealed[0, nsealed) */
    uint32_t sealed_max;      /* how many may be queued: the buffers there are */
    char *spare_bufs[SS_LOG_SEALED_MAX]; /* buffers a roll may open into */
    uint32_t nspare;
    uint64_t seals, seals_written; /* segments sealed and written, ever */
    bool ready;               /* ready_seg (in use ready_gen) is read back into reclaim_buf */
    uint32_t ready_seg, ready_gen;
    bool reclaim_pending;     /* reclaim_seg reopened: delete its use reclaim_gen's entries */
    uint32_t reclaim_seg, reclaim_gen;
    bool prepare_asked;       /* the head is filling: reclaim the next segment */
    bool state_dirty;         /* head or generations changed since persisted */
    bool writer_running, writer_stop, writer_busy;
    bool writer_joinable;     /* started: stop joins it (touched by the owner only) */
    pthread_t writer;
    pthread_cond_t writer_wake;
    struct ss_counters writer_ctr; /* what the writer did (summed into stats) */

    /* Pinned records (ss_pinned.c, ss_copy_forward.c), under the lock. A
     * segment is reused only once none of its pinned records is live (they
     * were copied into the head); the head keeps copy_reserve bytes free
     * for the copies of the segment after it. */
    uint64_t *pinned;          /* per segment: bytes of its use's live pinned records */
    uint64_t pinned_bytes;     /* of every live pinned record, headers included */
    _Atomic uint64_t pinned_items; /* read without the lock: "does the store pin at all" */
    uint32_t copy_reserve;     /* bytes of the head only copies forward may use */
    bool copying;              /* the writer is copying the next segment's pinned records */
    int copy_error;            /* why the last copy forward failed */
    uint64_t copy_failures;    /* how many failed: a roll waiting across one reports it */
    const struct ss_log_hooks *hooks;
};

/* ss_sweep.c: where a background walk of the index has got to. */
struct ss_sweep_pos {
    bool active;
    size_t nkey;
    char key[SS_KEY_MAX_LENGTH]; /* the walk resumes at this key */
};

struct ss_store {
    /* First, so ss_store_copy_token (ss_store.h) finds it without the rest
     * of this struct (asserted below). */
    struct ss_store_copies copies;

    struct ss_store_settings set;
    char *index_dir;
    char *device_path;
    struct ss_device *dev;
    uint8_t uuid[16];

    struct ss_index *index;

    struct ss_stripe stripes[SS_STRIPES];
    /* The DRAM tier's bytes, over every stripe: each stripe makes room by
     * evicting its own least recent items, so memory stays within hot_limit
     * while an item may be far larger than a stripe's average share. */
    uint64_t hot_limit;
    _Atomic uint64_t hot_used;
    _Atomic uint32_t hot_evict_next; /* the next stripe another may take room from */

    struct ss_log log;

    _Atomic uint64_t next_seq;      /* next cas / write sequence number */
    _Atomic uint64_t seq_reserved;  /* persisted: every seq used is below it */
    _Atomic uint64_t flush_seq;     /* items with seq below it are flushed */
    _Atomic int64_t pending_flush_at; /* delayed flush_all due time, 0 = none */
    uint64_t cleaned_flush_seq;     /* index purged of items below this */
    struct ss_sweep_pos purge_sweep; /* deleting what a flush_all made dead */

    /* group commit (ss_pending.c) */
    pthread_t committer;
    int committer_running;
    int commit_stop;
    pthread_mutex_t commit_lock;     /* guards commit_stop and the wake-up */
    pthread_cond_t commit_cond;
    pthread_mutex_t commit_run_lock; /* one batch at a time */
    _Atomic uint64_t pending_ops;
    _Atomic uint64_t commits;
    _Atomic uint64_t committed_ops;
    uint64_t commit_errors;
    pthread_t committer_self;     /* as the committer knows itself */
    _Atomic int commit_idle;      /* the committer runs at SCHED_IDLE ... */
    _Atomic int commit_boosted;   /* ... unless raised for now */
    _Atomic int commit_in_txn;    /* it writes its batch at idle priority */
    _Atomic uint64_t commit_boosts;
    uint64_t last_sync_ms;
    int closed;

    /* DRAM filter of the index's keys (ss_filter.c): replaced only with
     * every stripe lock held, used with one held. */
    struct ss_filter *filter;
    struct ss_filter *filter_next; /* being rebuilt; put_entry adds to both */
    struct ss_sweep_pos filter_sweep; /* feeding the index's keys to filter_next */
    /* The filter's bit array and size, for ss_store_prefetch (no lock). */
    uint32_t (*filter_hint_blocks)[8];
    uint64_t filter_hint_nblocks;
    uint64_t filter_rebuilds;

    /* The segment writer's own thread state for copying pinned records
     * forward (its look-ups and appends); also used once at open. */
    struct ss_store_thread copier;
};

_Static_assert(offsetof(struct ss_store, copies) == 0,
               "ss_store_copy_token reads struct ss_store_copies at the store's address");

/* ss_hot.c: every call with the stripe's lock held */
int ss_hot_init(struct ss_stripe *s);
void ss_hot_fini(struct ss_store *st, struct ss_stripe *s);
/* The item for key, a withdrawn one too (ss_hot_get hides those). */
struct ss_hot_item *ss_hot_lookup(struct ss_stripe *s, uint64_t hash, const void *key,
                                  size_t nkey);
struct ss_hot_item *ss_hot_get(struct ss_stripe *s, uint64_t hash, const void *key, size_t nkey);
/* e.bits of a DRAM-only item withdrawn by ss_store_withdraw: no lookup sees
 * it, but it keeps its place, memory and budget until a DRAM-only write of
 * its key rewrites it in place (ss_hot_rewrite), or it is removed or evicted. */
#define SS_HOT_WITHDRAWN 0x80000000u
/* e.bits of an item the table has let go of (removed, replaced, evicted):
 * a holder of a reference (ss_store_withdraw's held copy) learns from it,
 * under the stripe lock, that the item is no longer the key's. */
#define SS_HOT_UNLINKED 0x40000000u
/* Store e and the value into the withdrawn item it in place: no allocation,
 * no chain or LRU change. Only when no reply holds its bytes (its references
 * are the table's and the caller's `held`, 0 or 1) and the new value is
 * exactly as long. 1 if done, 0 if not (put a new item then). */
int ss_hot_rewrite(struct ss_hot_item *it, const struct ss_index_entry *e,
                   const struct iovec *iov, int niov, uint32_t held);
/* Insert or replace; evicts least recent items to stay within budget.
 * Returns 1 if stored (*stored, when given, is the new item), 0 if not
 * admitted (too large, or no room this stripe could make), -ENOMEM. */
int ss_hot_put(struct ss_store *st, struct ss_stripe *s, uint64_t hash, const void *key,
               size_t nkey, const struct ss_index_entry *e, const struct iovec *iov,
               int niov, struct ss_counters *ctr, struct ss_hot_item **stored);
void ss_hot_remove(struct ss_store *st, struct ss_stripe *s, uint64_t hash, const void *key,
                   size_t nkey);
/* Keep an item's value past the stripe lock (taken under it); ss_hot_drop
 * lets go, with no lock needed. */
static inline struct ss_hot_item *ss_hot_hold(struct ss_hot_item *it)
{
    atomic_fetch_add_explicit(&it->refs, 1, memory_order_relaxed);
    return it;
}
void ss_hot_drop(struct ss_hot_item *it);
/* A hit: move to the LRU head, at most once a second per item. */
void ss_hot_touch(struct ss_stripe *s, struct ss_hot_item *it, uint32_t now);
static inline const char *ss_hot_value(const struct ss_hot_item *it) { return it->data + it->nkey; }

/* The entry a write of n value bytes stores: a fresh seq (the cas too,
 * unless it->cas is given); with SS_WRITE_KEEP_META the item's
 * last_access and bits, less those that say where a copy lives, which are
 * `where`'s. */
static inline struct ss_index_entry ss_entry_for_write(struct ss_store *st,
                                                       const struct ss_item *it, size_t n,
                                                       unsigned flags, int64_t now,
                                                       uint32_t where)
{
    uint64_t seq = atomic_fetch_add(&st->next_seq, 1);
    bool keep = flags & SS_WRITE_KEEP_META;
    return (struct ss_index_entry){
        .cas = it->cas ? it->cas : seq,
        .seq = seq,
        .exptime = it->exptime,
        .flags = it->flags,
        .nbytes = (uint32_t)n,
        .last_access = keep ? it->last_access : (uint32_t)now,
        .bits = (keep ? it->bits & ~(SS_ITEM_PINNED | SS_ITEM_DRAM_ONLY) : 0) | where,
    };
}

/* A write stored e: the caller's item gets what the store chose (cas, length,
 * last access, bits), and the write is counted. Returns 0. */
static inline int ss_write_done(struct ss_store_thread *t, struct ss_item *it,
                                const struct ss_index_entry *e)
{
    it->cas = e->cas;
    it->nbytes = e->nbytes;
    it->last_access = e->last_access;
    it->bits = e->bits;
    t->ctr->total_items++;
    return 0;
}

/* ss_store.c: what every write does first: the value's length *n (-E2BIG
 * past item_size_max), the time *now, a due flush_all applied. */
int ss_write_begin(struct ss_store_thread *t, const struct iovec *iov, int niov, size_t *n,
                   int64_t *now);
/* ss_store.c: ss_store_remove of the key whose DRAM item (or NULL) is hi. */
int ss_remove_found(struct ss_store_thread *t, const void *key, size_t nkey,
                    struct ss_hot_item *hi);

/* ss_dram_only.c: ss_store_write with SS_WRITE_DRAM_ONLY (lock held; n is
 * the value's length, already checked against item_size_max), over the
 * key's withdrawn copy when ss_store_write_over holds one (else NULL). */
int ss_write_dram_only(struct ss_store_thread *t, const void *key, size_t nkey,
                       struct ss_item *it, const struct iovec *iov, int niov, size_t n,
                       unsigned flags, int64_t now, struct ss_hot_item *over);

/* Copies outside the store (ss_store_copy_token): an item of the locked
 * stripe is about to change. */
static inline void ss_copies_stale(struct ss_store_thread *t)
{
    atomic_fetch_add_explicit(&t->store->copies.stripe_gen[t->locked_stripe], 1,
                              memory_order_release);
}

/* ss_entry.c: every call with the key's stripe lock held (t->locked_*). */
/* 0 if the entry's item is live, else why not: -ECANCELED (flush_all), -ETIME. */
int ss_entry_dead(struct ss_store *st, const struct ss_index_entry *e, int64_t now);
/* The key's newest entry: the DRAM filter first (a "no" is final), then
 * pending, committing, the index. 0, -ENOENT, or -errno from the index.
 * ss_entry_lookup counts the filter's verdicts (a client's look-up);
 * ss_entry_get counts nothing (the store's own look-ups). */
int ss_entry_lookup(struct ss_store_thread *t, const void *key, size_t nkey,
                    struct ss_index_entry *e);
int ss_entry_get(struct ss_store_thread *t, const void *key, size_t nkey,
                 struct ss_index_entry *e);
/* Record an entry (or the key's deletion) for the group commit. */
int ss_entry_put(struct ss_store_thread *t, const void *key, size_t nkey,
                 const struct ss_index_entry *e);
void ss_entry_del(struct ss_store_thread *t, const void *key, size_t nkey);
/* The key's entry is about to be replaced or removed: if it is pinned, take
 * its record off the pinned figures. */
void ss_entry_release_pinned(struct ss_store_thread *t, const void *key, size_t nkey);
/* Remove a dead or unreadable item from both tiers. */
void ss_entry_drop(struct ss_store_thread *t, const void *key, size_t nkey);

/* ss_pinned.c: the pinned figures. _locked: the log lock held. An entry's
 * record counts in its segment's figure while the entry names the
 * segment's current use (seg_gen), and in the totals in any case. */
bool ss_pinned_any(const struct ss_store *st); /* no lock: any pinned item at all */
/* Most live pinned bytes the ring can hold and still always find room for
 * a write (the reserve; ss_pinned.c says why). */
uint64_t ss_pinned_limit_locked(const struct ss_store *st);
/* May a pinned record of size bytes, replacing one of `freed` bytes, be
 * appended? 0, or -ENOSPC (it would take the total past the limit). */
int ss_pinned_admit_locked(struct ss_store *st, uint32_t size, uint32_t freed);
void ss_pinned_add_locked(struct ss_log *log, const struct ss_index_entry *e, uint32_t size);
void ss_pinned_sub_locked(struct ss_log *log, const struct ss_index_entry *e, uint32_t size);
/* Take the log lock: an entry pinned or not went away; a pinned entry
 * moved to a copy of its record; a pinned entry found at open. */
void ss_pinned_release(struct ss_store *st, const struct ss_index_entry *e, size_t nkey);
void ss_pinned_move(struct ss_store *st, const struct ss_index_entry *from,
                    const struct ss_index_entry *to, size_t nkey);
void ss_pinned_note(struct ss_store *st, const struct ss_index_entry *e, size_t nkey);
/* Could the log shrink to n_new segments without evicting a pinned
 * record? 0, or -ENOSPC / -EBUSY with err saying why and what to do. */
int ss_pinned_shrink_check_locked(struct ss_store *st, uint32_t n_new, char *err,
                                  size_t errlen);

/* ss_pending.c */
struct ss_pend *ss_pend_find(struct ss_pend_map *m, uint64_t hash, const void *key, size_t nkey);
int ss_pend_record(struct ss_store *st, struct ss_stripe *s, uint64_t hash, const void *key,
                   size_t nkey, int op, const struct ss_index_entry *e);
/* Commit what is pending now (in a store with pinned records, only the
 * entries whose records are durable; the rest stay pending). Returns the
 * number of operations taken; *failed (may be NULL) says the batch could
 * not be written (its entries were turned into deletions, but pinned ones
 * stay pending). */
uint64_t ss_pend_commit_now(struct ss_store *st, bool *failed);
int ss_pend_start(struct ss_store *st);
void ss_pend_stop(struct ss_store *st);
void ss_pend_fini(struct ss_stripe *s);

/* ss_repair.c */
/* After an unclean stop: drop every index entry whose record does not
 * verify, reading records through t (the store's, at open; errors are
 * counted on t->ctr). Returns the number dropped or -errno. */
long ss_repair_index(struct ss_store_thread *t);

/* ss_sweep.c: control thread only. */
int ss_sweep_filter_build(struct ss_store *st);
/* Start a filter rebuild when the filter is full, or feed it one more
 * batch. 0 or -errno (a failed rebuild is abandoned; the old filter stays). */
int ss_sweep_filter_step(struct ss_store *st);
/* Delete up to a batch of entries with seq below flush_seq. 1 when the
 * index holds none any more, else 0. */
int ss_sweep_purge_flushed(struct ss_store *st, uint64_t flush_seq);

/* ss_filter.c: the filter knows hashes, not the index. ss_sweep.c builds it
 * (ss_sweep.c: at open and in a rebuild) by feeding it the index's keys. */
struct ss_filter;
void ss_filter_close(struct ss_store *st);
/* With the key's stripe lock held: record that the index may hold it. */
void ss_filter_note(struct ss_store *st, uint64_t hash);
/* With the key's stripe lock held: false = the store does not hold it. */
bool ss_filter_maybe(struct ss_store *st, uint64_t hash);
void ss_filter_prefetch(struct ss_store *st, uint64_t hash);
void ss_filter_stats(struct ss_store *st, uint64_t *bytes, uint64_t *capacity,
                     uint64_t *inserts);
/* Control thread: the filter has taken as many insertions as it was sized for. */
bool ss_filter_full(struct ss_store *st);
/* A rebuild: install an empty filter for `items` keys beside the current
 * one (put_entry then adds to both); 0 or -ENOMEM. Feed it every key the
 * index holds, then finish (swap it in) or abandon (free it). */
int ss_filter_rebuild_begin(struct ss_store *st, uint64_t items);
void ss_filter_rebuild_feed(struct ss_store *st, uint64_t hash);
void ss_filter_rebuild_finish(struct ss_store *st);
void ss_filter_rebuild_abandon(struct ss_store *st);

/* ss_log_layout.c: superblock, open, grow, shrink; ss_log.c: the running log. */
int ss_log_open(struct ss_store *st, struct ss_counters *ctr, char *err, size_t errlen);
void ss_log_close(struct ss_store *st);
/* Roll into a fresh segment at open (ss_copy_forward_open decides). */
int ss_log_start(struct ss_store *st, struct ss_counters *ctr);
/* How a record is appended. */
struct ss_append {
    bool pinned;     /* in: a pinned write (counted; refused past the limit) */
    bool copy;       /* in: a copy forward: may use the head's reserve, never rolls */
    uint32_t freed;  /* in: a pinned write: bytes of its key's pinned record it replaces */
    bool relocked;   /* out: the stripe lock was given up while waiting for a roll */
};
/* Append a record (t's stripe lock held); fills the entry's segment/offset/
 * seg_gen. 0, -E2BIG, -ENOSPC (past the pinned limit, or no room in two
 * turns of the ring), -ESTALE (the stripe lock had to be given up
 * while pinned records were copied forward, and an item of the stripe
 * changed meanwhile: nothing was appended), -EIO. */
int ss_log_append(struct ss_store_thread *t, const void *key, size_t nkey,
                  struct ss_index_entry *e, uint32_t crc, const struct iovec *iov, int niov,
                  struct ss_append *how);
/* Read and verify the record an entry points to into t->scratch.
 * 0 (t->value set), -EIO (device failure), -EBADMSG (verification failed),
 * -ESTALE (the segment was reclaimed since the entry was read). */
int ss_log_read(struct ss_store_thread *t, const void *key, size_t nkey,
                const struct ss_index_entry *e);
/* The same; with nowait, -EAGAIN instead of a device read that could block. */
int ss_log_read_mode(struct ss_store_thread *t, const void *key, size_t nkey,
                     const struct ss_index_entry *e, bool nowait);
/* Where the record e points to must be read from: the aligned span [*from,
 * *from + *len), the record at *rec_off in it. 0; 1 when the record is in
 * the open segment's buffer (ss_log_read copies it); -EBADMSG or -ESTALE. */
int ss_log_span(struct ss_store *st, size_t nkey, const struct ss_index_entry *e,
                uint64_t *from, uint32_t *len, uint32_t *rec_off);
/* Verify a record read without the lock (its segment's generation again,
 * then the record). 0 with t->value set, -ESTALE or -EBADMSG. */
int ss_log_verify(struct ss_store_thread *t, const void *key, size_t nkey,
                  const struct ss_index_entry *e, const char *rec);
/* Make t->dio_buf (aligned to the device) hold at least len bytes. 0 or -ENOMEM. */
int ss_log_dio_reserve(struct ss_store_thread *t, size_t len);
/* The record of key that e points to when it is still in memory (the open
 * or the sealed segment's buffer), else NULL. Log lock held. */
const char *ss_log_in_memory(struct ss_log *log, const struct ss_index_entry *e, uint32_t size);
/* The alignment the device requires of the log's I/O (1: none, page cache). */
static inline uint32_t ss_log_align(const struct ss_store *st)
{
    return st->dev->align > 1 ? st->dev->align : 1u;
}
/* The unit the log pads its writes to: the device's alignment, or the
 * alignment of its direct segment writes, whichever is larger. */
static inline uint32_t ss_log_pad_unit(const struct ss_store *st)
{
    uint32_t a = ss_log_align(st);
    return st->dev->write_align > a ? st->dev->write_align : a;
}
/* Where segment seg starts on the device. */
uint64_t ss_log_seg_off(const struct ss_log *log, uint32_t seg);
/* The device range to write for buf[from, to): whole aligned blocks, the
 * bytes past `to` zeroed. Log lock held. */
void ss_log_pad_span(struct ss_store *st, uint32_t from, uint32_t to, uint32_t *wfrom,
                     uint32_t *wto);
/* Read segment seg whole into buf (the writer's reclaim-ahead). 0 or -errno. */
int ss_log_read_segment(struct ss_store *st, uint32_t seg, char *buf, struct ss_counters *ctr);
/* Delete the index entries still pointing at records of seg's use `gen`,
 * whose bytes are in buf, inside txn; counts evictions. */
void ss_log_reclaim_records(struct ss_store *st, struct ss_index_txn *txn, uint32_t seg,
                            uint32_t gen, const char *buf, struct ss_counters *ctr);
/* Put head, ring order and generations in txn. Log lock held. */
int ss_log_persist_state(struct ss_store *st, struct ss_index_txn *txn);

/* Initialise a lock held only for short critical sections (a stripe's, the
 * log's): adaptive, so a thread that finds it taken spins briefly before it
 * sleeps. Workers share few cores with their clients; one that sleeps on a
 * futex can wait a whole scheduler slice for its core back. */
void ss_short_lock_init(pthread_mutex_t *m);

/* ss_log_writer.c: the segment writer thread (its role: struct ss_log). */
int ss_log_writer_start(struct ss_store *st);
/* Write what is sealed, persist the state, stop. */
void ss_log_writer_stop(struct ss_store *st);
/* The head is full (log lock held, and t's stripe lock): open the next
 * segment by handing the full one to the writer. 0, -EAGAIN with no writer
 * running (roll synchronously), -ESTALE (see ss_log_append), or why the
 * next segment's pinned records could not be copied forward. Waits only
 * while the writer is behind; in a store with pinned records it waits
 * without t's stripe lock (*relocked), which the writer may need. */
int ss_log_writer_roll(struct ss_store_thread *t, bool *relocked);
/* Wait until the writer is idle with nothing sealed (log lock held). */
void ss_log_writer_drain(struct ss_store *st);
/* Make what was appended so far durable (no lock held): the head written,
 * and the writer done with the sealed segment and the head's state.
 * 0 or -EIO (a device write failed, or the writer is stuck or stopped). */
int ss_log_make_durable(struct ss_store *st, struct ss_counters *ctr);

/* Write the open segment's unwritten bytes if older than `age_ms`. */
int ss_log_flush(struct ss_store *st, struct ss_counters *ctr, uint64_t age_ms);
/* Write every byte appended to the head so far, waiting out a flush under
 * way (no lock held). 0 or -errno. */
int ss_log_flush_head(struct ss_store *st, struct ss_counters *ctr);
/* Would e's record outlive a crash (log lock held)? It is on the device,
 * in a segment use whose generation is persisted. A use already reused
 * counts as durable: nothing would make it so. */
bool ss_log_is_durable_locked(const struct ss_log *log, const struct ss_index_entry *e,
                              size_t nkey);
/* The state just persisted: what a crash would load (log lock held). */
void ss_log_state_persisted(struct ss_log *log);
/* The head just changed (log lock held): keep room in it for the pinned
 * records of the segment after it, and have the writer copy them early. */
void ss_log_head_opened(struct ss_log *log);
/* For ss_log_layout.c (log lock held): roll here and now (at open, for a
 * shrink, with no writer; -ENOSPC when the next segment still holds pinned
 * records), write the head's dirty bytes, reclaim a segment inside txn. */
int ss_log_roll_locked(struct ss_store *st, struct ss_counters *ctr);
int ss_log_write_dirty_locked(struct ss_store *st, struct ss_counters *ctr);
int ss_log_reclaim_locked(struct ss_store *st, struct ss_index_txn *txn, uint32_t seg,
                          uint32_t gen, struct ss_counters *ctr);
/* Grow (live) or shrink (offline) the log to new_bytes. 0 or -errno. */
int ss_log_resize(struct ss_store *st, struct ss_counters *ctr, uint64_t new_bytes, int shrink);

/* ss_log_read.c */
/* The checksum a record with this magic carries (ss_record_crc for new ones). */
uint32_t ss_record_crc_as(uint32_t magic, const void *key, size_t nkey, uint32_t flags,
                          uint32_t nbytes, const struct iovec *iov, int niov);
uint32_t ss_record_crc(const void *key, size_t nkey, uint32_t flags, uint32_t nbytes,
                       const struct iovec *iov, int niov);
/* The size of the whole, checksummed record of use `gen` at rec (room
 * bytes of segment left), else 0: the end of what that use wrote. */
uint32_t ss_record_whole(const char *rec, uint32_t room, uint32_t gen);

/* ss_copy_forward.c */
/* The copy_forward hook (struct ss_log_hooks): the segment writer thread. */
int ss_copy_forward_run(struct ss_store *st, uint32_t seg, uint32_t gen, const char *buf);
/* Start the log at open (after repair and the pinned figures are built):
 * roll into a fresh segment, or, when the segment after the head still
 * holds pinned records, go on appending in the head. 0 or -errno. */
int ss_copy_forward_open(struct ss_store *st, struct ss_counters *ctr);

/* ss_read.c: the record of a lookup that must come from the device (lock
 * held): from the read in t->use_read when it is this record's, else from
 * the page cache without blocking, else started asynchronously
 * (SS_FIND_ASYNC: -EINPROGRESS, t->started), else -EAGAIN (SS_FIND_NO_WAIT),
 * else read now. Otherwise returns as ss_log_read. */
int ss_read_record(struct ss_store_thread *t, const void *key, size_t nkey,
                   const struct ss_index_entry *e, unsigned flags);

#endif
