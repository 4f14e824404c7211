/*
 * ss_obj_get.c - GET and HEAD of an object (conditional requests, single
 * ranges, the body streamed chunk by chunk), and DELETE / PURGE.
 *
 * Preconditions are evaluated in RFC 9110 section 13.2.2's order:
 * If-Match, else If-Unmodified-Since (412 when false); then If-None-Match,
 * else If-Modified-Since (304 for GET and HEAD); then Range, which If-Range
 * may turn off. A range reads only the chunks it covers.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/ss_clock.h"
#include "server/ss_server.h"
#include "server/ss_worker.h"
#include "ss_obj_conn.h"

/* The fields a 200 and a 304 share (RFC 9110 section 15.4.5: a 304 repeats
 * the validators and caching fields of the 200 it stands for). */
static int validators(struct ss_conn *c, const struct obj_meta *m)
{
    char etag[OBJ_ETAG_MAX + 1];
    obj_meta_etag(m, etag);
    int rc = obj_field(c, "ETag", etag);
    rc |= obj_field_date(c, "Last-Modified", m->mtime);
    return rc;
}

/* A cached copy says how old it is (RFC 9111 section 5.1). */
static void age(struct ss_conn *c, const struct obj_conn *oc, const struct obj_meta *m)
{
    if (oc->b->kind == SS_BUCKET_LOCAL)
        return;
    int64_t a = ss_clock_unix_seconds() - m->stored_at;
    obj_field_u64(c, "Age", a > 0 ? (uint64_t)a : 0);
}

/* 412 or 304 when a precondition says so; 0 when the request goes on. */
static int preconditions(const struct ss_http_req *req, const struct obj_meta *m, int *status)
{
    char etag[OBJ_ETAG_MAX + 1];
    obj_meta_etag(m, etag);
    int64_t now = ss_clock_unix_seconds(), t;
    const struct ss_http_field *f;
    *status = 0;
    if ((f = ss_http_header(req, "if-match"))) {
        if (ss_http_if_match(f->value, f->value_len, etag, strlen(etag)) != 1)
            return *status = 412;
    } else if ((f = ss_http_header(req, "if-unmodified-since")) &&
               ss_http_date_parse(f->value, f->value_len, now, &t) == 0 && m->mtime > t) {
        return *status = 412;
    }
    if ((f = ss_http_header(req, "if-none-match"))) {
        if (ss_http_if_none_match(f->value, f->value_len, etag, strlen(etag)) == 1)
            return *status = 304;
    } else if ((f = ss_http_header(req, "if-modified-since")) &&
               ss_http_date_parse(f->value, f->value_len, now, &t) == 0 && m->mtime <= t &&
               t <= now) {
        return *status = 304; /* a date in the future is invalid: ignored */
    }
    return 0;
}

/* Does If-Range (absent: yes) let the Range field apply? */
static int if_range_holds(const struct ss_http_req *req, const struct obj_meta *m)
{
    const struct ss_http_field *f = ss_http_header(req, "if-range");
    if (!f)
        return 1;
    if (f->value_len && (f->value[0] == '"' || f->value[0] == 'W')) {
        char etag[OBJ_ETAG_MAX + 1];
        obj_meta_etag(m, etag);
        /* A strong comparison: a weak tag never matches here. */
        return f->value_len == strlen(etag) && memcmp(f->value, etag, f->value_len) == 0 &&
               etag[0] == '"';
    }
    int64_t t;
    return ss_http_date_parse(f->value, f->value_len, ss_clock_unix_seconds(), &t) == 0 &&
           t == m->mtime;
}

int obj_lookup_held(struct obj_conn *oc, struct obj_meta *m)
{
    struct ss_store_thread *t = &oc->ow->st;
    size_t nb = oc->key_off - 1;
    unsigned char mkey[OBJ_META_KEY_LEN];
    obj_meta_key(oc->name, nb, oc->name + oc->key_off, oc->name_len - oc->key_off, mkey);
    obj_release(oc);
    ss_store_lock(t, mkey, sizeof(mkey));
    int rc = obj_meta_find_locked(t, mkey, oc->name, nb, oc->name + oc->key_off,
                                  oc->name_len - oc->key_off, m, oc->meta_buf,
                                  sizeof(oc->meta_buf));
    if (rc == 0) {
        obj_stream_hold(obj_of(oc), m->version);
        oc->holding = 1;
        oc->g_version = m->version;
    }
    ss_store_unlock(t);
    return rc;
}

