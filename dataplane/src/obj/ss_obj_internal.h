/*
 * ss_obj_internal.h - private to the object plane (ss_obj_*.c).
 *
 * How an object lives in its store (a struct ss_store on the objects pool):
 *   - one metadata item under 'M' + MD5(bucket NUL key) (store keys are at
 *     most 250 bytes, S3 keys up to 1024, so the name is hashed and kept
 *     whole inside the item, where every lookup checks it);
 *   - its data in chunk items under 'C' + version (8 bytes, big-endian) +
 *     chunk index (4 bytes, big-endian), chunk_bytes each but the last.
 * The version is a fresh store cas taken when a PUT starts. Chunks are
 * written first, the metadata item last: writing it is the commit, so a
 * crash mid-PUT leaves the old object (or none), never a torn one. The
 * replaced version's chunks are deleted later (ss_obj_plane.c), after a
 * grace period for GETs still streaming them; chunks no metadata item names
 * (a crash mid-PUT) are deleted when the store opens.
 */
#ifndef SS_OBJ_INTERNAL_H
#define SS_OBJ_INTERNAL_H

#include <pthread.h>
#include <sys/socket.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ss_http.h"
#include "ring/ss_hashkit.h"
#include "ss_obj.h"
#include "ss_store.h"

#define OBJ_META_KEY_LEN 17u  /* 'M' + 16 digest bytes */
#define OBJ_CHUNK_KEY_LEN 13u /* 'C' + version + index */
#define OBJ_NAME_MAX (SS_BUCKET_NAME_MAX + 1 + 1024) /* bucket '/' key */
/* Response fields kept with an object (Content-Type, Cache-Control,
 * x-amz-meta-*, ...), as header lines ready to send. */
#define OBJ_FIELDS_MAX 8192u
/* Longest origin ETag kept (longer ones: the copy has none, and is not revalidated). */
#define OBJ_ETAG_MAX 128u
/* The largest metadata item: its header, name, ETag and fields. */
#define OBJ_META_MAX (OBJ_NAME_MAX + OBJ_FIELDS_MAX + OBJ_ETAG_MAX + 128)
/* A version being streamed when its object was replaced keeps its chunks
 * until the stream ends, but at most this long (a client that stopped
 * reading is closed by request_timeout well before). */
#define OBJ_GRACE_MS 600000u
/* A GET queues at most this much output before waiting for the socket. */
#define OBJ_STREAM_HIGH_WATER (1u << 20)
/* Body bytes below this are copied into the output: cheaper than a reference. */
#define OBJ_SEND_BY_REF_MIN (16u << 10)
/* SS_FLASH_ON_SECOND_REQUEST keeps a fetched object in DRAM only when it is
 * at most this share of the DRAM tier (one stripe's average share: the DRAM
 * tier makes room for it from other stripes when its own has too little)
 * and at most OBJ_DRAM_FIRST_MAX (the fill holds every such chunk for its
 * readers, OBJ_FILL_HELD of them at most). A reader streaming from the fill
 * that no longer finds a chunk in the table sends the fill's hold, and the
 * DRAM tier does not evict a DRAM-only item in the 100 ms after it was
 * stored; a later request finds the copy whole or misses. So an eviction
 * can only ever make a later request a miss, never cut a body short. */
#define OBJ_DRAM_FIRST_SHARE 256u
#define OBJ_DRAM_FIRST_MAX (1u << 20)
/* The most chunks such an object has: 1 MiB in chunks of at least 64 KiB
 * (their data a little less), and a short last one. */
#define OBJ_FILL_HELD 18u

/* Per-bucket figures, added to by every worker (relaxed atomics). */
struct obj_bucket_stats {
#define OBJ_STAT(name) _Atomic uint64_t name;
    OBJ_STAT(requests) OBJ_STAT(hits) OBJ_STAT(misses) OBJ_STAT(bytes_out)
    OBJ_STAT(bytes_in) OBJ_STAT(puts) OBJ_STAT(deletes) OBJ_STAT(purges)
    OBJ_STAT(not_modified) OBJ_STAT(precondition_failed) OBJ_STAT(ranges)
    OBJ_STAT(errors) OBJ_STAT(origin_fetches) OBJ_STAT(collapsed_fetches)
    OBJ_STAT(revalidations) OBJ_STAT(objects) OBJ_STAT(object_bytes)
    OBJ_STAT(bytes_out_dram) OBJ_STAT(flash_admitted)
#undef OBJ_STAT
};

