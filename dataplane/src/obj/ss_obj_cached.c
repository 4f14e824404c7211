/*
 * ss_obj_cached.c - GET and HEAD in a cached bucket: a fresh stored copy is
 * served like a local object (with its Age); a missing or stale one joins
 * the fetch in progress for it, or starts one (ss_obj_origin.c), and the
 * request waits.
 *
 * A waiting request is on its worker's waiting list and is looked at once
 * per loop turn (ss_obj_worker_tick), so requests on every worker share one
 * fetch without any worker touching another's connections. When the
 * origin's head is in, a plain GET streams the body as its chunks are
 * stored (read-while-write), chunked when its length is not known. A GET
 * with a Range or preconditions, and a HEAD, are answered from the head as
 * well when it gives the length and an ETag (a range streams the bytes it
 * covers as they are stored: a few bytes of a 5 GiB object need not wait
 * for the rest); else they wait for the whole object and are served from
 * the store. A stale copy whose revalidation comes back
 * 304 is served as it is; one whose origin fails is served stale when its
 * Cache-Control allows it (stale-if-error), else the answer is 502 or 504.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "common/ss_clock.h"
#include "server/ss_server.h"
#include "server/ss_worker.h"
#include "ss_obj_conn.h"

static int write_answered(struct ss_conn *c, struct obj_conn *oc, int state, int status);

static void wait_add(struct ss_obj_worker *ow, struct obj_conn *oc)
{
    oc->wprev = NULL;
    oc->wnext = ow->waiting;
    if (ow->waiting)
        ow->waiting->wprev = oc;
    ow->waiting = oc;
}

static void wait_remove(struct ss_obj_worker *ow, struct obj_conn *oc)
{
    if (oc->wprev)
        oc->wprev->wnext = oc->wnext;
    else if (ow->waiting == oc)
        ow->waiting = oc->wnext;
    if (oc->wnext)
        oc->wnext->wprev = oc->wprev;
    oc->wnext = oc->wprev = NULL;
}

/* The Cache-Control the origin sent with a stored copy (kept in its fields). */
static void stored_cache_control(const struct obj_meta *m, struct ss_http_cache_control *cc)
{
    ss_http_cache_control_init(cc);
    const char *p = m->fields, *end = m->fields + m->fields_len;
    while (p < end) {
        const char *eol = memchr(p, '\r', (size_t)(end - p));
        if (!eol)
            break;
        if (eol - p > 14 && strncasecmp(p, "cache-control:", 14) == 0)
            ss_http_cache_control_parse(p + 14, (size_t)(eol - p - 14), cc);
        p = eol + 2;
    }
}

/* The stale copy may be served when the origin fails. */
static int stale_if_error(const struct obj_meta *m, int64_t now)
{
    struct ss_http_cache_control cc;
    stored_cache_control(m, &cc);
    return cc.stale_if_error >= 0 && now - m->expires_at <= cc.stale_if_error;
}

/* The stale copy may be served while it is revalidated. */
static int stale_while_revalidate(const struct obj_meta *m, int64_t now)
{
    struct ss_http_cache_control cc;
    stored_cache_control(m, &cc);
    return cc.stale_while_revalidate >= 0 &&
           now - m->expires_at <= cc.stale_while_revalidate;
}

/*
 * A cached copy is whole only while every chunk is in the store. The log
 * evicts a copy's chunks in the order they were written, but the DRAM tier
 * may still hold any of them after the device lost it, so no one chunk
 * stands for the rest: each is looked up (index or DRAM, no value read: a
 * microsecond or so per MiB the body will send). A copy missing one is
 * forgotten, and the request is a miss (never a 200 with a short body).
 */
