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
#include "ss_obj_origin.h"

static void *tag_of(struct obj_origin *org)
{
    return (void *)((uintptr_t)org | 2u);
}

static int watch(struct ss_obj_worker *ow, struct obj_origin *org, uint32_t events, int op)
{
    struct epoll_event ev = {.events = events, .data.ptr = tag_of(org)};
    org->watching = events;
    return epoll_ctl(ow->w->epfd, op, org->fd, &ev) < 0 ? -errno : 0;
}

/* Wait for `want` (TLS may need the other direction than the exchange's). */
static void wait_for(struct ss_obj_worker *ow, struct obj_origin *org, uint32_t want)
{
    if (org->watching != want)
        watch(ow, org, want, EPOLL_CTL_MOD);
}

/* A fresh non-blocking connection to b's origin, connecting (TLS set up for
 * an https origin): 0, or -errno with nothing left open. */
static int open_socket(struct obj_origin *org)
{
    const struct obj_bucket *b = org->b;
    org->fd = socket(b->origin.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (org->fd < 0)
        return -errno;
    int one = 1;
    (void)setsockopt(org->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    int rc = connect(org->fd, (const struct sockaddr *)&b->origin, b->origin_len);
    if ((rc < 0 && errno != EINPROGRESS) || (b->tls && obj_tls_start(org) < 0)) {
        close(org->fd);
        org->fd = -1;
        return -ECONNREFUSED;
    }
    org->state = rc < 0 ? ORG_CONNECTING : b->tls ? ORG_TLS : ORG_SENDING;
    return 0;
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
    obj_tls_end(org);
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
    if (open_socket(org) < 0) {
        free(org);
        return NULL;
    }
    if (watch(ow, org, EPOLLOUT, EPOLL_CTL_ADD) < 0) {
        obj_tls_end(org);
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
    int n = snprintf(org->req, sizeof(org->req), "%s %s", ss_http_method_name(org->method),
                     b->origin_path);
    if (n < 0 || (size_t)n >= sizeof(org->req))
        return -ENAMETOOLONG;
    size_t len = (size_t)n, target = strlen(ss_http_method_name(org->method)) + 1;
    /* The key again percent-encoded where a request line needs it; for an S3
     * endpoint every byte but the unreserved ones and '/', as its signature
     * canonicalises the path (ss_obj_sigv4.c). */
    static const char hex[] = "0123456789ABCDEF";
    const char *keep = b->kind == SS_BUCKET_S3 ? "-._~/" : "-._~/!$&'()*+,;=:@";
    for (size_t i = 0; i < nkey; i++) {
        unsigned char ch = (unsigned char)key[i];
        int plain = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                    (ch >= '0' && ch <= '9') || (ch && strchr(keep, ch));
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
    size_t target_end = len;
    n = snprintf(org->req + len, sizeof(org->req) - len,
                 " HTTP/1.1\r\nHost: %s\r\nUser-Agent: SmartSwitch\r\nAccept-Encoding: identity\r\n",
                 b->origin_host);
    if (n < 0 || (size_t)n >= sizeof(org->req) - len)
        return -ENAMETOOLONG;
    len += (size_t)n;
    if (b->s3_key_id) {
        const struct obj_fill *f = org->f;
        int put = org->method == SS_HTTP_M_PUT;
        n = obj_sigv4_fields(b, ss_http_method_name(org->method), org->req + target,
                             target_end - target, put ? f->fields : "", put ? f->fields_len : 0,
                             ss_clock_unix_seconds(), org->req + len, sizeof(org->req) - len);
        if (n < 0)
            return n == -ENOMEM ? n : -ENAMETOOLONG;
        len += (size_t)n;
    }
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
    if (org->method == SS_HTTP_M_PUT) {
        /* The object's fields go with it (Content-Type, x-amz-meta-*, ...). */
        const struct obj_fill *f = org->f;
        n = snprintf(org->req + len, sizeof(org->req) - len, "Content-Length: %lld\r\n",
                     (long long)f->size);
        len += n > 0 ? (size_t)n : 0;
        if (len + f->fields_len + 2 >= sizeof(org->req))
            return -ENAMETOOLONG;
        memcpy(org->req + len, f->fields, f->fields_len);
        len += f->fields_len;
    }
    if (len + 2 >= sizeof(org->req))
        return -ENAMETOOLONG;
    memcpy(org->req + len, "\r\n", 2);
    org->req_len = len + 2;
    return 0;
}

static int origin_request(struct ss_obj_worker *ow, struct obj_fill *f, const char *key,
                          size_t nkey, const struct obj_meta *stale, int method);

int obj_origin_write(struct ss_obj_worker *ow, struct obj_fill *f, const char *key,
                     size_t nkey, int method)
{
    return origin_request(ow, f, key, nkey, NULL, method);
}

int obj_origin_fetch(struct ss_obj_worker *ow, struct obj_fill *f, const char *key,
                     size_t nkey, const struct obj_meta *stale)
{
    return origin_request(ow, f, key, nkey, stale, SS_HTTP_M_GET);
}

static int origin_request(struct ss_obj_worker *ow, struct obj_fill *f, const char *key,
                          size_t nkey, const struct obj_meta *stale, int method)
{
    struct obj_origin *org = get_conn(ow, f->b);
    if (!org) {
        obj_fill_set(ow->o, f, FILL_FAILED, 502);
        obj_fill_put(ow->o, f);
        return -ECONNREFUSED;
    }
    org->f = f;
    org->method = method;
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
    if (method == SS_HTTP_M_GET)
        atomic_fetch_add_explicit(&f->b->stats.origin_fetches, 1, memory_order_relaxed);
    if (stale)
        atomic_fetch_add_explicit(&f->b->stats.revalidations, 1, memory_order_relaxed);
    if (org->reused)
        watch(ow, org, EPOLLOUT, EPOLL_CTL_MOD);
    return 0;
}

/* The fetch ends; the connection is kept when the answer allows it. */
void org_finish(struct ss_obj_worker *ow, struct obj_origin *org, int keep)
{
    unlink_active(ow, org);
    if (org->f)
        obj_fill_put(ow->o, org->f);
    org->f = NULL;
    free(org->chunk);
    org->chunk = NULL;
    if (!keep || ow->nidle >= ORIGIN_IDLE_MAX || org->rlen || org_pending(org)) {
        close_conn(ow, org);
        return;
    }
    /* Idle: reset for the next fetch, watched for the origin's close. */
    struct obj_bucket *b = org->b;
    int fd = org->fd;
    struct ssl_st *ssl = org->ssl;
    memset(org, 0, sizeof(*org));
    org->fd = fd;
    org->ssl = ssl;
    org->b = b;
    watch(ow, org, EPOLLIN, EPOLL_CTL_MOD);
    org->next = ow->idle;
    ow->idle = org;
    ow->nidle++;
}

void org_fail(struct ss_obj_worker *ow, struct obj_origin *org, int status)
{
    struct obj_fill *f = org->f;
    obj_delete_chunks(&ow->st, f->version, 0, org->chunks);
    obj_fill_set(ow->o, f, FILL_FAILED, status);
    org_finish(ow, org, 0);
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
    obj_tls_end(org);
    close(org->fd);
    org->fd = -1;
    org->reused = 0;
    org->req_sent = 0;
    org->rlen = 0;
    if (open_socket(org) < 0)
        return 0;
    return watch(ow, org, EPOLLOUT, EPOLL_CTL_ADD) == 0;
}

/* After body bytes were taken (rc: 1 the body ended, 0 more, -errno): end
 * the fetch when it is over. 1 when it ended (org may be freed). */
static int body_ended(struct ss_obj_worker *ow, struct obj_origin *org, int rc)
{
    if (rc < 0)
        org_fail(ow, org, 502);
    else if (rc == 1)
        org_complete(ow, org);
    return rc != 0;
}

/* Read what the origin sent. Returns 1 when the fetch ended (org may be freed). */
static int on_readable(struct ss_obj_worker *ow, struct obj_origin *org)
{
    /* Bytes TLS already decrypted raise no event: they are taken before leaving. */
    for (int round = 0; round < 16 || org_pending(org); round++) {
        size_t room = 0;
        uint32_t want;
        char *direct = org_body_window(org, &room);
        ssize_t got = direct ? org_recv(org, direct, room, &want)
                             : org_recv(org, org->rbuf + org->rlen, sizeof(org->rbuf) - org->rlen,
                                        &want);
        if (got == -EINTR)
            continue;
        if (got == -EAGAIN || got == -EWOULDBLOCK) {
            wait_for(ow, org, want);
            return 0;
        }
        if (got <= 0) {
            if (org->state == ORG_BODY && org->resp.framing == SS_HTTP_BODY_UNTIL_CLOSE &&
                got == 0) {
                org_complete(ow, org);
                return 1;
            }
            if (retry_fresh(ow, org))
                return 0;
            org_fail(ow, org, 502);
            return 1;
        }
        org->got_bytes = 1;
        org->deadline_ms = ss_clock_mono_ms() + org->b->origin_timeout_ms;
        if (direct) {
            if (body_ended(ow, org, org_body_received(ow, org, (size_t)got)))
                return 1;
            continue;
        }
        org->rlen += (size_t)got;
        if (org->state == ORG_HEAD) {
            int n = ss_http_parse_response_head(org->rbuf, org->rlen, 0, NULL, &org->resp);
            if (n == 0 && org->rlen < sizeof(org->rbuf))
                continue;
            if (n <= 0) {
                org_fail(ow, org, 502);
                return 1;
            }
            if (org_on_head(ow, org, n))
                return 1;
        }
        if (org->state == ORG_BODY && body_ended(ow, org, org_body_bytes(ow, org)))
            return 1;
    }
    return 0;
}

/*
 * A write through's body, sent from the chunk items the PUT stored (one
 * chunk at a time through org->chunk), so an object of any size goes out in
 * bounded memory. Returns 1 when all is sent, 0 when the socket is full,
 * -errno.
 */
static int upload(struct ss_obj_worker *ow, struct obj_origin *org, uint32_t *want)
{
    struct obj_fill *f = org->f;
    uint32_t nchunks = obj_nchunks((uint64_t)f->size, f->chunk_data);
    if (!org->chunk && !(org->chunk = malloc(f->chunk_data)))
        return -ENOMEM;
    for (;;) {
        if (org->up_off == org->up_len) {
            if (org->up_next == nchunks)
                return 1;
            unsigned char key[OBJ_CHUNK_KEY_LEN];
            obj_chunk_key(f->version, org->up_next, key);
            struct ss_item it;
            struct ss_store_thread *t = &ow->st;
            ss_store_lock(t, key, sizeof(key));
            int rc = ss_store_find(t, key, sizeof(key), &it, SS_FIND_VALUE | SS_FIND_NO_BUMP);
            if (rc == 0 && t->value_len <= f->chunk_data)
                memcpy(org->chunk, t->value, t->value_len);
            uint32_t got = rc == 0 ? t->value_len : 0;
            ss_store_unlock(t);
            if (rc || got > f->chunk_data)
                return -EIO;
            org->up_len = got;
            org->up_off = 0;
            org->up_next++;
        }
        ssize_t n = org_send(org, org->chunk + org->up_off, org->up_len - org->up_off, want);
        if (n == -EINTR)
            continue;
        if (n == -EAGAIN || n == -EWOULDBLOCK)
            return 0;
        if (n <= 0)
            return -EPIPE;
        org->up_off += (uint32_t)n;
        org->deadline_ms = ss_clock_mono_ms() + org->b->origin_timeout_ms;
    }
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
            org_fail(ow, org, 502);
            return;
        }
        org->state = org->ssl ? ORG_TLS : ORG_SENDING;
    }
    uint32_t want = EPOLLOUT;
    if (org->state == ORG_TLS) {
        int rc = obj_tls_handshake(org, &want);
        if (rc == 0) {
            wait_for(ow, org, want);
            return;
        }
        if (rc < 0) {
            /* A refused certificate is the origin's fault, as a bad answer is. */
            org_fail(ow, org, 502);
            return;
        }
        org->state = ORG_SENDING;
    }
    if (org->state == ORG_SENDING) {
        while (org->req_sent < org->req_len) {
            ssize_t n = org_send(org, org->req + org->req_sent, org->req_len - org->req_sent,
                                 &want);
            if (n == -EINTR)
                continue;
            if (n == -EAGAIN || n == -EWOULDBLOCK) {
                wait_for(ow, org, want);
                return;
            }
            if (n <= 0) {
                if (!retry_fresh(ow, org))
                    org_fail(ow, org, 502);
                return;
            }
            org->req_sent += (size_t)n;
        }
        org->state = org->method == SS_HTTP_M_PUT && org->f->size > 0 ? ORG_UPLOAD : ORG_HEAD;
        if (org->state == ORG_HEAD) {
            watch(ow, org, EPOLLIN, EPOLL_CTL_MOD);
            return;
        }
    }
    if (org->state == ORG_UPLOAD) {
        int rc = upload(ow, org, &want);
        if (rc < 0) {
            org_fail(ow, org, 502);
        } else if (rc == 1) {
            org->state = ORG_HEAD;
            watch(ow, org, EPOLLIN, EPOLL_CTL_MOD);
        } else {
            wait_for(ow, org, want);
        }
        return;
    }
    /* Over TLS a read may have waited for writability. */
    if (org->ssl || (events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
        on_readable(ow, org);
}

int obj_origin_tick(struct ss_obj_worker *ow, uint64_t now_ms)
{
    int next = -1;
    for (struct obj_origin *org = ow->origins, *nx; org; org = nx) {
        nx = org->next;
        if (now_ms >= org->deadline_ms) {
            org_fail(ow, org, 504);
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
        org_fail(ow, ow->origins, 503);
    while (ow->idle) {
        struct obj_origin *org = ow->idle;
        ow->idle = org->next;
        close_conn(ow, org);
    }
    ow->nidle = 0;
}