struct obj_bucket {
    char name[SS_BUCKET_NAME_MAX + 1];
    size_t name_len;
    int kind; /* enum ss_bucket_kind */
    struct obj_bucket_stats stats;
    /* A cached bucket's origin (kind http); its strings are owned here. */
    struct sockaddr_storage origin;
    socklen_t origin_len;
    char *origin_path;  /* ends in '/': the key is appended */
    char *origin_host;  /* the Host field sent */
    uint32_t origin_timeout_ms;
    uint32_t default_ttl_s;
    int flash_admission; /* enum ss_flash_admission */
    /* Kind s3 with credentials: requests signed (ss_obj_sigv4.c); else NULL. */
    char *s3_key_id, *s3_secret, *s3_region;
    /* An https origin: its client context and the name its certificate must
     * carry (ss_obj_origin_tls.c); NULL for http. */
    struct ssl_ctx_st *tls;
    char *tls_name;
};

/*
 * A fetch from an origin, shared by every request for the object while it
 * runs (concurrent misses collapse into one fetch, on whichever worker
 * started it). The fetching worker writes the body into chunk items of
 * `version` and advances `committed`; waiting requests, on any worker, read
 * those chunks as they appear (read-while-write). Everything below the lock
 * line changes under ss_obj.fill_lock; requests hold a reference.
 */
enum obj_fill_state {
    FILL_HEAD = 0,   /* waiting for the origin's response head */
    FILL_BODY,       /* the head is in (status 200): body arriving */
    FILL_DONE,       /* the body is complete (and stored when cacheable) */
    FILL_FRESH,      /* revalidated (304): the stored copy is fresh again */
    FILL_FAILED,     /* no usable answer: `status` says what to answer */
};

struct obj_fill {
    struct obj_fill *next;              /* in the fill table's chain */
    unsigned char mkey[OBJ_META_KEY_LEN];
    struct obj_bucket *b;
    uint64_t version;                   /* the chunks' version */
    uint32_t chunk_data;
    /* under the lock */
    int refs;
    int state;                          /* enum obj_fill_state */
    int status;                         /* FILL_FAILED: the status to answer */
    uint64_t committed;                 /* body bytes readable from chunk items */
    int64_t size;                       /* the whole body; -1 until known */
    /* Chunks kept in DRAM only (SS_WRITE_DRAM_ONLY) have no other copy: the
     * fill holds them until its last reference goes, so a waiter that no
     * longer finds one (the DRAM tier evicted it) sends the fill's. */
    struct ss_value_hold *held[OBJ_FILL_HELD];
    /* set once, before state leaves FILL_HEAD (read without the lock after) */
    char etag[OBJ_ETAG_MAX + 1];
    int64_t mtime;
    char fields[OBJ_FIELDS_MAX];        /* response fields to send with it */
    size_t fields_len;
};

/* A version some GETs are streaming (its chunks must stay until they end). */
struct obj_stream {
    uint64_t version;
    uint32_t readers;
    struct obj_stream *next;
};

/* A replaced version whose chunks go once no GET streams them. */
struct obj_doomed {
    uint64_t version;
    uint32_t nchunks;
    uint64_t due_ms;
    struct obj_doomed *next;
};

#define OBJ_FILL_BUCKETS 256u

struct ss_obj {
    struct ss_objects_settings s; /* strings and buckets point at own copies */
    /* Data bytes per chunk: a chunk's whole record is chunk_bytes, so a
     * segment of a power-of-two size holds whole chunks with nothing wasted. */
    uint32_t chunk_data;
    char *own_listen_host, *own_index_dir, *own_device_path;
    struct ss_store *store;
    struct ss_store_thread ctl_st; /* the control thread's handle */
    struct ss_counters ctl_ctr;
    uint32_t nbuckets;
    struct obj_bucket *buckets;
    pthread_mutex_t doomed_lock;  /* the doomed list and the streams below */
    struct obj_doomed *doomed, **doomed_tail;
    struct obj_stream *streams;   /* versions GETs are streaming now */
    pthread_mutex_t fill_lock;
    struct obj_fill *fills[OBJ_FILL_BUCKETS];
    /* Fetches that left each slot of the table (changed under fill_lock,
     * read without it): see obj_fill_join. */
    uint32_t fills_ended[OBJ_FILL_BUCKETS];
};