static int whole(struct obj_conn *oc, const struct obj_meta *m, int *in_dram_only)
{
    struct ss_store_thread *t = &oc->ow->st;
    uint32_t n = obj_nchunks(m->size, m->chunk_bytes);
    int rc = 0;
    for (uint32_t i = 0; i < n && rc == 0; i++) {
        unsigned char key[OBJ_CHUNK_KEY_LEN];
        obj_chunk_key(m->version, i, key);
        struct ss_item it;
        ss_store_lock(t, key, sizeof(key));
        rc = ss_store_find(t, key, sizeof(key), &it, SS_FIND_NO_BUMP);
        ss_store_unlock(t);
        if (rc == 0 && (it.bits & SS_ITEM_DRAM_ONLY) && in_dram_only)
            *in_dram_only = 1;
    }
    if (rc == 0)
        return 1;
    unsigned char mkey[OBJ_META_KEY_LEN];
    obj_meta_key(oc->name, oc->key_off - 1, oc->name + oc->key_off,
                 oc->name_len - oc->key_off, mkey);
    ss_store_lock(t, mkey, sizeof(mkey));
    ss_store_forget(t, mkey, sizeof(mkey));
    ss_store_unlock(t);
    atomic_fetch_sub_explicit(&oc->b->stats.objects, 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&oc->b->stats.object_bytes, m->size, memory_order_relaxed);
    return 0;
}

/*
 * A copy kept in DRAM only when it was fetched (flash_admission:
 * second_request), requested again: its chunks are written to flash now,
 * so it outlives DRAM's eviction and a restart. A chunk that cannot be
 * written stays as it was (the copy is then only a miss later, never wrong).
 */
static void admit_to_flash(struct obj_conn *oc, const struct obj_meta *m)
{
    struct ss_store_thread *t = &oc->ow->st;
    uint32_t n = obj_nchunks(m->size, m->chunk_bytes);
    for (uint32_t i = 0; i < n; i++) {
        unsigned char key[OBJ_CHUNK_KEY_LEN];
        obj_chunk_key(m->version, i, key);
        struct ss_item it;
        ss_store_lock(t, key, sizeof(key));
        if (ss_store_find(t, key, sizeof(key), &it, SS_FIND_VALUE | SS_FIND_NO_BUMP) == 0 &&
            (it.bits & SS_ITEM_DRAM_ONLY)) {
            /* The value is the DRAM item's; the write copies it before it
             * replaces that item. */
            struct iovec iov = {(void *)t->value, t->value_len};
            it.cas = 0;
            (void)ss_store_write(t, key, sizeof(key), &it, &iov, 1, SS_WRITE_KEEP_META);
        }
        ss_store_unlock(t);
    }
    atomic_fetch_add_explicit(&oc->b->stats.flash_admitted, 1, memory_order_relaxed);
}

/* The stored copy's metadata, when the copy is whole (held for obj_serve);
 * *in_dram_only, when given, says whether a chunk of it is in DRAM only. */
static int lookup(struct obj_conn *oc, struct obj_meta *m, int *in_dram_only)
{
    int rc = obj_lookup_held(oc, m); /* obj_serve releases it unless a body streams */
    if (rc == 0 && !whole(oc, m, in_dram_only)) {
        obj_release(oc);
        return -ENOENT;
    }
    return rc;
}

/* Join the fetch for this object, or start one. 0, -EAGAIN (a fetch ended
 * since *ended_seen: look at the store again) or -ENOMEM. */
static int join_fill(struct obj_conn *oc, const unsigned char *mkey, const struct obj_meta *stale,
                     const uint32_t *ended_seen)
{
    struct obj_fill *f;
    bool started;
    int rc = obj_fill_join(obj_of(oc), oc->b, mkey, ended_seen, &f, &started);
    if (rc)
        return rc;
    if (started)
        /* The fetch keeps its own reference; a failure to start shows in f. */
        obj_origin_fetch(oc->ow, f, oc->name + oc->key_off, oc->name_len - oc->key_off, stale);
    else
        atomic_fetch_add_explicit(&oc->b->stats.collapsed_fetches, 1, memory_order_relaxed);
    oc->fill = f;
    return 0;
}

/* Looks at the store before a miss joins a fetch: a fetch ending between
 * the look and the join sends the request back to look again, this many
 * times at most (each one means another fetch in the slot ended meanwhile).
 * The last look joins or starts a fetch whatever ended meanwhile: should a
 * fetch of this very object end just then, that makes a second fetch. */
