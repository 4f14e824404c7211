/*
 * ss_conn.c - one TCP client connection: buffers, reads, writes, state.
 *
 * Level-triggered epoll drives a connection through three states:
 *   READING  EPOLLIN (plus EPOLLOUT while a little output is still queued):
 *            read, hand the bytes to ss_mc_process(), write what it answered.
 *   WRITING  more than SS_CONN_OUT_HIGH_WATER is queued: EPOLLOUT only, no
 *            reading, until the queue drains (backpressure on a client that
 *            pipelines faster than it reads).
 *   CLOSING  the protocol asked to close (quit, fatal error) or the client
 *            shut down its side and every whole command it sent has been
 *            answered: flush what is queued, then close.
 * ss_conn.h describes WRITING as "output pending"; here a little output may
 * stay queued in READING (EPOLLOUT armed beside EPOLLIN) so that pipelining
 * clients keep flowing; only a large queue stops the reading.
 * Nothing here allocates per request: rbuf and out keep their capacity and
 * only shrink in ss_conn_trim() once the connection has gone quiet.
 */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/ss_clock.h"
#include "mc/ss_mc.h"
#include "ss_server_internal.h"

/*
 * Move c to state s. The one place a state changes, so a debug build
 * (-DSS_DEBUG_CONN) can trace every transition.
 */
void ss_conn_set_state(struct ss_conn *c, enum ss_conn_state s)
{
    assert((unsigned)s < SS_CONN__STATE_MAX);
    if (c->state != s)
        SS_CONN_TRACE(c, "state %u -> %u", (unsigned)c->state, (unsigned)s);
    c->state = (uint8_t)s;
}

static inline size_t conn_pending(const struct ss_server_conn *sc)
{
    return ss_conn_out_pending(sc);
}

static inline int conn_flush(struct ss_server_conn *sc)
{
    return ss_conn_out_flush(sc);
}

/* Most unread input a connection may hold (see SS_CONN_RBUF_SLACK). */
static size_t conn_rbuf_limit(const struct ss_worker *w)
{
    uint32_t ism = w->dp->s.store.item_size_max;
    return (size_t)(ism ? ism : (1u << 20)) + SS_CONN_RBUF_SLACK;
}

/*
 * Register a freshly accepted, non-blocking socket with worker w. Returns 0,
 * or -errno with nothing registered (the caller closes fd).
 */
int ss_conn_open(struct ss_worker *w, int fd, const struct sockaddr_storage *peer,
                 socklen_t peer_len, int proto)
{
    struct ss_server_conn *sc = calloc(1, sizeof(*sc));
    if (!sc)
        return -ENOMEM;
    struct ss_conn *c = &sc->c;
    c->rbuf = malloc(SS_CONN_RBUF_INITIAL);
    if (!c->rbuf) {
        free(sc);
        return -ENOMEM;
    }
    c->rcap = SS_CONN_RBUF_INITIAL;
    c->fd = fd;
    c->transport = SS_TRANSPORT_TCP;
    c->proto = (uint8_t)proto;
    c->state = SS_CONN_READING;
    c->w = w;
    c->exec = w->exec_tcp;
    c->last_active_ms = ss_clock_mono_ms();
    if (peer && peer_len <= sizeof(c->peer)) {
        memcpy(&c->peer, peer, peer_len);
        c->peer_len = peer_len;
    }

    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = sc };
    if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        int rc = -errno;
        free(c->rbuf);
        free(sc);
        return rc;
    }
    sc->events = EPOLLIN;

    c->prev = NULL;
    c->next = w->conns;
    if (w->conns)
        w->conns->prev = c;
    w->conns = c;
    __atomic_add_fetch(&w->nconns, 1, __ATOMIC_RELAXED); /* read by ss_balance.c */
    w->ctr.curr_connections++;
    w->ctr.total_connections++;
    SS_CONN_TRACE(c, "open");
    return 0;
}