/* Chunk reads one worker keeps in flight at most (its ring's size). */
#define OBJ_WORKER_IO_DEPTH 64u

/* One worker's handle on the objects store. */
struct ss_obj_worker {
    struct ss_obj *o;
    struct ss_worker *w;       /* the worker (its epoll set) */
    struct ss_store_thread st;
    struct ss_counters ctr; /* the objects store's counters for this worker */
    int async;              /* chunk reads go through st's io_uring */
    struct obj_conn *waiting;  /* requests waiting for a fill to progress */
    struct obj_origin *origins; /* this worker's fetches in progress */
    struct obj_origin *idle;    /* kept-alive origin connections */
    unsigned nidle;
};

/* What a metadata item holds (its encoding: ss_obj_meta.c). */
struct obj_meta {
    uint64_t version;
    uint64_t size;
    uint32_t chunk_bytes;
    int64_t mtime;       /* Last-Modified, unix seconds */
    int64_t stored_at;   /* when this copy was stored (Age) */
    int64_t expires_at;  /* cached buckets: fresh until then; 0 = no limit */
    unsigned char md5[16];
    const char *name;    /* bucket '/' key; points into the item's value */
    size_t name_len;
    const char *etag;    /* the origin's ETag as it sent it; empty: the MD5 is the ETag */
    size_t etag_len;
    const char *fields;  /* header lines to send with it */
    size_t fields_len;
};

/* ss_obj_meta.c */
void obj_meta_key(const char *bucket, size_t nbucket, const char *key, size_t nkey,
                  unsigned char out[OBJ_META_KEY_LEN]);
void obj_chunk_key(uint64_t version, uint32_t index, unsigned char out[OBJ_CHUNK_KEY_LEN]);
uint32_t obj_nchunks(uint64_t size, uint32_t chunk_bytes);
/* Encode m (name and fields included) into buf; returns the length, or
 * -ENOSPC when cap is too small. */
long obj_meta_encode(const struct obj_meta *m, char *buf, size_t cap);
/* Decode a metadata item's value; m's pointers point into it. 0 or -EBADMSG. */
int obj_meta_decode(const char *val, size_t len, struct obj_meta *m);
/* The ETag of m as sent in ETag (the origin's, or "\"<32 hex md5>\""),
 * NUL-terminated. */
void obj_meta_etag(const struct obj_meta *m, char out[OBJ_ETAG_MAX + 1]);
/* n bytes as 2n lower-case hex digits and a NUL. */
void obj_hex(const unsigned char *in, size_t n, char *out);

/* ss_obj_fill.c */
/* A count that changes when a fetch in mkey's slot of the table ends: read
 * it before looking for the stored copy, and give it to obj_fill_join. */
uint32_t obj_fill_ended(struct ss_obj *o, const unsigned char *mkey);
/* Into *fill, the fill for mkey in progress with a reference taken, or a
 * new one registered (*started) with the caller's reference and the
 * fetch's: found or made in one step, so concurrent misses start one fetch.
 * 0; -EAGAIN when a fetch in the slot ended since *ended_seen (it may have
 * stored the object after the caller looked: look again; NULL ended_seen
 * never refuses); -ENOMEM. */
int obj_fill_join(struct ss_obj *o, struct obj_bucket *b, const unsigned char *mkey,
                  const uint32_t *ended_seen, struct obj_fill **fill, bool *started);
/* The same for one request's write through: not in the table (no GET
 * joins it), its version given (the PUT's chunks). */
struct obj_fill *obj_fill_private(struct ss_obj *o, struct obj_bucket *b,
                                  const unsigned char *mkey, uint64_t version);
void obj_fill_put(struct ss_obj *o, struct obj_fill *f);
/* The metadata of the copy f fills, as far as the origin's head says it:
 * version, chunking, size, validators, fields (f's strings, not copied).
 * When it was stored, its expiry and its name are the caller's to set. */