void obj_release(struct obj_conn *oc)
{
    if (oc->holding)
        obj_stream_release(obj_of(oc), oc->g_version);
    oc->holding = 0;
}

static int serve(struct ss_conn *c, struct obj_conn *oc, const struct ss_http_req *req,
                 const struct obj_meta *mp);

int obj_get(struct ss_conn *c, struct obj_conn *oc, const struct ss_http_req *req)
{
    if (oc->b->kind != SS_BUCKET_LOCAL)
        return obj_cached_get(c, oc, req);
    struct obj_meta m;
    int rc = obj_lookup_held(oc, &m);
    struct obj_bucket_stats *bs = &oc->b->stats;
    if (rc == -ENOENT) {
        atomic_fetch_add_explicit(&bs->misses, 1, memory_order_relaxed);
        obj_error(c, oc, 404, "NoSuchKey", "the object does not exist", 1);
        return 0;
    }
    if (rc) {
        obj_error(c, oc, 500, "InternalError", "the object's metadata could not be read from "
                  "the device", 1);
        return 0;
    }
    atomic_fetch_add_explicit(&bs->hits, 1, memory_order_relaxed);
    return obj_serve(c, oc, req, &m);
}

int obj_serve(struct ss_conn *c, struct obj_conn *oc, const struct ss_http_req *req,
              const struct obj_meta *mp)
{
    int rc = serve(c, oc, req, mp);
    if (oc->phase != OBJ_GET_BODY)
        obj_release(oc); /* no body streams from it */
    return rc;
}

static int serve(struct ss_conn *c, struct obj_conn *oc, const struct ss_http_req *req,
                 const struct obj_meta *mp)
{
    struct obj_meta m = *mp;
    struct obj_bucket_stats *bs = &oc->b->stats;
    int status;
    if (preconditions(req, &m, &status)) {
        if (status == 412) {
            atomic_fetch_add_explicit(&bs->precondition_failed, 1, memory_order_relaxed);
            obj_error(c, oc, 412, "PreconditionFailed", "a precondition given in the request "
                      "is false for the object", 1);
            return 0;
        }
        atomic_fetch_add_explicit(&bs->not_modified, 1, memory_order_relaxed);
        obj_head_begin(c, oc, 304);
        validators(c, &m);
        age(c, oc, &m);
        ss_buf_append(&c->out, m.fields, m.fields_len);
        ss_buf_append(&c->out, "\r\n", 2);
        return 0;
    }
    uint64_t first = 0, last = m.size ? m.size - 1 : 0;
    int ranged = 0;
    const struct ss_http_field *range = ss_http_header(req, "range");
    if (range && req->method == SS_HTTP_M_GET && if_range_holds(req, &m)) {
        int r = ss_http_range_parse(range->value, range->value_len, m.size, &first, &last);
        if (r == SS_HTTP_RANGE_UNSATISFIABLE) {
            char cr[64];
            ss_http_content_range_unsatisfied(cr, sizeof(cr), m.size);
            /* S3's InvalidRange body, with the Content-Range RFC 9110 asks for. */
            obj_error_field(c, oc, 416, "InvalidRange", "the requested range is not "
                            "satisfiable", 1, "Content-Range", cr);
            return 0;
        }
        ranged = r == SS_HTTP_RANGE_OK;
    }
    uint64_t length = m.size ? last - first + 1 : 0;
    obj_head_begin(c, oc, ranged ? 206 : 200);
    validators(c, &m);
    age(c, oc, &m);
    obj_field(c, "Accept-Ranges", "bytes");
    obj_field_u64(c, "Content-Length", length);
    if (ranged) {
        char cr[80];
        ss_http_content_range(cr, sizeof(cr), first, last, m.size);
        obj_field(c, "Content-Range", cr);
        atomic_fetch_add_explicit(&bs->ranges, 1, memory_order_relaxed);
    }
    ss_buf_append(&c->out, m.fields, m.fields_len);
    ss_buf_append(&c->out, "\r\n", 2);
    if (oc->head_only || length == 0)
        return 0;
    oc->g_version = m.version;
    oc->g_chunk_bytes = m.chunk_bytes;
    oc->g_pos = first;
    oc->g_end = oc->g_stop = first + length;
    oc->phase = OBJ_GET_BODY;
    return 0;
}

