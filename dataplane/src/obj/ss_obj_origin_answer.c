/*
 * ss_obj_origin_answer.c - what a fetch does with the origin's answer: the
 * head decides (a 304 refreshes the stale copy, a 200 is stored when its
 * Cache-Control allows, anything else is relayed), the body goes into the
 * fill's chunk items as it arrives, and the metadata item is written when
 * the body is whole.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/ss_clock.h"
#include "ss_obj_origin.h"

/* Response fields a cached copy sends on (the ones an S3 or Varnish copy keeps). */
static void keep_fields(struct obj_fill *f, const struct ss_http_resp *r)
{
    static const char *const names[] = {"content-type", "cache-control", "content-encoding",
                                        "content-disposition", "content-language", "expires",
                                        "vary"};
    f->fields_len = 0;
    for (int i = 0; i < r->nfields; i++) {
        const struct ss_http_field *fl = &r->fields[i];
        int keep = fl->name_len > 11 && strncasecmp(fl->name, "x-amz-meta-", 11) == 0;
        for (size_t k = 0; k < sizeof(names) / sizeof(names[0]) && !keep; k++)
            keep = fl->name_len == strlen(names[k]) &&
                   strncasecmp(fl->name, names[k], fl->name_len) == 0;
        size_t need = fl->name_len + fl->value_len + 4;
        if (!keep || f->fields_len + need > sizeof(f->fields))
            continue;
        char *d = f->fields + f->fields_len;
        memcpy(d, fl->name, fl->name_len);
        memcpy(d + fl->name_len, ": ", 2);
        memcpy(d + fl->name_len + 2, fl->value, fl->value_len);
        memcpy(d + fl->name_len + 2 + fl->value_len, "\r\n", 2);
        f->fields_len += need;
    }
}

/* A stale copy the origin says is still good: fresh again from now. */
static void refresh(struct ss_obj_worker *ow, struct obj_origin *org)
{
    struct ss_store_thread *t = &ow->st;
    struct obj_meta m;
    static _Thread_local char buf[OBJ_META_MAX];
    static _Thread_local char out[OBJ_META_MAX];
    int64_t now = ss_clock_unix_seconds(), age;
    int64_t life = obj_freshness(org->b, &org->resp, now, &age);
    size_t nb = org->key_off - 1;
    int rc = -EAGAIN;
    for (int i = 0; i < OBJ_WRITE_RETRIES && rc == -EAGAIN; i++) {
        rc = 0;
        ss_store_lock(t, org->f->mkey, OBJ_META_KEY_LEN);
        if (life >= 0 && obj_meta_find_locked(t, org->f->mkey, org->name, nb,
                                              org->name + org->key_off,
                                              org->name_len - org->key_off, &m, buf,
                                              sizeof(buf)) == 0) {
            m.stored_at = now - age;
            m.expires_at = now - age + life;
            long len = obj_meta_encode(&m, out, sizeof(out));
            struct ss_item it = {0};
            struct iovec iov = {out, len > 0 ? (size_t)len : 0};
            if (len > 0)
                rc = ss_store_write(t, org->f->mkey, OBJ_META_KEY_LEN, &it, &iov, 1, 0);
        }
        ss_store_unlock(t);
    }
}

/*
 * Whether this fetch's chunks are kept in DRAM only (SS_WRITE_DRAM_ONLY):
 * a small object of a bucket that writes to flash on the second request
 * (ss_obj_cached.c promotes it then), or one that is not kept at all. Its
 * metadata item still goes to flash, so after an eviction or a restart the
 * copy is missing a chunk and the next request is a miss.
 */
static int dram_first(const struct ss_obj *o, const struct obj_bucket *b,
                      const struct obj_origin *org, const struct ss_http_resp *r)
{
    if (r->framing != SS_HTTP_BODY_LENGTH)
        return 0; /* of unknown size: it may be large */
    uint64_t limit = o->s.store.hot_bytes / OBJ_DRAM_FIRST_SHARE;
    if (limit > OBJ_DRAM_FIRST_MAX)
        limit = OBJ_DRAM_FIRST_MAX;
    return (b->flash_admission == SS_FLASH_ON_SECOND_REQUEST || !org->cacheable) &&
           (uint64_t)r->content_length <= limit;
}

