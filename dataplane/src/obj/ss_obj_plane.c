/*
 * ss_obj_plane.c - the object plane's life cycle: the objects store and
 * bucket table, each worker's handle on the store, housekeeping, per-bucket
 * figures, purges, and the deletion of chunks no object needs any more.
 *
 * Chunks are deleted in three cases. An aborted PUT deletes what it wrote
 * at once (no object ever named them). A replaced or deleted object's
 * chunks are doomed: housekeeping deletes them once no GET streams that
 * version (obj_stream_hold), so a GET
 * that began streaming the old version finishes it. And at open, chunks of
 * a version no metadata item names (a crash mid-PUT, or a crash before a
 * doomed version was deleted) are found by walking the index and deleted.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/ss_clock.h"
#include "server/ss_worker.h"
#include "ss_obj_internal.h"
#include "ss_obj_origin.h" /* the https buckets' TLS contexts */

static char *dup_str(const char *s)
{
    return s ? strdup(s) : NULL;
}

struct obj_bucket *obj_bucket_find(struct ss_obj *o, const char *name, size_t len)
{
    for (uint32_t i = 0; i < o->nbuckets; i++)
        if (o->buckets[i].name_len == len && memcmp(o->buckets[i].name, name, len) == 0)
            return &o->buckets[i];
    return NULL;
}

void obj_delete_chunks(struct ss_store_thread *t, uint64_t version, uint32_t from, uint32_t n)
{
    unsigned char key[OBJ_CHUNK_KEY_LEN];
    for (uint32_t i = from; i < n; i++) {
        obj_chunk_key(version, i, key);
        ss_store_lock(t, key, sizeof(key));
        ss_store_forget(t, key, sizeof(key));
        ss_store_unlock(t);
    }
}

int obj_put_item(struct ss_store_thread *t, const void *key, size_t nkey,
                 const struct iovec *iov, int niov, unsigned flags)
{
    int rc = -EAGAIN;
    for (int i = 0; i < OBJ_WRITE_RETRIES && rc == -EAGAIN; i++) {
        struct ss_item it = {0};
        ss_store_lock(t, key, nkey);
        rc = ss_store_write(t, key, nkey, &it, iov, niov, flags);
        ss_store_unlock(t);
    }
    return rc;
}

int obj_meta_replace(struct ss_store_thread *t, struct ss_obj *o, struct obj_bucket *b,
                     const struct obj_meta *m, unsigned flags)
{
    static _Thread_local char buf[OBJ_META_MAX];
    static _Thread_local char old_buf[OBJ_META_MAX];
    long len = obj_meta_encode(m, buf, sizeof(buf));
    if (len < 0)
        return (int)len;
    unsigned char mkey[OBJ_META_KEY_LEN];
    size_t nb = b->name_len;
    const char *key = m->name + nb + 1;
    size_t nkey = m->name_len - nb - 1;
    obj_meta_key(m->name, nb, key, nkey, mkey);
    struct iovec iov = {buf, (size_t)len};
    struct obj_meta old;
    int had = 0, rc = -EAGAIN;
    for (int i = 0; i < OBJ_WRITE_RETRIES && rc == -EAGAIN; i++) {
        struct ss_item it = {0};
        ss_store_lock(t, mkey, sizeof(mkey));
        had = obj_meta_find_locked(t, mkey, m->name, nb, key, nkey, &old, old_buf,
                                   sizeof(old_buf)) == 0;
        rc = ss_store_write(t, mkey, sizeof(mkey), &it, &iov, 1, flags);
        ss_store_unlock(t);
    }
    if (rc)
        return rc;
    struct obj_bucket_stats *bs = &b->stats;
    if (had && old.version != m->version) {
        obj_doom(o, old.version, obj_nchunks(old.size, old.chunk_bytes));
        atomic_fetch_sub_explicit(&bs->objects, 1, memory_order_relaxed);
        atomic_fetch_sub_explicit(&bs->object_bytes, old.size, memory_order_relaxed);
    }
    if (!had || old.version != m->version) {
        atomic_fetch_add_explicit(&bs->objects, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&bs->object_bytes, m->size, memory_order_relaxed);
    }
    return 0;
}

