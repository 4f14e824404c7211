/*
 * ss_worker.c - one worker thread's event loop (ss_dataplane_run_worker).
 *
 * Each worker owns its epoll set, its own SO_REUSEPORT TCP and UDP sockets
 * (see ss_dataplane.c for why), the connections it accepted and its
 * counters. Nothing is shared with other workers on the request path except
 * the store (through this thread's struct ss_store_thread), the global
 * connection count and the UDP reply budgets.
 */
#define _GNU_SOURCE /* accept4, recvmmsg, sendmmsg */
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/ss_clock.h"
#include "ss_server_internal.h"

/* memcached's answer when maxconns is reached (memcached.c, conn_listening). */
static const char ss_too_many_conns[] = "ERROR Too many open connections\r\n";

struct ss_loop {
    struct ss_worker *w;
    int tcp_fd;
    int http_fd;       /* the objects listener, -1 when off */
    int accept_paused; /* out of descriptors: retried at the next sweep */
};

/* Stop watching the listener (or watch it again) without closing it. */
static void loop_listen_enable(struct ss_loop *l, int on)
{
    struct epoll_event ev = { .events = on ? EPOLLIN : 0, .data.u64 = SS_EV_TCP };
    int ok = l->tcp_fd < 0 || epoll_ctl(l->w->epfd, EPOLL_CTL_MOD, l->tcp_fd, &ev) == 0;
    ev.data.u64 = SS_EV_HTTP;
    if (l->http_fd >= 0 && epoll_ctl(l->w->epfd, EPOLL_CTL_MOD, l->http_fd, &ev) < 0)
        ok = 0;
    if (ok)
        l->accept_paused = !on;
}

/*
 * Accept what is waiting on this worker's listener, up to a burst. Over
 * max_connections a client is told so and closed, as memcached does.
 */
static void loop_accept(struct ss_loop *l, int proto)
{
    struct ss_worker *w = l->w;
    int lfd = proto == SS_PROTO_HTTP ? l->http_fd : l->tcp_fd;
    struct ss_dataplane *dp = w->dp;
    uint32_t max = dp->s.max_connections;

    for (int i = 0; i < SS_WORKER_ACCEPT_BURST; i++) {
        struct sockaddr_storage peer;
        socklen_t peer_len = sizeof(peer);
        int fd = accept4(lfd, (struct sockaddr *)&peer, &peer_len,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
                errno == ENOMEM) {
                /* Level-triggered: without this the loop would spin. */
                loop_listen_enable(l, 0);
            }
            return;
        }
        unsigned prev = atomic_fetch_add_explicit(&dp->nconns, 1, memory_order_relaxed);
        if (max && prev >= max) {
            atomic_fetch_sub_explicit(&dp->nconns, 1, memory_order_relaxed);
            /* Best effort: a fresh socket's send buffer always has room. */
            static const char http_busy[] = "HTTP/1.1 503 Service Unavailable\r\n"
                "Connection: close\r\nContent-Length: 0\r\n\r\n";
            const char *msg = proto == SS_PROTO_HTTP ? http_busy : ss_too_many_conns;
            size_t len = proto == SS_PROTO_HTTP ? sizeof(http_busy) - 1
                                                : sizeof(ss_too_many_conns) - 1;
            ssize_t n = send(fd, msg, len, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (n > 0)
                w->ctr.bytes_written += (uint64_t)n;
            close(fd);
            w->ctr.rejected_connections++;
            continue;
        }
        int one = 1;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (ss_balance_maybe_hand_off(w, fd, proto))
            continue;
        if (ss_conn_open(w, fd, &peer, peer_len, proto) < 0) {
            atomic_fetch_sub_explicit(&dp->nconns, 1, memory_order_relaxed);
            close(fd);
        }
    }
}

/*
 * Once a second: close clients idle longer than idle_timeout_s, give back
 * buffers of quiet connections, retry a paused listener.
 */
static void loop_sweep(struct ss_loop *l, uint64_t now)
{
    struct ss_worker *w = l->w;
    uint64_t idle_ms = (uint64_t)w->dp->s.idle_timeout_s * 1000u;
    struct ss_conn *c = w->conns;

    while (c) {
        struct ss_conn *next = c->next;
        uint64_t quiet = now > c->last_active_ms ? now - c->last_active_ms : 0;
        if (ss_conn_linger_expired(c, now)) {
            c = next;
            continue;
        }
        if (c->proto == SS_PROTO_HTTP) {
            /* HTTP has its own timeouts: a stalled request, an idle keep-alive. */
            if (ss_obj_conn_expired(c, quiet)) {
                w->ctr.idle_kicks++;
                ss_conn_close(c);
            } else if (quiet >= SS_CONN_TRIM_IDLE_MS) {
                ss_conn_trim(c);
            }
        } else if (idle_ms && quiet >= idle_ms) {
            w->ctr.idle_kicks++;
            ss_conn_close(c);
        } else if (quiet >= SS_CONN_TRIM_IDLE_MS) {
            ss_conn_trim(c);
        }
        c = next;
    }
    if (w->udp)
        ss_udp_trim(w);
    if (l->accept_paused)
        loop_listen_enable(l, 1);
}