/* Write the filled chunk buffer. 0 or -errno. */
static int flush_chunk(struct ss_obj_worker *ow, struct obj_origin *org)
{
    unsigned char key[OBJ_CHUNK_KEY_LEN];
    obj_chunk_key(org->f->version, org->chunks, key);
    struct iovec iov = {org->chunk, org->fill};
    int rc = org->dram_first ? obj_put_item(&ow->st, key, sizeof(key), &iov, 1,
                                            SS_WRITE_DRAM_ONLY) : -ENOBUFS;
    if (rc == 0) {
        /* Its only copy: the fill holds it for its waiters (see obj_fill). */
        struct ss_store_thread *t = &ow->st;
        struct ss_item it;
        ss_store_lock(t, key, sizeof(key));
        struct ss_value_hold *h =
            ss_store_find(t, key, sizeof(key), &it, SS_FIND_VALUE | SS_FIND_NO_BUMP) == 0
                ? ss_store_value_hold(t) : NULL;
        ss_store_unlock(t);
        if (h)
            obj_fill_hold(ow->o, org->f, org->chunks, h);
    }
    if (rc == -ENOBUFS) /* not DRAM-first, or DRAM would not take it: to flash */
        rc = obj_put_item(&ow->st, key, sizeof(key), &iov, 1, 0);
    if (rc)
        return rc;
    org->chunks++;
    org->fill = 0;
    obj_fill_commit(ow->o, org->f, org->total);
    return 0;
}

static int body_data(struct ss_obj_worker *ow, struct obj_origin *org, const char *d, size_t n)
{
    uint32_t cb = org->f->chunk_data;
    if (org->total + n > ow->o->s.max_object_bytes)
        return -EFBIG;
    org->deadline_ms = ss_clock_mono_ms() + org->b->origin_timeout_ms;
    while (n) {
        size_t take = cb - org->fill < n ? cb - org->fill : n;
        memcpy(org->chunk + org->fill, d, take);
        org->fill += (uint32_t)take;
        org->total += take;
        d += take;
        n -= take;
        if (org->fill == cb) {
            int rc = flush_chunk(ow, org);
            if (rc)
                return rc;
        }
    }
    return 0;
}

/* The whole body is in: store it when it may be, and let the waiters finish. */
void org_complete(struct ss_obj_worker *ow, struct obj_origin *org)
{
    struct obj_fill *f = org->f;
    if (org->fill && flush_chunk(ow, org)) {
        org_fail(ow, org, 502);
        return;
    }
    pthread_mutex_lock(&ow->o->fill_lock);
    f->size = (int64_t)org->total;
    f->committed = org->total;
    pthread_mutex_unlock(&ow->o->fill_lock);
    if (org->cacheable) {
        int64_t now = ss_clock_unix_seconds();
        struct obj_meta m;
        obj_fill_meta(f, org->total, &m);
        m.stored_at = now - org->age;
        m.expires_at = now - org->age + org->lifetime;
        m.name = org->name;
        m.name_len = org->name_len;
        if (obj_meta_replace(&ow->st, ow->o, f->b, &m, 0) == 0)
            atomic_fetch_add_explicit(&f->b->stats.bytes_in, org->total, memory_order_relaxed);
        else
            org->cacheable = 0;
    }
    if (!org->cacheable) /* served to the waiters, then gone */
        obj_doom(ow->o, f->version, org->chunks);
    obj_fill_set(ow->o, f, FILL_DONE, 200);
    org_finish(ow, org, org->resp.keep_alive);
}

char *org_body_window(struct obj_origin *org, size_t *room)
{
    if (org->state != ORG_BODY || org->resp.framing != SS_HTTP_BODY_LENGTH || org->rlen ||
        !org->chunk || !org->body_left)
        return NULL;
    size_t r = org->f->chunk_data - org->fill;
    *room = r < org->body_left ? r : (size_t)org->body_left;
    return org->chunk + org->fill;
}

