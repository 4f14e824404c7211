/*
 * ss_obj_origin.c - fetching an object from a cached bucket's origin on a
 * worker's event loop: a non-blocking HTTP/1.1 client that writes the body
 * into the fill's chunk items as it arrives, stores the metadata when the
 * answer may be stored, and keeps the connection for the next fetch.
 *
 * Its connections are in the worker's epoll set with bit 1 set in the event
 * tag (server/ss_worker.c dispatches on it). A fetch that gets no byte for
 * the bucket's origin_timeout fails with 504, an origin that answers badly
 * or not at all with 502. A kept-alive connection the origin closed in the
 * meantime is retried once on a fresh one.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/ss_clock.h"
#include "server/ss_worker.h"
#include "ss_obj_internal.h"

#define ORIGIN_IDLE_MAX 32u   /* kept-alive connections per worker */
#define ORIGIN_RBUF 65536u    /* read buffer; a head must fit in it */

enum { ORG_CONNECTING = 0, ORG_SENDING, ORG_HEAD, ORG_BODY };

struct obj_origin {
    struct obj_origin *next;
    int fd;
    int state;
    struct obj_bucket *b;
    struct obj_fill *f;            /* NULL while idle */
    int reused;                    /* a kept-alive connection: the origin may have closed it */
    int got_bytes;                 /* any byte of the answer arrived */
    int conditional;               /* validators were sent (a revalidation) */
    uint64_t deadline_ms;
    char req[4096];
    size_t req_len, req_sent;
    char rbuf[ORIGIN_RBUF];
    size_t rlen;
    struct ss_http_resp resp;
    uint64_t body_left;            /* SS_HTTP_BODY_LENGTH */
    struct ss_http_chunked te;
    char trailers[512];
    int cacheable;
    int64_t lifetime, age;
    char *chunk;
    uint32_t fill;
    uint32_t chunks;
    uint64_t total;
    char name[OBJ_NAME_MAX];       /* bucket '/' key */
    size_t name_len, key_off;
};

static void *tag_of(struct obj_origin *org)
{
    return (void *)((uintptr_t)org | 2u);
}

static int watch(struct ss_obj_worker *ow, struct obj_origin *org, uint32_t events, int op)
{
    struct epoll_event ev = {.events = events, .data.ptr = tag_of(org)};
    return epoll_ctl(ow->w->epfd, op, org->fd, &ev) < 0 ? -errno : 0;
}

static void unlink_active(struct ss_obj_worker *ow, struct obj_origin *org)
{
    struct obj_origin **l = &ow->origins;
    while (*l && *l != org)
        l = &(*l)->next;
    if (*l)
        *l = org->next;
    org->next = NULL;
}

static void close_conn(struct ss_obj_worker *ow, struct obj_origin *org)
{
    if (org->fd >= 0) {
        epoll_ctl(ow->w->epfd, EPOLL_CTL_DEL, org->fd, NULL);
        close(org->fd);
    }
    free(org->chunk);
    free(org);
}