/* Close the socket and forget the connection. c is freed. */
void ss_conn_close(struct ss_conn *c)
{
    struct ss_worker *w = c->w;
    struct ss_server_conn *sc = ss_server_conn_of(c);

    SS_CONN_TRACE(c, "close");
    ss_reply_conn_closed(c);
    if (c->proto == SS_PROTO_HTTP)
        ss_obj_conn_closed(c);
    /*
     * Deregister first: close() alone leaves the socket in the epoll set when
     * another reference to it exists, as in a child forked by the embedding
     * process before it execs; epoll would then report events carrying this
     * freed connection.
     */
    epoll_ctl(w->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    __atomic_sub_fetch(&w->nconns, 1, __ATOMIC_RELAXED);
    w->ctr.curr_connections--;
    atomic_fetch_sub_explicit(&w->dp->nconns, 1, memory_order_relaxed);
    free(c->rbuf);
    ss_conn_out_drop(sc);
    ss_buf_free(&c->out);
    free(sc);
}

/*
 * Give back buffers that grew large, on a connection with nothing buffered.
 * Called from the worker's periodic sweep, never per request.
 */
void ss_conn_trim(struct ss_conn *c)
{
    struct ss_server_conn *sc = ss_server_conn_of(c);

    if (c->rcap > SS_CONN_RBUF_TRIM && c->rpos == c->rlen) {
        char *p = realloc(c->rbuf, SS_CONN_RBUF_INITIAL);
        if (p) {
            c->rbuf = p;
            c->rcap = SS_CONN_RBUF_INITIAL;
            c->rpos = c->rlen = 0;
        }
    }
    if (c->out.cap > SS_CONN_OUT_TRIM && conn_pending(sc) == 0) {
        ss_buf_free(&c->out);
        sc->wpos = 0;
    }
}

/*
 * Make room in rbuf for the next read: at least SS_CONN_READ_MIN bytes, and
 * all of rneed at once when the protocol said how much it waits for.
 * Returns 0, -E2BIG when the client needs more unread input than allowed
 * (the connection is then closed), or -ENOMEM.
 */
static int conn_make_room(struct ss_conn *c, size_t limit)
{
    size_t unread = c->rlen - c->rpos;

    if (unread == 0)
        c->rpos = c->rlen = 0;
    if (c->rneed > limit || unread >= limit)
        return -E2BIG;

    size_t want = unread + SS_CONN_READ_MIN;
    if (c->rneed > want)
        want = c->rneed;
    if (want > limit)
        want = limit;
    if (c->rcap - c->rpos >= want)
        return 0;

    /* Compact first: the unread tail is a partial command, usually short. */
    if (c->rpos) {
        memmove(c->rbuf, c->rbuf + c->rpos, unread);
        c->rpos = 0;
        c->rlen = unread;
    }
    if (c->rcap >= want)
        return 0;

    size_t cap = c->rcap * 2;
    if (cap < want)
        cap = want;
    if (cap > limit)
        cap = limit;
    char *p = realloc(c->rbuf, cap);
    if (!p)
        return -ENOMEM;
    c->rbuf = p;
    c->rcap = cap;
    return 0;
}

/*
 * One read into rbuf. Returns bytes read (> 0), 0 when nothing was read
 * (would block, or end of input: peer_eof is then set), or -errno.
 */
static ssize_t conn_read(struct ss_server_conn *sc)
{
    struct ss_conn *c = &sc->c;
    int rc = conn_make_room(c, conn_rbuf_limit(c->w));
    if (rc)
        return rc;
    for (;;) {
        ssize_t n = recv(c->fd, c->rbuf + c->rlen, c->rcap - c->rlen, MSG_DONTWAIT);
        if (n > 0) {
            c->rlen += (size_t)n;
            c->w->ctr.bytes_read += (uint64_t)n;
            c->last_active_ms = c->w->now_ns / 1000000u;
            return n;
        }
        if (n == 0) {
            sc->peer_eof = 1;
            return 0;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return 0;
        return -errno;
    }
}

/*
 * Run the protocol over the unread input and try to send its answers.
 * Returns 0 or -errno (close the connection).
 *
 * A protocol may stop early to bound its output (leaving whole commands in
 * rbuf). When everything it produced went out at once, nothing would wake
 * us for the rest (the client may just be waiting for answers), so run it
 * again while it makes progress; after a few rounds yield to the other
 * connections and come back on EPOLLOUT. sc->more says whether whole
 * commands may still be waiting.
 */
static int conn_process(struct ss_server_conn *sc)
{
    struct ss_conn *c = &sc->c;

    sc->more = 0;
    for (int round = 0; c->rlen > c->rpos || c->produce; round++) {
        if (round == SS_CONN_PROCESS_ROUNDS) {
            sc->more = 1;
            break;
        }
        ss_conn_out_compact(sc);
        size_t before = c->rpos;
        int res = c->proto == SS_PROTO_HTTP ? ss_obj_http_process(c) : ss_mc_process(c);
        size_t consumed = c->rpos - before;
        if (c->rpos == c->rlen)
            c->rpos = c->rlen = 0;
        if ((c->proto == SS_PROTO_HTTP ? res == SS_OBJ_CLOSE : res == SS_MC_CLOSE) ||
            c->close_after_write)
            ss_conn_set_state(c, SS_CONN_CLOSING);
        size_t queued = conn_pending(sc);
        int rc = conn_flush(sc);
        if (rc)
            return rc;
        if (c->state != SS_CONN_READING)
            break;
        /* Nothing consumed: wait for input, unless the protocol stopped only
         * because its output was past its bound and this flush just sent it
         * all. Then no EPOLLOUT would come to run the waiting commands. */
        if (consumed == 0 && !c->produce &&
            !(c->rlen > c->rpos && queued && conn_pending(sc) == 0))
            break;
        if (c->produce && conn_pending(sc)) {
            sc->more = 1; /* the body goes on once the socket drains */
            break;
        }
        if (c->rlen > c->rpos && conn_pending(sc)) {
            sc->more = 1; /* again once the output has drained */
            break;
        }
    }
    return 0;
}

/*
 * Everything owed is sent and the connection is to end. An HTTP client may
 * still be sending (a body we refused): closing with its bytes unread would
 * make the kernel answer them with a reset, which can destroy our answer in
 * the client's receive queue. So shut our side and drop what still comes,
 * as HTTP servers do. Returns 1 when c lingers, 0 when it may close now.
 */
static int conn_linger(struct ss_server_conn *sc)
{
    struct ss_conn *c = &sc->c;
    if (c->proto != SS_PROTO_HTTP || sc->peer_eof || c->state == SS_CONN_LINGERING)
        return 0;
    if (shutdown(c->fd, SHUT_WR) < 0)
        return 0;
    ss_conn_set_state(c, SS_CONN_LINGERING);
    sc->linger_until_ms = ss_clock_mono_ms() + SS_CONN_LINGER_MS;
    c->rpos = c->rlen = 0;
    return 1;
}

/* Read and drop a lingering connection's input. 1 at its end (close), else 0. */
static int conn_drain(struct ss_server_conn *sc)
{
    struct ss_conn *c = &sc->c;
    for (int i = 0; i < SS_CONN_READS_PER_EVENT; i++) {
        ssize_t n = recv(c->fd, c->rbuf, c->rcap, MSG_DONTWAIT);
        if (n > 0)
            continue;
        if (n < 0 && errno == EINTR)
            continue;
        return n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK);
    }
    return 0;
}

int ss_conn_linger_expired(struct ss_conn *c, uint64_t now_ms)
{
    struct ss_server_conn *sc = ss_server_conn_of(c);
    if (c->state != SS_CONN_LINGERING || now_ms < sc->linger_until_ms)
        return 0;
    ss_conn_close(c);
    return 1;
}

/* Register the epoll mask the connection's state calls for. */
static int conn_rearm(struct ss_server_conn *sc)
{
    struct ss_conn *c = &sc->c;
    uint32_t want;

    if (c->state == SS_CONN_LINGERING)
        want = EPOLLIN;
    else if (c->state == SS_CONN_READING)
        /* After end of input EPOLLIN would fire forever: leave it out. While
         * commands wait behind owed replies (ss_reply_full), input waits in
         * the socket: TCP holds the client back, not a read buffer that
         * would hit its limit and close the connection. */
        want = (sc->peer_eof || ss_reply_full(c) ? 0 : EPOLLIN) |
               (conn_pending(sc) || sc->more || c->produce ? EPOLLOUT : 0);
    else
        /* Nothing to write yet (proxy mode: replies still owed): no spin. */
        want = conn_pending(sc) || c->state == SS_CONN_WRITING ? EPOLLOUT : 0;
    if (want == sc->events)
        return 0;
    struct epoll_event ev = { .events = want, .data.ptr = sc };
    if (epoll_ctl(c->w->epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0)
        return -errno;
    sc->events = want;
    return 0;
}

/*
 * Handle epoll events for c. May close (and free) c; the caller must not
 * touch c afterwards.
 */
void ss_conn_on_event(struct ss_conn *c, uint32_t events)
{
    struct ss_server_conn *sc = ss_server_conn_of(c);

    /* HUP: both directions are shut, nothing sent would be delivered. */
    if (events & (EPOLLERR | EPOLLHUP))
        goto close;
    if (c->state == SS_CONN_LINGERING) {
        if (conn_drain(sc))
            goto close;
        return;
    }

    if (events & EPOLLOUT) {
        if (conn_pending(sc) && conn_flush(sc) < 0)
            goto close;
        if (c->state != SS_CONN_CLOSING && conn_pending(sc) == 0) {
            ss_conn_set_state(c, SS_CONN_READING);
            /*
             * Commands may wait in rbuf: we stopped reading while writing,
             * the protocol stopped early to bound its output, or we yielded
             * (sc->more). The client may be waiting for answers and send
             * nothing more, so run them now rather than on the next input.
             */
            if ((c->rlen > c->rpos || c->produce) && conn_process(sc) < 0)
                goto close;
        }
    }

    if ((events & EPOLLIN) && c->state == SS_CONN_READING && !ss_reply_full(c)) {
        ssize_t n, got = 0;
        /*
         * While the protocol waits for more than is buffered (a large value
         * in flight), keep reading instead of re-parsing after every chunk;
         * bounded so one client cannot hold the worker.
         */
        for (int i = 0; i < SS_CONN_READS_PER_EVENT; i++) {
            n = conn_read(sc);
            if (n < 0)
                goto close;
            got += n;
            if (n == 0 || c->rneed <= c->rlen - c->rpos)
                break;
        }
        if (got > 0 || sc->peer_eof) {
            if (conn_process(sc) < 0)
                goto close;
        }
    }

    /* No more input will come: answer what was asked, then close. */
    if (sc->peer_eof && c->state == SS_CONN_READING && !sc->more && !c->produce &&
        !ss_reply_owed(c))
        ss_conn_set_state(c, SS_CONN_CLOSING);
    if (c->state == SS_CONN_CLOSING && conn_pending(sc) == 0 &&
        !ss_reply_owed(c) && !conn_linger(sc))
        goto close;
    if (c->state == SS_CONN_READING && conn_pending(sc) > SS_CONN_OUT_HIGH_WATER)
        ss_conn_set_state(c, SS_CONN_WRITING);
    if (conn_rearm(sc) < 0)
        goto close;
    return;

close:
    ss_conn_close(c);
}

/*
 * Deferred replies (ss_reply.c) were appended to c->out outside c's own
 * event. Write them, run commands that waited behind them, and settle
 * the state as ss_conn_on_event would. May close (and free) c.
 */
void ss_conn_output_ready(struct ss_conn *c)
{
    struct ss_server_conn *sc = ss_server_conn_of(c);

    if (conn_flush(sc) < 0)
        goto close;
    if (c->state == SS_CONN_READING && (c->rlen > c->rpos || c->produce) &&
        !ss_reply_full(c) && conn_pending(sc) == 0 && conn_process(sc) < 0)
        goto close;
    if (sc->peer_eof && c->state == SS_CONN_READING && !sc->more && !ss_reply_owed(c))
        ss_conn_set_state(c, SS_CONN_CLOSING);
    if (c->state == SS_CONN_CLOSING && conn_pending(sc) == 0 && !ss_reply_owed(c) &&
        !conn_linger(sc))
        goto close;
    if (c->state == SS_CONN_READING && conn_pending(sc) > SS_CONN_OUT_HIGH_WATER)
        ss_conn_set_state(c, SS_CONN_WRITING);
    if (conn_rearm(sc) < 0)
        goto close;
    return;

close:
    ss_conn_close(c);
}