int org_body_received(struct ss_obj_worker *ow, struct obj_origin *org, size_t got)
{
    org->fill += (uint32_t)got;
    org->total += got;
    org->body_left -= got;
    if (org->fill == org->f->chunk_data) {
        int rc = flush_chunk(ow, org);
        if (rc)
            return rc;
    }
    return org->body_left == 0;
}

/* Body bytes in org->rbuf (after the head). 1 when the body ended, 0 for
 * more, -errno. */
int org_body_bytes(struct ss_obj_worker *ow, struct obj_origin *org)
{
    const char *in = org->rbuf;
    size_t avail = org->rlen;
    int rc = 0, ended = 0;
    while (avail && !ended) {
        if (org->resp.framing == SS_HTTP_BODY_CHUNKED) {
            struct ss_http_chunk_out out;
            int fr = ss_http_chunked_feed(&org->te, in, avail, &out);
            if (fr < 0)
                return -EPROTO;
            if (out.data_len && (rc = body_data(ow, org, out.data, out.data_len)) < 0)
                return rc;
            in += out.consumed;
            avail -= out.consumed;
            ended = fr == SS_HTTP_CHUNKED_DONE;
            if (!out.consumed && !ended)
                break;
        } else {
            size_t n = avail;
            if (org->resp.framing == SS_HTTP_BODY_LENGTH && n > org->body_left)
                n = (size_t)org->body_left;
            if ((rc = body_data(ow, org, in, n)) < 0)
                return rc;
            in += n;
            avail -= n;
            if (org->resp.framing == SS_HTTP_BODY_LENGTH) {
                org->body_left -= n;
                ended = org->body_left == 0;
            }
        }
    }
    /* Bytes past the body would be a second response nobody asked for. */
    if (ended && avail)
        org->resp.keep_alive = 0;
    org->rlen = 0;
    return ended;
}

/* The head is in org->rbuf[0, n). Returns 1 when the fetch ended, else 0. */
int org_on_head(struct ss_obj_worker *ow, struct obj_origin *org, int n)
{
    struct obj_fill *f = org->f;
    struct ss_http_resp *r = &org->resp;
    int64_t now = ss_clock_unix_seconds();
    if (org->method != SS_HTTP_M_GET) {
        org->rlen -= (size_t)n;
        org_write_answer(ow, org);
        return 1;
    }
    if (r->status == 304 && org->conditional) {
        refresh(ow, org);
        obj_fill_set(ow->o, f, FILL_FRESH, 304);
        org->rlen -= (size_t)n;
        org_finish(ow, org, r->keep_alive);
        return 1;
    }
    if (r->status != 200) {
        /* Relayed, not stored: 404 stays 404, an origin error is a 502. */
        org_fail(ow, org, r->status >= 500 ? 502 : r->status);
        return 1;
    }
    org->lifetime = obj_freshness(f->b, r, now, &org->age);
    org->cacheable = org->lifetime >= 0;
    const struct ss_http_field *e = ss_http_resp_header(r, "etag");
    if (e && e->value_len <= OBJ_ETAG_MAX) {
        memcpy(f->etag, e->value, e->value_len);
        f->etag[e->value_len] = '\0';
    }
    const struct ss_http_field *lm = ss_http_resp_header(r, "last-modified");
    if (!lm || ss_http_date_parse(lm->value, lm->value_len, now, &f->mtime) != 0)
        f->mtime = now;
    keep_fields(f, r);
    if (!(org->chunk = malloc(f->chunk_data))) {
        org_fail(ow, org, 503);
        return 1;
    }
    if (r->framing == SS_HTTP_BODY_CHUNKED)
        ss_http_chunked_init(&org->te, ow->o->s.max_object_bytes, 0, org->trailers,
                             sizeof(org->trailers));
    org->body_left = r->framing == SS_HTTP_BODY_LENGTH ? (uint64_t)r->content_length : 0;
    org->dram_first = dram_first(ow->o, f->b, org, r);
    if (r->framing == SS_HTTP_BODY_LENGTH && org->body_left > ow->o->s.max_object_bytes) {
        org_fail(ow, org, 502);
        return 1;
    }
    pthread_mutex_lock(&ow->o->fill_lock);
    if (r->framing == SS_HTTP_BODY_LENGTH)
        f->size = r->content_length;
    pthread_mutex_unlock(&ow->o->fill_lock);
    obj_fill_set(ow->o, f, FILL_BODY, 200);
    org->state = ORG_BODY;
    memmove(org->rbuf, org->rbuf + n, org->rlen - (size_t)n);
    org->rlen -= (size_t)n;
    if (r->framing == SS_HTTP_BODY_NONE || (r->framing == SS_HTTP_BODY_LENGTH && !org->body_left)) {
        org_complete(ow, org);
        return 1;
    }
    return 0;
}