/* Close every connection this worker still holds (on stop). */
static void loop_close_all(struct ss_worker *w)
{
    while (w->conns)
        ss_conn_close(w->conns);
}

static void loop_drain_wakefd(struct ss_worker *w)
{
    uint64_t v;
    while (read(w->wakefd, &v, sizeof(v)) == (ssize_t)sizeof(v))
        ;
}

/* Poll the ring's completions for up to SS_WORKER_IO_SPIN_NS, as the
 * worker has nothing else to do; true once some were reaped. */
static bool spin_for_reads(struct ss_worker *w)
{
    uint64_t until = ss_clock_mono_ns() + SS_WORKER_IO_SPIN_NS;
    do {
        for (int i = 0; i < 16; i++) { /* the clock costs more than a peek */
            if (ss_store_io_poll(&w->st, UINT_MAX))
                return true;
#if defined(__x86_64__) || defined(__i386__)
            __builtin_ia32_pause(); /* a polite spin: yield the core's pipeline */
#endif
        }
    } while (ss_clock_mono_ns() < until);
    return false;
}

/*
 * A worker that has not slept for SS_WORKER_TURN_QUOTA_NS hands its CPU to
 * whatever else is runnable there (sched_yield; at once back when nothing
 * is). busy_since: when it last came out of a wait that slept.
 */
static void loop_hand_over_if_due(struct ss_worker *w, uint64_t *busy_since, uint64_t now_ns)
{
    if (now_ns - *busy_since < SS_WORKER_TURN_QUOTA_NS)
        return;
    sched_yield();
    w->ctr.worker_yields++;
    *busy_since = ss_clock_mono_ns();
}

/*
 * How many events the next turn takes, from what this one sent: as many as
 * keep a turn near SS_WORKER_TURN_BYTES. Events the kernel does not hand
 * over stay at the head of its ready list, so a shorter turn is still fair:
 * the connections left out come first next time.
 */
static int loop_turn_events(struct ss_worker *w, uint64_t sent, int nb_ev)
{
    uint64_t each = nb_ev > 0 ? sent / (uint64_t)nb_ev : 0;
    if (each == 0)
        return SS_WORKER_EVENTS;
    uint64_t fit = (uint64_t)SS_WORKER_TURN_BYTES / each;
    if (fit >= SS_WORKER_EVENTS)
        return SS_WORKER_EVENTS;
    w->ctr.worker_short_turns++;
    return fit ? (int)fit : 1;
}

/* One turn's events, each to its owner: listeners, the store's and the
 * object plane's completions, wake-ups, back-end, origin and client
 * connections (tagged pointers). */
static void loop_dispatch(struct ss_loop *l, const struct epoll_event *evs, int nb_ev)
{
    struct ss_worker *w = l->w;
    for (int i = 0; i < nb_ev; i++) {
        uint64_t tag = evs[i].data.u64;
        if (tag < SS_EV__TAG_MAX) {
            if (tag == SS_EV_TCP)
                loop_accept(l, SS_PROTO_MEMCACHED);
            else if (tag == SS_EV_HTTP)
                loop_accept(l, SS_PROTO_HTTP);
            else if (tag == SS_EV_UDP)
                ss_udp_on_readable(w);
            else if (tag == SS_EV_IO)
                ss_store_io_reap(&w->st);
            else if (tag == SS_EV_OBJ_IO)
                ss_obj_worker_reap(w);
            else if (tag == SS_EV_WAKE) {
                loop_drain_wakefd(w);
                ss_balance_drain(w);
            }
            continue;
        }
        if (tag & 1u) /* a back-end connection (proxy mode) */
            ss_px_on_event(w, evs[i].data.ptr, evs[i].events);
        else if (tag & 2u) /* an origin connection (object requests) */
            ss_obj_origin_event(w, evs[i].data.ptr, evs[i].events);
        else
            ss_conn_on_event((struct ss_conn *)evs[i].data.ptr, evs[i].events);
    }
}

/*
 * Serve on the calling thread until ss_dataplane_stop(). Returns 0 on a
 * clean stop, -EINVAL for a bad id, -EBUSY if that worker already runs, or
 * the -errno that ended the loop.
 */