#define OBJ_LOOKS_MAX 4

/* One look at the store, and the answer or the join that follows. -EAGAIN:
 * nothing done yet, look again. */
static int cached_get_once(struct ss_conn *c, struct obj_conn *oc, const struct ss_http_req *req,
                           const unsigned char *mkey, int last_look)
{
    uint32_t ended = obj_fill_ended(obj_of(oc), mkey);
    const uint32_t *ended_seen = last_look ? NULL : &ended;
    struct obj_meta m;
    int64_t now = ss_clock_unix_seconds();
    int in_dram_only = 0;
    int rc = lookup(oc, &m, &in_dram_only);
    struct obj_bucket_stats *bs = &oc->b->stats;
    if (rc == 0 && m.expires_at > now) {
        atomic_fetch_add_explicit(&bs->hits, 1, memory_order_relaxed);
        if (in_dram_only)
            admit_to_flash(oc, &m);
        return obj_serve(c, oc, req, &m);
    }
    if (rc && rc != -ENOENT) {
        obj_error(c, oc, 500, "InternalError", "the object's metadata could not be read", 1);
        return 0;
    }
    oc->have_stale = rc == 0;
    if (oc->have_stale && stale_while_revalidate(&m, now)) {
        /* Served stale now; the revalidation runs for the next request. */
        int joined = join_fill(oc, mkey, &m, ended_seen);
        if (joined == -EAGAIN)
            return -EAGAIN; /* the next look releases the copy held */
        if (joined == 0) {
            obj_fill_put(obj_of(oc), oc->fill);
            oc->fill = NULL;
        }
        atomic_fetch_add_explicit(&bs->hits, 1, memory_order_relaxed);
        return obj_serve(c, oc, req, &m);
    }
    if (oc->head_len > sizeof(oc->head)) {
        atomic_fetch_add_explicit(&bs->misses, 1, memory_order_relaxed);
        obj_error(c, oc, 431, "RequestHeaderSectionTooLarge", "the request head is too large "
                  "to wait for the origin with", 1);
        return 0;
    }
    int joined = join_fill(oc, mkey, oc->have_stale ? &m : NULL, ended_seen);
    if (joined == -EAGAIN)
        return -EAGAIN;
    atomic_fetch_add_explicit(&bs->misses, 1, memory_order_relaxed);
    if (joined) {
        obj_error(c, oc, 503, "SlowDown", "out of memory for the fetch; retry", 1);
        return 0;
    }
    /* The head is parsed again when the fetch moves on (req points into the
     * read buffer, which the server may reuse meanwhile). */
    memcpy(oc->head, c->rbuf + c->rpos, oc->head_len);
    /* A GET with no range and no preconditions streams from the fetch, its
     * length known or not; the others need the head's length and ETag
     * (answer_from_fill). */
    oc->plain_get = req->method == SS_HTTP_M_GET && !ss_http_header(req, "range") &&
                    !ss_http_header(req, "if-match") && !ss_http_header(req, "if-none-match") &&
                    !ss_http_header(req, "if-modified-since") &&
                    !ss_http_header(req, "if-unmodified-since");
    oc->phase = OBJ_WAIT_FILL;
    oc->fill_head_sent = 0;
    oc->c = c;
    wait_add(oc->ow, oc);
    return 0;
}

int obj_cached_get(struct ss_conn *c, struct obj_conn *oc, const struct ss_http_req *req)
{
    unsigned char mkey[OBJ_META_KEY_LEN];
    obj_meta_key(oc->name, oc->key_off - 1, oc->name + oc->key_off,
                 oc->name_len - oc->key_off, mkey);
    int rc = -EAGAIN;
    for (int looks = 1; rc == -EAGAIN; looks++)
        rc = cached_get_once(c, oc, req, mkey, looks == OBJ_LOOKS_MAX);
    return rc;
}

