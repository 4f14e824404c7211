/*
 * ss_worker.h - per-thread state of one data-plane worker.
 *
 * One cache-aligned struct per worker thread, read by that thread only
 * (counters are read by others with relaxed loads; a torn read of a 64-bit
 * counter cannot happen on the 64-bit targets we build for).
 */
#ifndef SS_WORKER_H
#define SS_WORKER_H

#include "ss_conn.h"
#include "ss_counters.h"
#include "ss_inspect.h"
#include "ss_store.h"

struct ss_dataplane;
struct ss_replyq;

struct ss_worker {
    struct ss_counters ctr;      /* first: the hottest cache lines */
    struct ss_store_thread st;   /* this thread's handle on the store */
    struct ss_dataplane *dp;
    int id;
    int epfd;                    /* epoll instance */
    int wakefd;                  /* eventfd: stop and hand-off wake-ups */
    struct ss_conn *conns;       /* open TCP connections, most recent first */
    unsigned nconns;
    void *udp;                   /* ss_udp.c state (reply budgets) */
    void *px;                    /* proxy mode: this worker's struct px_worker */
    void *obj;                   /* object requests: this worker's struct ss_obj_worker */
    /* Executors of new TCP connections and of datagrams (NULL: local). */
    ss_exec_fn exec_tcp, exec_udp;
    /* Connections whose deferred replies completed (server/ss_reply.c). */
    struct ss_replyq *replies_ready;
    /* The loop's clock (CLOCK_MONOTONIC ns), read as each turn begins and
     * again when epoll_wait returns: what happens in a turn (a forward sent,
     * a reply matched, a read) is stamped with it instead of reading the
     * clock per request (two reads per forwarded request were 2% of its CPU). */
    uint64_t now_ns;
    /* Request service time (ss_inspect.h); written by this worker only. */
    uint64_t latency_ns[SS_LATENCY_BUCKETS];
    uint64_t latency_ns_sum;
} __attribute__((aligned(64)));

#endif