void obj_doom(struct ss_obj *o, uint64_t version, uint32_t nchunks)
{
    struct obj_doomed *d = malloc(sizeof(*d));
    if (!d)
        return; /* left for the orphan walk at the next open */
    d->version = version;
    d->nchunks = nchunks;
    d->due_ms = ss_clock_mono_ms() + OBJ_GRACE_MS; /* the latest; usually far sooner */
    d->next = NULL;
    pthread_mutex_lock(&o->doomed_lock);
    *o->doomed_tail = d;
    o->doomed_tail = &d->next;
    pthread_mutex_unlock(&o->doomed_lock);
}

int obj_meta_find_locked(struct ss_store_thread *t, const unsigned char *mkey, const char *bucket,
                         size_t nbucket, const char *key, size_t nkey, struct obj_meta *m,
                         char *buf, size_t cap)
{
    struct ss_item it;
    int rc = ss_store_find(t, mkey, OBJ_META_KEY_LEN, &it, SS_FIND_VALUE);
    if (rc == -ETIME || rc == -ECANCELED || rc == -EBADMSG)
        return -ENOENT;
    if (rc)
        return rc;
    if (t->value_len > cap)
        return -ENOENT; /* not a value of ours */
    memcpy(buf, t->value, t->value_len);
    if (obj_meta_decode(buf, t->value_len, m))
        return -ENOENT;
    /* Another name with the same digest: not this object. */
    if (m->name_len != nbucket + 1 + nkey || memcmp(m->name, bucket, nbucket) != 0 ||
        m->name[nbucket] != '/' || memcmp(m->name + nbucket + 1, key, nkey) != 0)
        return -ENOENT;
    return 0;
}

/* ---- the walk at open: live versions, orphan chunks, per-bucket gauges ---- */

struct live_set {
    uint64_t *v;
    size_t n, cap;
};