static void drop_fill(struct obj_conn *oc)
{
    if (oc->fill)
        obj_fill_put(obj_of(oc), oc->fill);
    oc->fill = NULL;
}

/* The waiting request's head again (req points into oc->head, the copy
 * taken when it began to wait: the read buffer may hold other bytes now). */
static void reparse(struct obj_conn *oc, struct ss_http_req *req)
{
    const struct ss_objects_settings *s = &obj_of(oc)->s;
    struct ss_http_limits lim = {s->max_head_bytes, s->max_fields, s->max_uri_bytes};
    if (ss_http_parse_head(oc->head, oc->head_len, &lim, req) <= 0)
        memset(req, 0, sizeof(*req)); /* parsed before: cannot happen */
}

/* The head of a body streamed from the fetch (its length known or not). */
static void stream_head(struct ss_conn *c, struct obj_conn *oc, int64_t size)
{
    struct obj_fill *f = oc->fill;
    obj_head_begin(c, oc, 200);
    if (f->etag[0])
        obj_field(c, "ETag", f->etag);
    obj_field_date(c, "Last-Modified", f->mtime);
    obj_field(c, "Age", "0");
    if (size >= 0) {
        obj_field_u64(c, "Content-Length", (uint64_t)size);
    } else {
        obj_field(c, "Transfer-Encoding", "chunked");
        oc->chunked_out = 1;
    }
    ss_buf_append(&c->out, f->fields, f->fields_len);
    ss_buf_append(&c->out, "\r\n", 2);
    oc->fill_head_sent = 1;
    obj_release(oc); /* a stale copy looked up before */
    obj_stream_hold(obj_of(oc), f->version);
    oc->holding = 1;
    oc->g_version = f->version;
    oc->g_chunk_bytes = f->chunk_data;
    oc->g_pos = 0;
    oc->g_end = 0;
    oc->g_stop = UINT64_MAX;
}

/* What the fetch streams up to now: what is stored, within the request's stop. */
static uint64_t stream_end(const struct obj_conn *oc, uint64_t committed)
{
    return committed < oc->g_stop ? committed : oc->g_stop;
}

/*
 * A HEAD, a ranged or conditional GET, answered from the fetch's head once
 * it is in: as the stored object will be (obj_serve), the body, if any,
 * streamed as it is stored. Needs the length (Content-Length, a range's
 * end) and the ETag the copy will keep (the preconditions, If-Range): an
 * origin that sent none has the body's MD5 for its ETag, known only at the
 * end. Returns 1 when answered or streaming, 0 to wait for the whole object.
 */
static int answer_from_fill(struct ss_conn *c, struct obj_conn *oc, int64_t size,
                            uint64_t committed)
{
    struct obj_fill *f = oc->fill;
    if (size < 0 || !f->etag[0])
        return 0;
    struct obj_meta m;
    obj_fill_meta(f, (uint64_t)size, &m);
    m.stored_at = ss_clock_unix_seconds();
    struct ss_http_req req;
    reparse(oc, &req);
    obj_release(oc); /* a stale copy looked up before */
    obj_stream_hold(obj_of(oc), f->version);
    oc->holding = 1;
    oc->g_version = f->version;
    oc->fill_head_sent = 1;
    obj_serve(c, oc, &req, &m); /* releases the hold unless a body streams */
    if (oc->phase != OBJ_GET_BODY) {
        drop_fill(oc); /* answered whole: a 304, 412 or 416, or a HEAD */
        oc->phase = OBJ_IDLE;
        return 1;
    }
    oc->g_end = stream_end(oc, committed);
    c->produce = 1;
    return 1;
}

/* The fetch failed: the stale copy when allowed, else the status it left. */
static int answer_failure(struct ss_conn *c, struct obj_conn *oc, int status,
                          const struct ss_http_req *req)
{
    struct obj_meta m;
    if (oc->have_stale && lookup(oc, &m, NULL) == 0 && stale_if_error(&m, ss_clock_unix_seconds()))
        return obj_serve(c, oc, req, &m);
    if (status == 404)
        obj_error(c, oc, 404, "NoSuchKey", "the origin has no such object", 1);
    else if (status == 504)
        obj_error(c, oc, 504, "GatewayTimeout", "the origin did not answer in time", 1);
    else if (status == 502)
        obj_error(c, oc, 502, "BadGateway", "the origin could not be reached or answered "
                  "badly", 1);
    else
        obj_error(c, oc, status, "OriginError", "the origin refused the request", 1);
    return 0;
}

