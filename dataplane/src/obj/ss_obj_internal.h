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
/* Replaced versions' chunks stay this long for GETs still streaming them. */
#define OBJ_GRACE_MS 30000u
/* A GET queues at most this much output before waiting for the socket. */
#define OBJ_STREAM_HIGH_WATER (1u << 20)

/* Per-bucket figures, added to by every worker (relaxed atomics). */
struct obj_bucket_stats {
#define OBJ_STAT(name) _Atomic uint64_t name;
    OBJ_STAT(requests) OBJ_STAT(hits) OBJ_STAT(misses) OBJ_STAT(bytes_out)
    OBJ_STAT(bytes_in) OBJ_STAT(puts) OBJ_STAT(deletes) OBJ_STAT(purges)
    OBJ_STAT(not_modified) OBJ_STAT(precondition_failed) OBJ_STAT(ranges)
    OBJ_STAT(errors) OBJ_STAT(origin_fetches) OBJ_STAT(collapsed_fetches)
    OBJ_STAT(revalidations) OBJ_STAT(objects) OBJ_STAT(object_bytes)
#undef OBJ_STAT
};

struct obj_bucket {
    char name[SS_BUCKET_NAME_MAX + 1];
    size_t name_len;
    int kind; /* enum ss_bucket_kind */
    struct obj_bucket_stats stats;
};

/* A replaced version whose chunks go once the grace period is over. */
struct obj_doomed {
    uint64_t version;
    uint32_t nchunks;
    uint64_t due_ms;
    struct obj_doomed *next;
};

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
    pthread_mutex_t doomed_lock;
    struct obj_doomed *doomed, **doomed_tail;
};

/* Chunk reads one worker keeps in flight at most (its ring's size). */
#define OBJ_WORKER_IO_DEPTH 64u

/* One worker's handle on the objects store. */
struct ss_obj_worker {
    struct ss_obj *o;
    struct ss_store_thread st;
    struct ss_counters ctr; /* the objects store's counters for this worker */
    int async;              /* chunk reads go through st's io_uring */
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
/* The ETag of m, quoted ("\"<32 hex>\""), NUL-terminated; 35 bytes. */
void obj_meta_etag(const struct obj_meta *m, char out[35]);

/* ss_obj_plane.c */
struct obj_bucket *obj_bucket_find(struct ss_obj *o, const char *name, size_t len);
/* The replaced version's chunks: deleted after OBJ_GRACE_MS. */
void obj_doom(struct ss_obj *o, uint64_t version, uint32_t nchunks);
/* Delete chunks [from, n) of version now (an aborted PUT, purges). */
void obj_delete_chunks(struct ss_store_thread *t, uint64_t version, uint32_t from, uint32_t n);
/* Look bucket/key's metadata up. Returns 0 with *m filled and its value
 * copied to buf (cap bytes), -ENOENT, or -errno. */
/* The same with mkey's stripe lock held by the caller. */
int obj_meta_find_locked(struct ss_store_thread *t, const unsigned char *mkey, const char *bucket,
                         size_t nbucket, const char *key, size_t nkey, struct obj_meta *m,
                         char *buf, size_t cap);
int obj_meta_get(struct ss_store_thread *t, const char *bucket, size_t nbucket, const char *key,
                 size_t nkey, struct obj_meta *m, char *buf, size_t cap);

#endif