int ss_dataplane_run_worker(struct ss_dataplane *dp, int worker_id)
{
    if (!dp || worker_id < 0 || worker_id >= dp->nworkers)
        return -EINVAL;
    int expect = 0;
    if (!atomic_compare_exchange_strong(&dp->running[worker_id], &expect, 1))
        return -EBUSY;

    struct ss_worker *w = &dp->workers[worker_id];
    struct ss_loop l = { .w = w, .tcp_fd = dp->tcp_fds[worker_id],
                         .http_fd = dp->http_fds ? dp->http_fds[worker_id] : -1 };
    int rc = ss_store_thread_init(&w->st, dp->store, &w->ctr);
    if (rc) {
        atomic_store(&dp->running[worker_id], 0);
        return rc;
    }
    /* Device hits complete through this worker's io_uring; without one (the
     * kernel refuses it, or an SPDK device) lookups read synchronously. */
    int iofd = ss_store_io_open(&w->st, SS_WORKER_IO_DEPTH);
    if (iofd >= 0) {
        struct epoll_event ev = {.events = EPOLLIN, .data.u64 = SS_EV_IO};
        if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, iofd, &ev) < 0)
            ss_store_io_close(&w->st);
    }
    int obj_io = -1;
    if (dp->obj && (rc = ss_obj_worker_init(w, dp->obj, &obj_io)) != 0) {
        ss_store_thread_fini(&w->st);
        atomic_store(&dp->running[worker_id], 0);
        return rc;
    }
    if (obj_io >= 0) {
        struct epoll_event ev = {.events = EPOLLIN, .data.u64 = SS_EV_OBJ_IO};
        (void)epoll_ctl(w->epfd, EPOLL_CTL_ADD, obj_io, &ev); /* the ring closes with it */
    }
    if (dp->udp_fds[worker_id] >= 0) {
        rc = ss_udp_worker_init(w, dp->udp_fds[worker_id]);
        if (rc) {
            ss_obj_worker_fini(w);
            ss_store_thread_fini(&w->st);
            atomic_store(&dp->running[worker_id], 0);
            return rc;
        }
    }

    struct epoll_event evs[SS_WORKER_EVENTS];
    uint64_t next_sweep = ss_clock_mono_ms() + SS_WORKER_SWEEP_MS;
    uint64_t busy_since = ss_clock_mono_ns();
    int turn_events = SS_WORKER_EVENTS;

    while (!atomic_load_explicit(&dp->stopping, memory_order_acquire)) {
        w->now_ns = ss_clock_mono_ns();
        uint64_t now = w->now_ns / 1000000u;
        int timeout = now >= next_sweep ? 0 : (int)(next_sweep - now);
        /* Proxy mode: adopt a new routing table, send, deadlines, deliver. */
        int px_wait = ss_px_worker_tick(w, now);
        if (px_wait >= 0 && px_wait < timeout)
            timeout = px_wait;
        /* The reads the last turn started, in one call; if the kernel refused
         * some for now, come back soon rather than sleep on them. */
        if (ss_store_io_submit(&w->st) && timeout > 1)
            timeout = 1;
        ss_obj_worker_submit(w);
        int obj_wait = ss_obj_worker_tick(w, now);
        if (obj_wait >= 0 && obj_wait < timeout)
            timeout = obj_wait;
        unsigned reads = ss_store_io_in_flight(&w->st);
        if (reads && ss_store_io_polled(&w->st)) {
            /* An SPDK device: no eventfd says when its reads complete. */
            ss_store_io_poll(&w->st, UINT_MAX);
            timeout = 0;
        } else if (timeout && reads && reads <= SS_WORKER_IO_SPIN_MAX_READS &&
                   spin_for_reads(w))
            timeout = 0; /* completions reaped: deliver them, sleep next turn */
        uint64_t wait_from = w->now_ns; /* a spin for reads counts as a sleep */
        uint64_t sent_before = w->ctr.bytes_written;
        int nb_ev = epoll_wait(w->epfd, evs, turn_events, timeout);
        if (nb_ev < 0) {
            if (errno == EINTR)
                continue;
            rc = -errno;
            break;
        }
        w->now_ns = ss_clock_mono_ns(); /* it may have slept */
        if (w->now_ns - wait_from >= SS_WORKER_SLEPT_NS)
            busy_since = w->now_ns;
        loop_dispatch(&l, evs, nb_ev);
        ss_reply_deliver(w); /* deferred replies completed during this turn */
        turn_events = loop_turn_events(w, w->ctr.bytes_written - sent_before, nb_ev);
        uint64_t turn_end = ss_clock_mono_ns();
        loop_hand_over_if_due(w, &busy_since, turn_end);
        now = turn_end / 1000000u;
        if (now >= next_sweep) {
            loop_sweep(&l, now);
            next_sweep = now + SS_WORKER_SWEEP_MS;
        }
    }

    loop_close_all(w);
    ss_obj_worker_fini(w);
    ss_px_worker_fini(w);
    ss_reply_worker_fini(w);
    ss_udp_worker_fini(w);
    ss_store_thread_fini(&w->st);
    atomic_store(&dp->running[worker_id], 0);
    return rc;
}

void ss_worker_wake(struct ss_worker *w)
{
    uint64_t one = 1;
    /* A full eventfd counter already means "wake up": nothing to retry. */
    ssize_t n = write(w->wakefd, &one, sizeof(one));
    (void)n;
}

void ss_worker_set_executors(struct ss_worker *w, ss_exec_fn tcp, ss_exec_fn udp)
{
    w->exec_tcp = tcp;
    w->exec_udp = udp;
    for (struct ss_conn *c = w->conns; c; c = c->next)
        c->exec = tcp;
}