/*
 * Queue n bytes of a chunk's value (key's lock held): by reference when the
 * chunk sits in the DRAM tier and is large enough for that to pay (the
 * kernel's copy into the socket is then the only one), else copied.
 */
static int body_bytes(struct ss_conn *c, struct obj_conn *oc, struct ss_store_thread *t,
                      const char *p, size_t n)
{
    struct ss_value_hold *h = ss_store_value_hold(t);
    if (!h)
        return ss_buf_append(&c->out, p, n); /* read from the device */
    atomic_fetch_add_explicit(&oc->b->stats.bytes_out_dram, n, memory_order_relaxed);
    if (n >= OBJ_SEND_BY_REF_MIN && ss_conn_out_ref(c, p, n, ss_store_value_put, h) == 0)
        return 0;
    ss_store_value_put(h);
    return ss_buf_append(&c->out, p, n);
}

/* The same for bytes a fill holds (fh, taken for this send): by reference
 * when large enough, else copied. */
static int held_bytes(struct ss_conn *c, struct obj_conn *oc, struct ss_value_hold *fh,
                      const char *p, size_t n)
{
    atomic_fetch_add_explicit(&oc->b->stats.bytes_out_dram, n, memory_order_relaxed);
    if (n >= OBJ_SEND_BY_REF_MIN && ss_conn_out_ref(c, p, n, ss_store_value_put, fh) == 0)
        return 0;
    int rc = ss_buf_append(&c->out, p, n);
    ss_store_value_put(fh);
    return rc;
}

/* A chunk read finished (no lock held): the GET goes on from where it
 * waited, in the connection's own processing. */
static void chunk_read_done(void *arg, struct ss_read *rd)
{
    struct obj_read *r = arg;
    struct ss_conn *c = r->c;
    struct ss_store_thread *t = r->t;
    free(r);
    if (!c) {
        ss_store_read_release(t, rd); /* the connection is gone */
        return;
    }
    struct obj_conn *oc = c->pstate;
    oc->reading = NULL;
    oc->read_done = rd;
    c->produce = 1;
    ss_conn_output_ready(c); /* may close (and free) c */
}