/* The local copy of a written-through object: what the origin accepted,
 * fresh for the bucket's default_ttl (a PUT's answer rarely says more). */
static int commit_written(struct ss_obj_worker *ow, struct obj_origin *org)
{
    struct obj_fill *f = org->f;
    struct ss_store_thread *t = &ow->st;
    const struct ss_http_field *e = ss_http_resp_header(&org->resp, "etag");
    if (e && e->value_len <= OBJ_ETAG_MAX) { /* the origin's own ETag, as a GET will see */
        memcpy(f->etag, e->value, e->value_len);
        f->etag[e->value_len] = '\0';
    }
    int64_t now = ss_clock_unix_seconds();
    struct obj_meta m = {.version = f->version, .size = (uint64_t)f->size,
                         .chunk_bytes = f->chunk_data, .mtime = now, .stored_at = now,
                         .expires_at = now + org->b->default_ttl_s, .name = org->name,
                         .name_len = org->name_len, .etag = f->etag,
                         .etag_len = strlen(f->etag), .fields = f->fields,
                         .fields_len = f->fields_len};
    return obj_meta_replace(t, ow->o, org->b, &m, 0);
}

/* The local copy goes: the origin no longer has the object. */
static void drop_local(struct ss_obj_worker *ow, struct obj_origin *org)
{
    struct obj_fill *f = org->f;
    struct ss_store_thread *t = &ow->st;
    static _Thread_local char buf[OBJ_META_MAX];
    struct obj_meta m;
    size_t nb = org->key_off - 1;
    ss_store_lock(t, f->mkey, OBJ_META_KEY_LEN);
    int had = obj_meta_find_locked(t, f->mkey, org->name, nb, org->name + org->key_off,
                                   org->name_len - org->key_off, &m, buf, sizeof(buf)) == 0;
    if (had)
        ss_store_forget(t, f->mkey, OBJ_META_KEY_LEN);
    ss_store_unlock(t);
    if (had) {
        obj_doom(ow->o, m.version, obj_nchunks(m.size, m.chunk_bytes));
        atomic_fetch_sub_explicit(&org->b->stats.objects, 1, memory_order_relaxed);
        atomic_fetch_sub_explicit(&org->b->stats.object_bytes, m.size, memory_order_relaxed);
    }
}

void org_write_answer(struct ss_obj_worker *ow, struct obj_origin *org)
{
    struct ss_http_resp *r = &org->resp;
    int ok = r->status >= 200 && r->status < 300;
    /* An answer with a body is not read: the connection ends with it. */
    int keep = r->keep_alive && (r->framing == SS_HTTP_BODY_NONE ||
                                 (r->framing == SS_HTTP_BODY_LENGTH && r->content_length == 0));
    if (org->method == SS_HTTP_M_DELETE && (ok || r->status == 404)) {
        drop_local(ow, org);
        obj_fill_set(ow->o, org->f, FILL_DONE, 204);
    } else if (org->method == SS_HTTP_M_PUT && ok && commit_written(ow, org) == 0) {
        obj_fill_set(ow->o, org->f, FILL_DONE, 200);
    } else {
        /* Refused (or not stored here): the local copy is left as it was. */
        obj_fill_set(ow->o, org->f, FILL_FAILED, ok ? 500 : r->status >= 500 ? 502 : r->status);
    }
    org_finish(ow, org, keep);
}
