/*
 * ss_conn_out.c - a TCP connection's output queue: the bytes of c.out, with
 * outside buffers (refs) queued between them, sent by one sendmsg per round.
 *
 * A ref stands at an offset of c.out (the length `out` had when it was
 * queued); everything before that offset goes first. The queue is sent in
 * stream order: wpos runs through c.out up to the next ref's offset, then
 * ref_sent through that ref, which is given back (its release called) as
 * soon as its last byte is written. Large values thus go from their own
 * buffer to the socket with the kernel's one copy, not two.
 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "ss_server_internal.h"

int ss_conn_out_ref(struct ss_conn *c, const void *p, size_t n, ss_out_release_fn release,
                    void *arg)
{
    if (c->transport != SS_TRANSPORT_TCP || ss_reply_owed(c) || c->out_borrowed)
        return -ENOSPC; /* a datagram is framed from out; deferred replies swap out */
    struct ss_server_conn *sc = ss_server_conn_of(c);
    if (sc->nrefs == SS_CONN_OUT_REFS)
        return -ENOSPC;
    if (n == 0) {
        release(arg);
        return 0;
    }
    sc->refs[sc->nrefs++] = (struct ss_out_ref){c->out.len, p, n, release, arg};
    c->out_ref_bytes += n;
    return 0;
}

static void ref_pop(struct ss_server_conn *sc)
{
    struct ss_out_ref r = sc->refs[0];
    sc->nrefs--;
    memmove(&sc->refs[0], &sc->refs[1], sc->nrefs * sizeof(sc->refs[0]));
    sc->ref_sent = 0;
    r.release(r.arg);
}

/* Account k bytes written, in stream order. */
static void advance(struct ss_server_conn *sc, size_t k)
{
    struct ss_conn *c = &sc->c;
    while (k) {
        if (sc->nrefs && sc->wpos == sc->refs[0].at) {
            size_t take = sc->refs[0].n - sc->ref_sent;
            if (take > k)
                take = k;
            sc->ref_sent += take;
            c->out_ref_bytes -= take;
            c->w->ctr.bytes_written_by_ref += take;
            k -= take;
            if (sc->ref_sent == sc->refs[0].n)
                ref_pop(sc);
            continue;
        }
        size_t limit = sc->nrefs ? sc->refs[0].at : c->out.len;
        size_t take = limit - sc->wpos;
        if (take > k)
            take = k;
        sc->wpos += take;
        k -= take;
    }
}

/* Build the iovec for what is left, in stream order. Returns its length. */
static int gather(struct ss_server_conn *sc, struct iovec *iov)
{
    struct ss_conn *c = &sc->c;
    int n = 0;
    size_t pos = sc->wpos;
    for (unsigned i = 0; i < sc->nrefs; i++) {
        const struct ss_out_ref *r = &sc->refs[i];
        if (r->at > pos) {
            iov[n++] = (struct iovec){c->out.data + pos, r->at - pos};
            pos = r->at;
        }
        size_t skip = i == 0 ? sc->ref_sent : 0;
        iov[n++] = (struct iovec){(void *)(r->p + skip), r->n - skip};
    }
    if (c->out.len > pos)
        iov[n++] = (struct iovec){c->out.data + pos, c->out.len - pos};
    return n;
}

/*
 * Write queued output until done or the socket is full. Returns 0 (check
 * ss_conn_out_pending for what is left) or -errno (the connection is dead).
 */
int ss_conn_out_flush(struct ss_server_conn *sc)
{
    struct ss_conn *c = &sc->c;
    while (ss_conn_out_pending(sc)) {
        ssize_t n;
        if (!sc->nrefs) {
            n = send(c->fd, c->out.data + sc->wpos, c->out.len - sc->wpos,
                     MSG_DONTWAIT | MSG_NOSIGNAL);
        } else {
            struct iovec iov[2 * SS_CONN_OUT_REFS + 1];
            struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)gather(sc, iov)};
            n = sendmsg(c->fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
        }
        if (n > 0) {
            advance(sc, (size_t)n);
            c->w->ctr.bytes_written += (uint64_t)n;
            c->last_active_ms = c->w->now_ns / 1000000u;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        return n < 0 ? -errno : -EIO;
    }
    c->out.len = 0;
    sc->wpos = 0;
    return 0;
}

/*
 * Keep the unsent head of `out` from growing without bound while a client
 * reads slowly: drop the sent part when it dominates (refs move with it).
 */
void ss_conn_out_compact(struct ss_server_conn *sc)
{
    if (!sc->wpos || sc->wpos < sc->c.out.len / 2)
        return;
    ss_buf_consume(&sc->c.out, sc->wpos);
    for (unsigned i = 0; i < sc->nrefs; i++)
        sc->refs[i].at -= sc->wpos;
    sc->wpos = 0;
}

void ss_conn_out_truncate(struct ss_conn *c, size_t len)
{
    if (c->transport == SS_TRANSPORT_TCP && !c->out_borrowed) {
        struct ss_server_conn *sc = ss_server_conn_of(c);
        while (sc->nrefs && sc->refs[sc->nrefs - 1].at > len) {
            struct ss_out_ref *r = &sc->refs[--sc->nrefs];
            c->out_ref_bytes -= r->n;
            r->release(r->arg);
        }
    }
    c->out.len = len;
}

int ss_conn_out_move(struct ss_conn *c, size_t len, struct ss_buf *into)
{
    int rc = 0;
    size_t pos = len;
    if (c->transport == SS_TRANSPORT_TCP && !c->out_borrowed) {
        struct ss_server_conn *sc = ss_server_conn_of(c);
        for (unsigned i = 0; i < sc->nrefs && !rc; i++) {
            const struct ss_out_ref *r = &sc->refs[i];
            if (r->at <= len)
                continue;
            rc = ss_buf_append(into, c->out.data + pos, r->at - pos);
            if (!rc)
                rc = ss_buf_append(into, r->p, r->n);
            pos = r->at;
        }
    }
    if (!rc && c->out.len > pos)
        rc = ss_buf_append(into, c->out.data + pos, c->out.len - pos);
    ss_conn_out_truncate(c, len);
    return rc;
}

/* The connection closes: every ref still queued is given back unsent. */
void ss_conn_out_drop(struct ss_server_conn *sc)
{
    while (sc->nrefs)
        ref_pop(sc);
    sc->c.out_ref_bytes = 0;
}