int obj_get_body(struct ss_conn *c, struct obj_conn *oc)
{
    struct ss_store_thread *t = &oc->ow->st;
    if (oc->reading)
        return 0; /* its completion resumes us */
    while (oc->g_pos < oc->g_end && c->out.len + c->out_ref_bytes < OBJ_STREAM_HIGH_WATER) {
        uint32_t index = (uint32_t)(oc->g_pos / oc->g_chunk_bytes);
        uint64_t chunk_start = (uint64_t)index * oc->g_chunk_bytes;
        unsigned char key[OBJ_CHUNK_KEY_LEN];
        obj_chunk_key(oc->g_version, index, key);
        struct ss_item it;
        struct ss_read *done = oc->read_done;
        oc->read_done = NULL;
        /* Allocated first: a read once started must get its callback. Without
         * memory for it, this chunk is read synchronously. */
        struct obj_read *r = oc->ow->async && !done ? malloc(sizeof(*r)) : NULL;
        ss_store_lock(t, key, sizeof(key));
        if (done)
            ss_store_read_use(t, done);
        int rc = ss_store_find(t, key, sizeof(key), &it,
                               SS_FIND_VALUE | (r ? SS_FIND_ASYNC : 0));
        if (rc == -EINPROGRESS) {
            struct ss_read *rd = t->started;
            ss_store_unlock(t);
            *r = (struct obj_read){c, t};
            oc->reading = r;
            ss_store_read_on_done(rd, chunk_read_done, r);
            c->produce = 0; /* nothing to do until it completes */
            return 0;
        }
        free(r);
        uint64_t off = oc->g_pos - chunk_start;
        const char *val = t->value;
        size_t vlen = rc == 0 ? t->value_len : 0;
        /* A DRAM-only chunk of the fill we stream from, evicted from the
         * table already: the fill still holds its bytes. */
        struct ss_value_hold *fh =
            rc == -ENOENT && oc->fill ? obj_fill_held(oc->ow->o, oc->fill, index) : NULL;
        if (fh) {
            val = ss_store_value_bytes(fh, &vlen);
            rc = 0;
        }
        if (rc == 0 && off < vlen) {
            uint64_t n = vlen - off;
            if (n > oc->g_end - oc->g_pos)
                n = oc->g_end - oc->g_pos;
            if (oc->chunked_out) {
                char size_line[24];
                int len = snprintf(size_line, sizeof(size_line), "%llx\r\n",
                                   (unsigned long long)n);
                rc = ss_buf_append(&c->out, size_line, (size_t)len);
            }
            rc |= fh ? held_bytes(c, oc, fh, val + off, (size_t)n)
                     : body_bytes(c, oc, t, val + off, (size_t)n);
            fh = NULL;
            if (oc->chunked_out)
                rc |= ss_buf_append(&c->out, "\r\n", 2);
            if (rc == 0) {
                oc->g_pos += n;
                atomic_fetch_add_explicit(&oc->b->stats.bytes_out, n, memory_order_relaxed);
            }
        } else if (rc == 0) {
            rc = -EBADMSG; /* shorter than the metadata says */
        }
        if (fh)
            ss_store_value_put(fh);
        ss_store_unlock(t);
        if (done)
            ss_store_read_release(t, done);
        if (rc) {
            /* The head promised a length we can no longer send (the chunk
             * failed verification, or a replaced version's grace ran out):
             * closing is the only honest end (RFC 9112 section 6.3). */
            oc->keep_alive = 0;
            oc->phase = OBJ_IDLE;
            c->produce = 0;
            obj_release(oc);
            return SS_OBJ_CLOSE;
        }
    }
    if (oc->g_pos >= oc->g_end) {
        if (oc->fill)
            return obj_fill_caught_up(c, oc); /* more may be on its way */
        oc->phase = OBJ_IDLE;
        obj_release(oc);
    }
    return 0;
}

int obj_delete(struct ss_conn *c, struct obj_conn *oc, int purge)
{
    struct ss_store_thread *t = &oc->ow->st;
    unsigned char mkey[OBJ_META_KEY_LEN];
    size_t nbucket = oc->key_off - 1;
    const char *key = oc->name + oc->key_off;
    size_t nkey = oc->name_len - oc->key_off;
    struct obj_meta m;
    obj_meta_key(oc->name, nbucket, key, nkey, mkey);
    /* Read and removed under one lock, so the version doomed is the one removed. */
    ss_store_lock(t, mkey, sizeof(mkey));
    int found = obj_meta_find_locked(t, mkey, oc->name, nbucket, key, nkey, &m, oc->meta_buf,
                                     sizeof(oc->meta_buf)) == 0;
    if (found)
        ss_store_forget(t, mkey, sizeof(mkey));
    ss_store_unlock(t);
    if (found) {
        obj_doom(obj_of(oc), m.version, obj_nchunks(m.size, m.chunk_bytes));
        atomic_fetch_sub_explicit(&oc->b->stats.objects, 1, memory_order_relaxed);
        atomic_fetch_sub_explicit(&oc->b->stats.object_bytes, m.size, memory_order_relaxed);
        if (ss_store_sync(t)) {
            obj_error(c, oc, 500, "InternalError", "the delete could not be written to the "
                      "device", 1);
            return 0;
        }
    }
    atomic_fetch_add_explicit(purge ? &oc->b->stats.purges : &oc->b->stats.deletes, 1,
                              memory_order_relaxed);
    if (purge && !found) {
        obj_error(c, oc, 404, "NoSuchKey", "nothing to purge: the object is not stored", 1);
        return 0;
    }
    /* S3 answers 204 whether or not the key existed. */
    obj_head_begin(c, oc, purge ? 200 : 204);
    if (purge)
        obj_field_u64(c, "Content-Length", 0);
    ss_buf_append(&c->out, "\r\n", 2);
    return 0;
}