struct open_walk {
    struct ss_obj *o;
    struct live_set live;
    char *buf;
    uint64_t orphans;
};

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int walk_meta(void *arg, const void *key, size_t nkey)
{
    struct open_walk *w = arg;
    struct ss_store_thread *t = &w->o->ctl_st;
    struct ss_item it;
    struct obj_meta m;
    ss_store_lock(t, key, nkey);
    int rc = ss_store_find(t, key, nkey, &it, SS_FIND_VALUE | SS_FIND_NO_BUMP);
    int ok = rc == 0 && t->value_len <= OBJ_META_MAX;
    if (ok) {
        memcpy(w->buf, t->value, t->value_len);
        ok = obj_meta_decode(w->buf, t->value_len, &m) == 0;
    }
    ss_store_unlock(t);
    if (!ok)
        return 0;
    if (w->live.n == w->live.cap) {
        size_t cap = w->live.cap ? w->live.cap * 2 : 1024;
        uint64_t *v = realloc(w->live.v, cap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        w->live.v = v;
        w->live.cap = cap;
    }
    w->live.v[w->live.n++] = m.version;
    const char *slash = memchr(m.name, '/', m.name_len);
    struct obj_bucket *b = slash ? obj_bucket_find(w->o, m.name, (size_t)(slash - m.name)) : NULL;
    if (b) {
        atomic_fetch_add_explicit(&b->stats.objects, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&b->stats.object_bytes, m.size, memory_order_relaxed);
    }
    return 0;
}

static int walk_chunk(void *arg, const void *key, size_t nkey)
{
    struct open_walk *w = arg;
    if (nkey != OBJ_CHUNK_KEY_LEN)
        return 0;
    const unsigned char *k = key;
    uint64_t version = 0;
    for (int i = 0; i < 8; i++)
        version = version << 8 | k[1 + i];
    if (bsearch(&version, w->live.v, w->live.n, sizeof(uint64_t), cmp_u64))
        return 0;
    struct ss_store_thread *t = &w->o->ctl_st;
    ss_store_lock(t, key, nkey);
    ss_store_forget(t, key, nkey);
    ss_store_unlock(t);
    w->orphans++;
    return 0;
}

static int open_walk(struct ss_obj *o, char *err, size_t errlen)
{
    struct open_walk w = {.o = o, .buf = malloc(OBJ_META_MAX)};
    if (!w.buf)
        return -ENOMEM;
    int rc = ss_store_keys(o->store, "M", 1, walk_meta, &w);
    if (rc == 0) {
        qsort(w.live.v, w.live.n, sizeof(uint64_t), cmp_u64);
        rc = ss_store_keys(o->store, "C", 1, walk_chunk, &w);
    }
    if (rc)
        snprintf(err, errlen, "cannot walk the objects index: %s", strerror(rc < 0 ? -rc : EIO));
    else if (w.orphans)
        fprintf(stderr, "smartswitch: objects: deleted %llu chunks no object names (PUTs "
                "an earlier crash cut short, or objects replaced just before it)\n",
                (unsigned long long)w.orphans);
    free(w.live.v);
    free(w.buf);
    return rc;
}

/* ---- life cycle ---- */

/* A cached bucket's origin: its numeric address (resolved by the control
 * plane), path and Host field. 0, or -EINVAL with err naming the bucket. */
static int origin_of(struct obj_bucket *ob, const struct ss_bucket_settings *b, char *err,
                     size_t errlen)
{
    struct sockaddr_in *in4 = (struct sockaddr_in *)&ob->origin;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ob->origin;
    memset(&ob->origin, 0, sizeof(ob->origin));
    if (b->origin_addr && inet_pton(AF_INET, b->origin_addr, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons((uint16_t)b->origin_port);
        ob->origin_len = sizeof(*in4);
    } else if (b->origin_addr && inet_pton(AF_INET6, b->origin_addr, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)b->origin_port);
        ob->origin_len = sizeof(*in6);
    } else {
        snprintf(err, errlen, "bucket %s: origin address '%s' is not numeric", b->name,
                 b->origin_addr ? b->origin_addr : "");
        return -EINVAL;
    }
    ob->origin_path = strdup(b->origin_path && b->origin_path[0] ? b->origin_path : "/");
    ob->origin_host = strdup(b->origin_host ? b->origin_host : b->origin_addr);
    ob->origin_timeout_ms = b->origin_timeout_ms ? b->origin_timeout_ms : 10000;
    ob->default_ttl_s = b->default_ttl_s;
    ob->flash_admission = b->flash_admission;
    int signs = b->kind == SS_BUCKET_S3 && b->s3_access_key_id;
    if (signs) {
        ob->s3_key_id = strdup(b->s3_access_key_id);
        ob->s3_secret = strdup(b->s3_secret_access_key ? b->s3_secret_access_key : "");
        ob->s3_region = strdup(b->s3_region ? b->s3_region : "us-east-1");
    }
    if (!ob->origin_path || !ob->origin_host ||
        (signs && (!ob->s3_key_id || !ob->s3_secret || !ob->s3_region))) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    if (b->origin_tls)
        return obj_tls_context(ob, b->origin_tls_name ? b->origin_tls_name : b->origin_addr,
                               b->origin_ca_file, err, errlen);
    return 0;
}

struct ss_obj *ss_obj_open(const struct ss_objects_settings *s, char *err, size_t errlen)
{
    if (!s || s->chunk_bytes < 4096 || s->nbuckets > SS_OBJECTS_BUCKETS_MAX ||
        (s->nbuckets && !s->buckets)) {
        snprintf(err, errlen, "objects settings: a chunk size of at least 4 KiB and at most "
                 "%d buckets are required", SS_OBJECTS_BUCKETS_MAX);
        return NULL;
    }
    struct ss_obj *o = calloc(1, sizeof(*o));
    if (!o) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    o->s = *s;
    o->own_listen_host = dup_str(s->listen_host);
    o->own_index_dir = dup_str(s->store.index_dir);
    o->own_device_path = dup_str(s->store.device_path);
    o->s.listen_host = o->own_listen_host;
    o->s.store.index_dir = o->own_index_dir;
    o->s.store.device_path = o->own_device_path;
    o->s.store.item_size_max = s->chunk_bytes;
    o->chunk_data = s->chunk_bytes;
    while (ss_store_record_bytes(OBJ_CHUNK_KEY_LEN, o->chunk_data) > s->chunk_bytes)
        o->chunk_data -= 8;
    o->s.store.pool_name = NULL; /* its stats are the buckets' */
    o->s.buckets = NULL;
    o->nbuckets = s->nbuckets;
    o->buckets = calloc(s->nbuckets ? s->nbuckets : 1, sizeof(*o->buckets));
    pthread_mutex_init(&o->doomed_lock, NULL);
    pthread_mutex_init(&o->fill_lock, NULL);
    o->doomed_tail = &o->doomed;
    if (!o->buckets) {
        snprintf(err, errlen, "out of memory");
        ss_obj_close(o);
        return NULL;
    }
    for (uint32_t i = 0; i < s->nbuckets; i++) {
        const struct ss_bucket_settings *b = &s->buckets[i];
        size_t n = b->name ? strlen(b->name) : 0;
        if (n < 3 || n > SS_BUCKET_NAME_MAX ||
            (b->kind != SS_BUCKET_LOCAL && b->kind != SS_BUCKET_HTTP &&
             b->kind != SS_BUCKET_S3)) {
            snprintf(err, errlen, "bucket %u (%s): a name of 3 to %d bytes is required, and "
                     "buckets are local or caches of an HTTP origin", i,
                     b->name ? b->name : "?", SS_BUCKET_NAME_MAX);
            ss_obj_close(o);
            return NULL;
        }
        memcpy(o->buckets[i].name, b->name, n);
        o->buckets[i].name_len = n;
        o->buckets[i].kind = b->kind;
        if (b->kind != SS_BUCKET_LOCAL && origin_of(&o->buckets[i], b, err, errlen)) {
            ss_obj_close(o);
            return NULL;
        }
    }
    o->store = ss_store_open(&o->s.store, err, errlen);
    o->s.store.device = NULL; /* the store owns it now */
    if (!o->store) {
        ss_obj_close(o);
        return NULL;
    }
    int rc = ss_store_thread_init(&o->ctl_st, o->store, &o->ctl_ctr);
    if (rc == 0)
        rc = open_walk(o, err, errlen);
    else
        snprintf(err, errlen, "cannot attach to the objects store: %s", strerror(-rc));
    if (rc) {
        ss_obj_close(o);
        return NULL;
    }
    return o;
}

void ss_obj_close(struct ss_obj *o)
{
    if (!o)
        return;
    for (struct obj_doomed *d = o->doomed, *next; d; d = next) {
        next = d->next;
        /* No GET streams any more (the workers have stopped): no grace needed. */
        if (o->store && o->ctl_st.store)
            obj_delete_chunks(&o->ctl_st, d->version, 0, d->nchunks);
        free(d);
    }
    if (o->store) {
        if (o->ctl_st.store)
            ss_store_thread_fini(&o->ctl_st);
        ss_store_close(o->store);
    }
    for (struct obj_stream *s = o->streams, *next; s; s = next) {
        next = s->next;
        free(s);
    }
    pthread_mutex_destroy(&o->doomed_lock);
    pthread_mutex_destroy(&o->fill_lock);
    for (uint32_t i = 0; o->buckets && i < o->nbuckets; i++) {
        free(o->buckets[i].origin_path);
        free(o->buckets[i].origin_host);
        obj_tls_context_free(&o->buckets[i]);
        free(o->buckets[i].s3_key_id);
        free(o->buckets[i].s3_region);
        if (o->buckets[i].s3_secret) {
            explicit_bzero(o->buckets[i].s3_secret, strlen(o->buckets[i].s3_secret));
            free(o->buckets[i].s3_secret);
        }
    }
    free(o->buckets);
    free(o->own_listen_host);
    free(o->own_index_dir);
    free(o->own_device_path);
    free(o);
}

int ss_obj_worker_init(struct ss_worker *w, struct ss_obj *o, int *io_fd)
{
    *io_fd = -1;
    struct ss_obj_worker *ow = calloc(1, sizeof(*ow));
    if (!ow)
        return -ENOMEM;
    ow->o = o;
    ow->w = w;
    int rc = ss_store_thread_init(&ow->st, o->store, &ow->ctr);
    if (rc) {
        free(ow);
        return rc;
    }
    w->obj = ow;
    /* Chunk reads complete through this worker's own ring, as memcached
     * device hits do; without one (refused, or a polled device) they are
     * synchronous. */
    int fd = ss_store_io_open(&ow->st, OBJ_WORKER_IO_DEPTH);
    if (fd >= 0 && ss_store_io_polled(&ow->st)) {
        ss_store_io_close(&ow->st);
        fd = -1;
    }
    ow->async = fd >= 0;
    *io_fd = fd;
    return 0;
}

void ss_obj_worker_submit(struct ss_worker *w)
{
    struct ss_obj_worker *ow = w->obj;
    if (ow && ow->async)
        ss_store_io_submit(&ow->st);
}

void ss_obj_origin_event(struct ss_worker *w, void *tagged, uint32_t events)
{
    struct ss_obj_worker *ow = w->obj;
    if (ow)
        obj_origin_on_event(ow, (struct obj_origin *)((uintptr_t)tagged & ~(uintptr_t)3), events);
}

void ss_obj_worker_reap(struct ss_worker *w)
{
    struct ss_obj_worker *ow = w->obj;
    if (ow && ow->async)
        ss_store_io_reap(&ow->st);
}

void ss_obj_worker_fini(struct ss_worker *w)
{
    struct ss_obj_worker *ow = w->obj;
    if (!ow)
        return;
    obj_origin_worker_fini(ow);
    ss_store_thread_fini(&ow->st);
    free(ow);
    w->obj = NULL;
}

void obj_stream_hold(struct ss_obj *o, uint64_t version)
{
    pthread_mutex_lock(&o->doomed_lock);
    struct obj_stream *s = o->streams;
    while (s && s->version != version)
        s = s->next;
    if (!s && (s = calloc(1, sizeof(*s)))) {
        s->version = version;
        s->next = o->streams;
        o->streams = s;
    }
    if (s)
        s->readers++;
    pthread_mutex_unlock(&o->doomed_lock);
}

void obj_stream_release(struct ss_obj *o, uint64_t version)
{
    pthread_mutex_lock(&o->doomed_lock);
    for (struct obj_stream **l = &o->streams; *l; l = &(*l)->next) {
        struct obj_stream *s = *l;
        if (s->version == version) {
            if (--s->readers == 0) {
                *l = s->next;
                free(s);
            }
            break;
        }
    }
    pthread_mutex_unlock(&o->doomed_lock);
}

static bool streamed(const struct ss_obj *o, uint64_t version)
{
    for (const struct obj_stream *s = o->streams; s; s = s->next)
        if (s->version == version)
            return true;
    return false;
}

int ss_obj_housekeep(struct ss_obj *o)
{
    uint64_t now = ss_clock_mono_ms();
    /* Every doomed version no GET streams (or whose grace is over) goes now:
     * local buckets' chunks are pinned, so their space comes back only so. */
    struct obj_doomed *go = NULL;
    pthread_mutex_lock(&o->doomed_lock);
    struct obj_doomed **l = &o->doomed;
    while (*l) {
        struct obj_doomed *d = *l;
        if (d->due_ms <= now || !streamed(o, d->version)) {
            *l = d->next;
            d->next = go;
            go = d;
        } else {
            l = &d->next;
        }
    }
    o->doomed_tail = l;
    pthread_mutex_unlock(&o->doomed_lock);
    while (go) {
        struct obj_doomed *d = go;
        go = d->next;
        obj_delete_chunks(&o->ctl_st, d->version, 0, d->nchunks);
        free(d);
    }
    return ss_store_housekeep(&o->ctl_st);
}

void ss_obj_store_stats(struct ss_obj *o, struct ss_store_stats *out)
{
    ss_store_get_stats(o->store, out);
}

int ss_obj_bucket_stats(struct ss_obj *o, uint32_t i, struct ss_bucket_stats *out)
{
    if (!o || i >= o->nbuckets || !out)
        return -EINVAL;
    const struct obj_bucket_stats *b = &o->buckets[i].stats;
#define OBJ_READ(name) out->name = atomic_load_explicit(&b->name, memory_order_relaxed);
    OBJ_READ(requests) OBJ_READ(hits) OBJ_READ(misses) OBJ_READ(bytes_out)
    OBJ_READ(bytes_in) OBJ_READ(puts) OBJ_READ(deletes) OBJ_READ(purges)
    OBJ_READ(not_modified) OBJ_READ(precondition_failed) OBJ_READ(ranges)
    OBJ_READ(errors) OBJ_READ(origin_fetches) OBJ_READ(collapsed_fetches)
    OBJ_READ(revalidations) OBJ_READ(objects) OBJ_READ(object_bytes)
    OBJ_READ(bytes_out_dram) OBJ_READ(flash_admitted)
#undef OBJ_READ
    return 0;
}

/* ---- purge by prefix (the control thread) ---- */

struct purge_walk {
    struct ss_obj *o;
    struct obj_bucket *b;
    const char *prefix;
    size_t nprefix;
    char *buf;
    long dropped;
};

static int walk_purge(void *arg, const void *key, size_t nkey)
{
    struct purge_walk *w = arg;
    struct ss_store_thread *t = &w->o->ctl_st;
    struct ss_item it;
    struct obj_meta m;
    ss_store_lock(t, key, nkey);
    int rc = ss_store_find(t, key, nkey, &it, SS_FIND_VALUE | SS_FIND_NO_BUMP);
    int match = 0;
    if (rc == 0 && t->value_len <= OBJ_META_MAX) {
        memcpy(w->buf, t->value, t->value_len);
        size_t nb = w->b->name_len;
        match = obj_meta_decode(w->buf, t->value_len, &m) == 0 &&
                m.name_len >= nb + 1 + w->nprefix && memcmp(m.name, w->b->name, nb) == 0 &&
                m.name[nb] == '/' && memcmp(m.name + nb + 1, w->prefix, w->nprefix) == 0;
        if (match)
            ss_store_forget(t, key, nkey);
    }
    ss_store_unlock(t);
    if (match) {
        obj_doom(w->o, m.version, obj_nchunks(m.size, m.chunk_bytes));
        atomic_fetch_sub_explicit(&w->b->stats.objects, 1, memory_order_relaxed);
        atomic_fetch_sub_explicit(&w->b->stats.object_bytes, m.size, memory_order_relaxed);
        atomic_fetch_add_explicit(&w->b->stats.purges, 1, memory_order_relaxed);
        w->dropped++;
    }
    return 0;
}

long ss_obj_purge(struct ss_obj *o, const char *bucket, const char *prefix, size_t nprefix)
{
    if (!o || !bucket)
        return -EINVAL;
    struct obj_bucket *b = obj_bucket_find(o, bucket, strlen(bucket));
    if (!b)
        return -ENOENT;
    struct purge_walk w = {.o = o, .b = b, .prefix = prefix ? prefix : "",
                           .nprefix = prefix ? nprefix : 0,
                           .buf = malloc(OBJ_META_MAX)};
    if (!w.buf)
        return -ENOMEM;
    /* Committed first: metadata written a moment ago must be seen too. */
    ss_store_sync(&o->ctl_st);
    int rc = ss_store_keys(o->store, "M", 1, walk_purge, &w);
    free(w.buf);
    return rc ? rc : w.dropped;
}