/*
 * Move one waiting request on. Returns 1 when it is no longer waiting (its
 * answer, or the first of its body, is queued), 0 to keep waiting.
 */
static int advance(struct ss_conn *c, struct obj_conn *oc)
{
    struct ss_obj *o = obj_of(oc);
    struct obj_fill *f = oc->fill;
    pthread_mutex_lock(&o->fill_lock);
    int state = f->state, status = f->status;
    uint64_t committed = f->committed;
    int64_t size = f->size;
    pthread_mutex_unlock(&o->fill_lock);
    if (state == FILL_HEAD)
        return 0;
    if (oc->upload)
        return write_answered(c, oc, state, status);
    struct ss_http_req req;
    if (state == FILL_FAILED) {
        drop_fill(oc);
        oc->phase = OBJ_IDLE;
        reparse(oc, &req);
        answer_failure(c, oc, status, &req);
        return 1;
    }
    int plain = oc->plain_get;
    if (state == FILL_FRESH || (state == FILL_DONE && !plain && !oc->fill_head_sent)) {
        struct obj_meta m;
        drop_fill(oc);
        oc->phase = OBJ_IDLE;
        if (lookup(oc, &m, NULL) == 0)
            return reparse(oc, &req), obj_serve(c, oc, &req, &m), 1;
        /* Not stored (no-store, or private): what the origin sent, whole. */
        obj_error(c, oc, 502, "BadGateway", "the origin's answer may not be stored, and "
                  "this request needs a stored copy", 1);
        return 1;
    }
    if (!plain && !oc->fill_head_sent)
        return answer_from_fill(c, oc, size, committed); /* or wait for the whole */
    if (!oc->fill_head_sent)
        stream_head(c, oc, size); /* out now: the body follows as it is stored */
    else if (oc->g_pos >= stream_end(oc, committed) && state != FILL_DONE) {
        return 0;
    }
    oc->g_end = stream_end(oc, committed);
    oc->phase = OBJ_GET_BODY;
    c->produce = 1;
    return 1;
}

int obj_write_through(struct ss_conn *c, struct obj_conn *oc, int method)
{
    struct ss_obj *o = obj_of(oc);
    struct obj_put *p = &oc->put;
    unsigned char mkey[OBJ_META_KEY_LEN];
    obj_meta_key(oc->name, oc->key_off - 1, oc->name + oc->key_off,
                 oc->name_len - oc->key_off, mkey);
    uint64_t version = method == SS_HTTP_M_PUT ? p->version : ss_store_next_cas(o->store);
    struct obj_fill *f = obj_fill_private(o, oc->b, mkey, version);
    if (!f) {
        if (method == SS_HTTP_M_PUT)
            obj_put_abort(oc);
        obj_error(c, oc, 503, "SlowDown", "out of memory for the write; retry", 0);
        return 0;
    }
    if (method == SS_HTTP_M_PUT) {
        f->size = (int64_t)p->size;
        memcpy(f->fields, p->fields, p->fields_len);
        f->fields_len = p->fields_len;
        struct obj_meta m = {0};
        memcpy(m.md5, p->md5_final, 16);
        obj_meta_etag(&m, f->etag); /* unless the origin names its own */
    }
    oc->fill = f;
    oc->upload = method;
    obj_origin_write(oc->ow, f, oc->name + oc->key_off, oc->name_len - oc->key_off, method);
    oc->phase = OBJ_WAIT_FILL;
    oc->c = c;
    wait_add(oc->ow, oc);
    return 0;
}