void obj_fill_meta(const struct obj_fill *f, uint64_t size, struct obj_meta *m);
/* The fill's state moves on (under the lock). */
void obj_fill_set(struct ss_obj *o, struct obj_fill *f, int state, int status);
void obj_fill_commit(struct ss_obj *o, struct obj_fill *f, uint64_t committed);
/* The fill keeps chunk `index`'s DRAM-only bytes (hold taken under the
 * chunk's lock) until its last reference goes. */
void obj_fill_hold(struct ss_obj *o, struct obj_fill *f, uint32_t index,
                   struct ss_value_hold *hold);
/* Another hold on chunk `index`'s bytes if the fill keeps them, else NULL. */
struct ss_value_hold *obj_fill_held(struct ss_obj *o, struct obj_fill *f, uint32_t index);
/* Seconds a response stays fresh (RFC 9111 section 4.2.1), -1 when it must
 * not be stored; *age gets the Age it arrived with. */
int64_t obj_freshness(const struct obj_bucket *b, const struct ss_http_resp *r, int64_t now,
                      int64_t *age);

/* ss_obj_origin.c */
/* Start fetching f's object from its bucket's origin on worker ow;
 * stale: the stored copy being revalidated (its validators are sent), or NULL.
 * Returns 0, or -errno (f is then failed). */
int obj_origin_fetch(struct ss_obj_worker *ow, struct obj_fill *f, const char *key,
                     size_t nkey, const struct obj_meta *stale);
/* Write f's object through to the origin: PUT its body from f's chunk
 * items (f->size, f->fields), or DELETE it. The local copy follows the
 * origin's answer. Returns 0, or -errno (f is then failed). */
int obj_origin_write(struct ss_obj_worker *ow, struct obj_fill *f, const char *key,
                     size_t nkey, int method);
void obj_origin_on_event(struct ss_obj_worker *ow, struct obj_origin *org, uint32_t events);
/* Deadlines of this worker's fetches: time them out. Returns ms to the next. */
int obj_origin_tick(struct ss_obj_worker *ow, uint64_t now_ms);
void obj_origin_worker_fini(struct ss_obj_worker *ow);

/* ss_obj_plane.c */
struct obj_bucket *obj_bucket_find(struct ss_obj *o, const char *name, size_t len);
/* A GET starts / stops streaming version's chunks. */
void obj_stream_hold(struct ss_obj *o, uint64_t version);
void obj_stream_release(struct ss_obj *o, uint64_t version);
/* The replaced version's chunks: deleted by housekeeping once no GET
 * streams them (or OBJ_GRACE_MS passed). */
void obj_doom(struct ss_obj *o, uint64_t version, uint32_t nchunks);
/* Write one item (locking its stripe), retrying the store's -EAGAIN (a
 * write that waited for a pinned record's copy while another thread
 * changed the stripe). 0 or -errno. */
int obj_put_item(struct ss_store_thread *t, const void *key, size_t nkey,
                 const struct iovec *iov, int niov, unsigned flags);
/* Make m bucket b's current version of its object: encode it, write it in
 * place of the metadata item there now (read and replaced under one lock,
 * so two writers each doom exactly the version they replaced), doom that
 * version's chunks and move the bucket's gauges. 0 or -errno. */
int obj_meta_replace(struct ss_store_thread *t, struct ss_obj *o, struct obj_bucket *b,
                     const struct obj_meta *m, unsigned flags);
/* Bound on those retries: each means another thread wrote meanwhile. */
#define OBJ_WRITE_RETRIES 64
/* Delete chunks [from, n) of version now (an aborted PUT, purges). */
void obj_delete_chunks(struct ss_store_thread *t, uint64_t version, uint32_t from, uint32_t n);
/* Look bucket/key's metadata up. Returns 0 with *m filled and its value
 * copied to buf (cap bytes), -ENOENT, or -errno. */
/* bucket/key's metadata, with mkey's stripe lock held by the caller: 0 with
 * *m filled and its value copied to buf (cap bytes), -ENOENT, or -errno. */
int obj_meta_find_locked(struct ss_store_thread *t, const unsigned char *mkey, const char *bucket,
                         size_t nbucket, const char *key, size_t nkey, struct obj_meta *m,
                         char *buf, size_t cap);

#endif