/* A connection from the idle pool to b's origin, or a new one connecting. */
static struct obj_origin *get_conn(struct ss_obj_worker *ow, struct obj_bucket *b)
{
    for (struct obj_origin **l = &ow->idle; *l; l = &(*l)->next) {
        struct obj_origin *org = *l;
        if (org->b == b) {
            *l = org->next;
            ow->nidle--;
            org->next = NULL;
            org->reused = 1;
            org->state = ORG_SENDING;
            return org;
        }
    }
    struct obj_origin *org = calloc(1, sizeof(*org));
    if (!org)
        return NULL;
    org->b = b;
    org->fd = socket(b->origin.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (org->fd < 0) {
        free(org);
        return NULL;
    }
    int one = 1;
    (void)setsockopt(org->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    int rc = connect(org->fd, (struct sockaddr *)&b->origin, b->origin_len);
    org->state = rc == 0 ? ORG_SENDING : ORG_CONNECTING;
    if (rc < 0 && errno != EINPROGRESS) {
        close(org->fd);
        free(org);
        return NULL;
    }
    if (watch(ow, org, EPOLLOUT, EPOLL_CTL_ADD) < 0) {
        close(org->fd);
        free(org);
        return NULL;
    }
    return org;
}

static int build_request(struct obj_origin *org, const struct obj_meta *stale)
{
    const struct obj_bucket *b = org->b;
    const char *key = org->name + org->key_off;
    size_t nkey = org->name_len - org->key_off;
    int n = snprintf(org->req, sizeof(org->req), "GET %s", b->origin_path);
    if (n < 0 || (size_t)n >= sizeof(org->req))
        return -ENAMETOOLONG;
    size_t len = (size_t)n;
    /* The key again percent-encoded where a request line needs it. */
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < nkey; i++) {
        unsigned char ch = (unsigned char)key[i];
        int plain = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                    (ch >= '0' && ch <= '9') || strchr("-._~/!$&'()*+,;=:@", ch);
        if (len + 3 >= sizeof(org->req))
            return -ENAMETOOLONG;
        if (plain) {
            org->req[len++] = (char)ch;
        } else {
            org->req[len++] = '%';
            org->req[len++] = hex[ch >> 4];
            org->req[len++] = hex[ch & 15];
        }
    }
    n = snprintf(org->req + len, sizeof(org->req) - len,
                 " HTTP/1.1\r\nHost: %s\r\nUser-Agent: SmartSwitch\r\nAccept-Encoding: identity\r\n",
                 b->origin_host);
    if (n < 0 || (size_t)n >= sizeof(org->req) - len)
        return -ENAMETOOLONG;
    len += (size_t)n;
    if (stale) {
        char v[OBJ_ETAG_MAX + 1];
        if (stale->etag_len) {
            obj_meta_etag(stale, v);
            n = snprintf(org->req + len, sizeof(org->req) - len, "If-None-Match: %s\r\n", v);
            len += n > 0 ? (size_t)n : 0;
        }
        if (ss_http_date_format(stale->mtime, v, sizeof(v)) > 0) {
            n = snprintf(org->req + len, sizeof(org->req) - len, "If-Modified-Since: %s\r\n", v);
            len += n > 0 ? (size_t)n : 0;
        }
        org->conditional = 1;
    }
    if (len + 2 >= sizeof(org->req))
        return -ENAMETOOLONG;
    memcpy(org->req + len, "\r\n", 2);
    org->req_len = len + 2;
    return 0;
}

int obj_origin_fetch(struct ss_obj_worker *ow, struct obj_fill *f, const char *key,
                     size_t nkey, const struct obj_meta *stale)
{
    struct obj_origin *org = get_conn(ow, f->b);
    if (!org) {
        obj_fill_set(ow->o, f, FILL_FAILED, 502);
        obj_fill_put(ow->o, f);
        return -ECONNREFUSED;
    }
    org->f = f;
    org->name_len = snprintf(org->name, sizeof(org->name), "%s/", f->b->name);
    org->key_off = org->name_len;
    memcpy(org->name + org->name_len, key, nkey);
    org->name_len += nkey;
    int rc = build_request(org, stale);
    if (rc) {
        obj_fill_set(ow->o, f, FILL_FAILED, 414);
        obj_fill_put(ow->o, f);
        close_conn(ow, org);
        return rc;
    }
    org->deadline_ms = ss_clock_mono_ms() + f->b->origin_timeout_ms;
    org->next = ow->origins;
    ow->origins = org;
    atomic_fetch_add_explicit(&f->b->stats.origin_fetches, 1, memory_order_relaxed);
    if (stale)
        atomic_fetch_add_explicit(&f->b->stats.revalidations, 1, memory_order_relaxed);
    if (org->reused)
        watch(ow, org, EPOLLOUT, EPOLL_CTL_MOD);
    return 0;
}

/* The fetch ends; the connection is kept when the answer allows it. */
static void finish(struct ss_obj_worker *ow, struct obj_origin *org, int keep)
{
    unlink_active(ow, org);
    if (org->f)
        obj_fill_put(ow->o, org->f);
    org->f = NULL;
    free(org->chunk);
    org->chunk = NULL;
    if (!keep || ow->nidle >= ORIGIN_IDLE_MAX || org->rlen) {
        close_conn(ow, org);
        return;
    }
    /* Idle: reset for the next fetch, watched for the origin's close. */
    struct obj_bucket *b = org->b;
    int fd = org->fd;
    memset(org, 0, sizeof(*org));
    org->fd = fd;
    org->b = b;
    watch(ow, org, EPOLLIN, EPOLL_CTL_MOD);
    org->next = ow->idle;
    ow->idle = org;
    ow->nidle++;
}

static void fail(struct ss_obj_worker *ow, struct obj_origin *org, int status)
{
    struct obj_fill *f = org->f;
    obj_delete_chunks(&ow->st, f->version, 0, org->chunks);
    obj_fill_set(ow->o, f, FILL_FAILED, status);
    finish(ow, org, 0);
}

/* Write the filled chunk buffer. 0 or -errno. */
static int flush_chunk(struct ss_obj_worker *ow, struct obj_origin *org)
{
    unsigned char key[OBJ_CHUNK_KEY_LEN];
    obj_chunk_key(org->f->version, org->chunks, key);
    struct iovec iov = {org->chunk, org->fill};
    int rc = obj_put_item(&ow->st, key, sizeof(key), &iov, 1, 0);
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

/* The whole body is in: store it when it may be, and let the waiters finish. */
static void complete(struct ss_obj_worker *ow, struct obj_origin *org)
{
    struct obj_fill *f = org->f;
    if (org->fill && flush_chunk(ow, org)) {
        fail(ow, org, 502);
        return;
    }
    pthread_mutex_lock(&ow->o->fill_lock);
    f->size = (int64_t)org->total;
    f->committed = org->total;
    pthread_mutex_unlock(&ow->o->fill_lock);
    if (org->cacheable) {
        int64_t now = ss_clock_unix_seconds();
        struct obj_meta m = {.version = f->version, .size = org->total,
                             .chunk_bytes = f->chunk_data, .mtime = f->mtime,
                             .stored_at = now - org->age,
                             .expires_at = now - org->age + org->lifetime,
                             .name = org->name, .name_len = org->name_len,
                             .etag = f->etag, .etag_len = strlen(f->etag),
                             .fields = f->fields, .fields_len = f->fields_len};
        static _Thread_local char buf[OBJ_META_MAX];
        static _Thread_local char old_buf[OBJ_META_MAX];
        long len = obj_meta_encode(&m, buf, sizeof(buf));
        struct obj_meta old;
        struct ss_store_thread *t = &ow->st;
        size_t nb = org->key_off - 1;
        struct iovec iov = {buf, len > 0 ? (size_t)len : 0};
        int had = 0, rc = len > 0 ? -EAGAIN : -1;
        for (int i = 0; i < OBJ_WRITE_RETRIES && rc == -EAGAIN; i++) {
            struct ss_item it = {0};
            ss_store_lock(t, f->mkey, OBJ_META_KEY_LEN);
            had = obj_meta_find_locked(t, f->mkey, org->name, nb, org->name + org->key_off,
                                       org->name_len - org->key_off, &old, old_buf,
                                       sizeof(old_buf)) == 0;
            rc = ss_store_write(t, f->mkey, OBJ_META_KEY_LEN, &it, &iov, 1, 0);
            ss_store_unlock(t);
        }
        struct obj_bucket_stats *bs = &f->b->stats;
        if (rc == 0) {
            if (had) {
                obj_doom(ow->o, old.version, obj_nchunks(old.size, old.chunk_bytes));
                atomic_fetch_sub_explicit(&bs->objects, 1, memory_order_relaxed);
                atomic_fetch_sub_explicit(&bs->object_bytes, old.size, memory_order_relaxed);
            }
            atomic_fetch_add_explicit(&bs->objects, 1, memory_order_relaxed);
            atomic_fetch_add_explicit(&bs->object_bytes, org->total, memory_order_relaxed);
            atomic_fetch_add_explicit(&bs->bytes_in, org->total, memory_order_relaxed);
        } else {
            org->cacheable = 0;
        }
    }
    if (!org->cacheable) /* served to the waiters, then gone */
        obj_doom(ow->o, f->version, org->chunks);
    obj_fill_set(ow->o, f, FILL_DONE, 200);
    finish(ow, org, org->resp.keep_alive);
}

/* Body bytes in org->rbuf (after the head). 1 when the body ended, 0 for
 * more, -errno. */
static int body_bytes(struct ss_obj_worker *ow, struct obj_origin *org)
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
static int on_head(struct ss_obj_worker *ow, struct obj_origin *org, int n)
{
    struct obj_fill *f = org->f;
    struct ss_http_resp *r = &org->resp;
    int64_t now = ss_clock_unix_seconds();
    if (r->status == 304 && org->conditional) {
        refresh(ow, org);
        obj_fill_set(ow->o, f, FILL_FRESH, 304);
        org->rlen -= (size_t)n;
        finish(ow, org, r->keep_alive);
        return 1;
    }
    if (r->status != 200) {
        /* Relayed, not stored: 404 stays 404, an origin error is a 502. */
        fail(ow, org, r->status >= 500 ? 502 : r->status);
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
        fail(ow, org, 503);
        return 1;
    }
    if (r->framing == SS_HTTP_BODY_CHUNKED)
        ss_http_chunked_init(&org->te, ow->o->s.max_object_bytes, 0, org->trailers,
                             sizeof(org->trailers));
    org->body_left = r->framing == SS_HTTP_BODY_LENGTH ? (uint64_t)r->content_length : 0;
    if (r->framing == SS_HTTP_BODY_LENGTH && org->body_left > ow->o->s.max_object_bytes) {
        fail(ow, org, 502);
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
        complete(ow, org);
        return 1;
    }
    return 0;
}

/*
 * A kept-alive connection died before any byte of the answer: the origin
 * closed it while idle (its keep-alive timeout), which says nothing about
 * the request. Send it again once on a fresh connection. 1 when retried.
 */
static int retry_fresh(struct ss_obj_worker *ow, struct obj_origin *org)
{
    if (!org->reused || org->got_bytes)
        return 0;
    epoll_ctl(ow->w->epfd, EPOLL_CTL_DEL, org->fd, NULL);
    close(org->fd);
    org->reused = 0;
    org->req_sent = 0;
    org->rlen = 0;
    const struct obj_bucket *b = org->b;
    org->fd = socket(b->origin.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (org->fd < 0)
        return 0;
    int one = 1;
    (void)setsockopt(org->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    int rc = connect(org->fd, (const struct sockaddr *)&b->origin, b->origin_len);
    if (rc < 0 && errno != EINPROGRESS)
        return 0;
    org->state = rc == 0 ? ORG_SENDING : ORG_CONNECTING;
    return watch(ow, org, EPOLLOUT, EPOLL_CTL_ADD) == 0;
}

/* Read what the origin sent. Returns 1 when the fetch ended (org may be freed). */
static int on_readable(struct ss_obj_worker *ow, struct obj_origin *org)
{
    for (int round = 0; round < 16; round++) {
        ssize_t got = recv(org->fd, org->rbuf + org->rlen, sizeof(org->rbuf) - org->rlen,
                           MSG_DONTWAIT);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        if (got <= 0) {
            if (org->state == ORG_BODY && org->resp.framing == SS_HTTP_BODY_UNTIL_CLOSE &&
                got == 0) {
                complete(ow, org);
                return 1;
            }
            if (retry_fresh(ow, org))
                return 0;
            fail(ow, org, 502);
            return 1;
        }
        org->got_bytes = 1;
        org->rlen += (size_t)got;
        org->deadline_ms = ss_clock_mono_ms() + org->b->origin_timeout_ms;
        if (org->state == ORG_HEAD) {
            int n = ss_http_parse_response_head(org->rbuf, org->rlen, 0, NULL, &org->resp);
            if (n == 0 && org->rlen < sizeof(org->rbuf))
                continue;
            if (n <= 0) {
                fail(ow, org, 502);
                return 1;
            }
            if (on_head(ow, org, n))
                return 1;
        }
        if (org->state == ORG_BODY) {
            int rc = body_bytes(ow, org);
            if (rc < 0) {
                fail(ow, org, 502);
                return 1;
            }
            if (rc == 1) {
                complete(ow, org);
                return 1;
            }
        }
    }
    return 0;
}

void obj_origin_on_event(struct ss_obj_worker *ow, struct obj_origin *org, uint32_t events)
{
    if (!org->f) {
        /* Idle: the origin closed it (or sent something unasked): drop it. */
        for (struct obj_origin **l = &ow->idle; *l; l = &(*l)->next)
            if (*l == org) {
                *l = org->next;
                ow->nidle--;
                break;
            }
        close_conn(ow, org);
        return;
    }
    if (org->state == ORG_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(org->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err) {
            fail(ow, org, 502);
            return;
        }
        org->state = ORG_SENDING;
    }
    if (org->state == ORG_SENDING) {
        while (org->req_sent < org->req_len) {
            ssize_t n = send(org->fd, org->req + org->req_sent, org->req_len - org->req_sent,
                             MSG_DONTWAIT | MSG_NOSIGNAL);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                return;
            if (n <= 0) {
                if (!retry_fresh(ow, org))
                    fail(ow, org, 502);
                return;
            }
            org->req_sent += (size_t)n;
        }
        org->state = ORG_HEAD;
        watch(ow, org, EPOLLIN, EPOLL_CTL_MOD);
        return;
    }
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
        on_readable(ow, org);
}

int obj_origin_tick(struct ss_obj_worker *ow, uint64_t now_ms)
{
    int next = -1;
    for (struct obj_origin *org = ow->origins, *nx; org; org = nx) {
        nx = org->next;
        if (now_ms >= org->deadline_ms) {
            fail(ow, org, 504);
            continue;
        }
        int left = (int)(org->deadline_ms - now_ms);
        if (next < 0 || left < next)
            next = left;
    }
    return next;
}

void obj_origin_worker_fini(struct ss_obj_worker *ow)
{
    while (ow->origins)
        fail(ow, ow->origins, 503);
    while (ow->idle) {
        struct obj_origin *org = ow->idle;
        ow->idle = org->next;
        close_conn(ow, org);
    }
    ow->nidle = 0;
}