/* A write through's answer reached its request. */
static int write_answered(struct ss_conn *c, struct obj_conn *oc, int state, int status)
{
    struct obj_fill *f = oc->fill;
    int method = oc->upload;
    oc->upload = 0;
    oc->phase = OBJ_IDLE;
    if (state == FILL_DONE && method == SS_HTTP_M_PUT) {
        atomic_fetch_add_explicit(&oc->b->stats.puts, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&oc->b->stats.bytes_in, oc->put.size, memory_order_relaxed);
        obj_head_begin(c, oc, 200);
        obj_field(c, "ETag", f->etag);
        obj_field_u64(c, "Content-Length", 0);
        ss_buf_append(&c->out, "\r\n", 2);
    } else if (state == FILL_DONE) {
        atomic_fetch_add_explicit(&oc->b->stats.deletes, 1, memory_order_relaxed);
        obj_head_begin(c, oc, 204);
        ss_buf_append(&c->out, "\r\n", 2);
    } else {
        if (method == SS_HTTP_M_PUT) /* the origin refused: our copy of the body goes */
            obj_delete_chunks(&oc->ow->st, f->version, 0,
                              obj_nchunks((uint64_t)f->size, f->chunk_data));
        if (status == 504)
            obj_error(c, oc, 504, "GatewayTimeout", "the origin did not answer the write in "
                      "time; nothing was changed here", 1);
        else if (status == 502)
            obj_error(c, oc, 502, "BadGateway", "the origin could not be reached or failed "
                      "the write; nothing was changed here", 1);
        else
            obj_error(c, oc, status, status == 403 ? "AccessDenied" : "OriginError",
                      "the origin refused the write; nothing was changed here", 1);
    }
    drop_fill(oc);
    return 1;
}

int obj_fill_caught_up(struct ss_conn *c, struct obj_conn *oc)
{
    struct ss_obj *o = obj_of(oc);
    struct obj_fill *f = oc->fill;
    pthread_mutex_lock(&o->fill_lock);
    int done = f->state == FILL_DONE, failed = f->state == FILL_FAILED;
    uint64_t committed = f->committed;
    pthread_mutex_unlock(&o->fill_lock);
    if (failed) {
        /* The head promised a body the origin did not finish. */
        obj_release(oc);
        drop_fill(oc);
        oc->keep_alive = 0;
        oc->phase = OBJ_IDLE;
        c->produce = 0;
        return SS_OBJ_CLOSE;
    }
    if (stream_end(oc, committed) > oc->g_pos) {
        oc->g_end = stream_end(oc, committed);
        return 0;
    }
    if (done || oc->g_pos >= oc->g_stop) { /* the whole body, or the range's end */
        if (oc->chunked_out)
            ss_buf_append(&c->out, "0\r\n\r\n", 5);
        obj_release(oc);
        drop_fill(oc);
        oc->chunked_out = 0;
        oc->phase = OBJ_IDLE;
        return 0;
    }
    oc->phase = OBJ_WAIT_FILL;
    c->produce = 0;
    wait_add(oc->ow, oc);
    return 0;
}

int ss_obj_worker_tick(struct ss_worker *w, uint64_t now_ms)
{
    struct ss_obj_worker *ow = w->obj;
    if (!ow)
        return -1;
    int next = obj_origin_tick(ow, now_ms);
    for (struct obj_conn *oc = ow->waiting, *nx; oc; oc = nx) {
        nx = oc->wnext;
        if (!advance(oc->c, oc))
            continue;
        wait_remove(ow, oc);
        if (oc->phase == OBJ_IDLE)
            oc->phase = OBJ_FINISHED; /* answered whole: the connection ends the request */
        oc->c->produce = 1;
        ss_conn_output_ready(oc->c); /* may close (and free) oc->c and oc */
    }
    if (ow->waiting && (next < 0 || next > 1))
        next = 1; /* the fetches these wait for are looked at every millisecond */
    return next;
}

void obj_cached_conn_closed(struct obj_conn *oc)
{
    if (oc->phase == OBJ_WAIT_FILL)
        wait_remove(oc->ow, oc);
    drop_fill(oc);
}
