/*
 * ss_server_internal.h - private to the network server (ss_dataplane.c,
 * ss_worker.c, ss_conn.c, ss_udp.c, ss_counters.c).
 *
 * The protocol sees struct ss_conn only; the server wraps it in
 * struct ss_server_conn to keep its own write cursor and epoll mask, so the
 * public contract stays small.
 */
#ifndef SS_SERVER_INTERNAL_H
#define SS_SERVER_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "ss_conn.h"
#include "ss_dataplane.h"
#include "ss_server.h"
#include "ss_worker.h"
#include "obj/ss_obj.h"
#include "proxy/ss_px.h"

/* A fresh connection's input buffer; most requests fit many times over. */
#define SS_CONN_RBUF_INITIAL (16u * 1024u)
/* Smallest read we bother to issue; below this the buffer is compacted. */
#define SS_CONN_READ_MIN 4096u
/*
 * Unread input allowed beyond item_size_max before the connection is closed:
 * room for the command line of a maximal `set`, or a multi-get line of a few
 * hundred 250-byte keys.
 */
#define SS_CONN_RBUF_SLACK (64u * 1024u)
/* Reads per readiness event while a large value is still arriving. */
#define SS_CONN_READS_PER_EVENT 16
/* ss_mc_process() calls per event while the protocol stops early. */
#define SS_CONN_PROCESS_ROUNDS 8
/* Buffers that grew past these are given back once the connection idles. */
#define SS_CONN_RBUF_TRIM (256u * 1024u)
#define SS_CONN_OUT_TRIM (1u << 20)
#define SS_CONN_TRIM_IDLE_MS 2000u
/* How long a lingering HTTP connection may keep sending before it is closed. */
#define SS_CONN_LINGER_MS 5000u

/* Items of work a worker picks up per wake-up before yielding to others. */
#define SS_WORKER_EVENTS 64
#define SS_WORKER_ACCEPT_BURST 64
#define SS_WORKER_SWEEP_MS 1000u

/*
 * memcached protocol.txt, "UDP protocol": "Each UDP datagram contains a simple
 * frame header, followed by data in the same format as the TCP protocol ...
 * The frame header is 8 bytes long" (request id, sequence number, total
 * number of datagrams, reserved = 0; 16-bit big-endian each), and replies are
 * cut into datagrams of at most 1400 bytes including that header.
 */
#define SS_UDP_HEADER_BYTES 8u
#define SS_UDP_DATAGRAM_MAX 1400u
#define SS_UDP_BUDGET_SLOTS 4096u /* power of two */

/* Tags of the fixed descriptors in a worker's epoll set (conns use a pointer). */
enum ss_ev_tag { SS_EV_WAKE = 1, SS_EV_TCP = 2, SS_EV_UDP = 3, SS_EV_IO = 4, SS_EV_HTTP = 5,
                 SS_EV_OBJ_IO = 6, SS_EV__TAG_MAX = 16 };
/* Device reads one worker keeps in flight at most (its io_uring's size). */
#define SS_WORKER_IO_DEPTH 256u
/* A worker with device reads in flight and nothing else to do polls their
 * completions this long before it sleeps: a flash read completes in tens of
 * microseconds, and sleeping on the ring's eventfd adds a wake-up (tens of
 * microseconds more in a VM) to every read of a lightly loaded worker. */
#define SS_WORKER_IO_SPIN_NS 50000u
/* ... but only with this few in flight: with more, completions come often
 * enough that wake-ups are shared, and the spin would burn the CPU that the
 * rest of the machine (or the other workers) needs. */
#define SS_WORKER_IO_SPIN_MAX_READS 2u
/* A worker that has answered requests this long without sleeping hands its
 * CPU to whatever else is runnable there. Under load a worker never sleeps,
 * and the kernel takes the CPU from it only at a scheduler tick (4 ms at
 * HZ=250): a second worker, or a client, sharing that CPU would wait a whole
 * tick, with its connections' requests waiting too. That wait was the p99 at
 * depth 1 with two workers on one CPU (docs/architecture.md, "Worker turns"). */
#define SS_WORKER_TURN_QUOTA_NS 200000u
/* A wait that took this long (epoll_wait, with the spin for device reads
 * before it) slept or lost the CPU: a new turn begins. */
#define SS_WORKER_SLEPT_NS 20000u
/* What one turn should send at most, in bytes: a worker takes fewer events
 * per turn when each of the last turn's events sent much (large object
 * bodies), so that a client reads a body soon after it was sent, and the
 * connections it did not take stay first in the kernel's ready list for the
 * next turn (docs/architecture.md, "Worker turns"). Small replies never
 * come near it: 64 events of 64 KiB each are a full turn. */
#define SS_WORKER_TURN_BYTES (4u << 20)

#ifdef SS_DEBUG_CONN
#include <stdio.h>
#define SS_CONN_TRACE(c, ...)                                                  \
    do {                                                                       \
        fprintf(stderr, "ss_conn fd=%d: ", (c)->fd);                           \
        fprintf(stderr, __VA_ARGS__);                                          \
        fputc('\n', stderr);                                                   \
    } while (0)
#else
#define SS_CONN_TRACE(c, ...)                                                  \
    do {                                                                       \
    } while (0)
#endif

/* Outside buffers a connection's output may hold at once (ss_conn_out.c):
 * enough for a pipelined batch of 16 large gets. */
#define SS_CONN_OUT_REFS 16

/* An outside buffer queued after c.out.data[at - 1], sent without a copy. */
struct ss_out_ref {
    size_t at;
    const char *p;
    size_t n;
    ss_out_release_fn release;
    void *arg;
};

/* A TCP connection as the server keeps it. */
struct ss_server_conn {
    struct ss_conn c;   /* first: what the protocol sees */
    size_t wpos;        /* c.out.data[0, wpos) is already sent */
    struct ss_out_ref refs[SS_CONN_OUT_REFS]; /* in stream order */
    uint8_t nrefs;
    size_t ref_sent;    /* bytes of refs[0] already sent (wpos == refs[0].at then) */
    uint32_t events;    /* epoll mask currently registered */
    uint8_t peer_eof;   /* the client shut down its side */
    uint8_t more;       /* whole commands may wait in rbuf: run on EPOLLOUT */
    struct ss_replyq *replies; /* deferred replies still owed (ss_reply.c) */
    uint64_t linger_until_ms;  /* SS_CONN_LINGERING: close at this time at the latest */
};

static inline struct ss_server_conn *ss_server_conn_of(struct ss_conn *c)
{
    return (struct ss_server_conn *)((char *)c - offsetof(struct ss_server_conn, c));
}

struct ss_udp_budget;

struct ss_dataplane {
    struct ss_dataplane_settings s; /* string members point at own_* */
    char *own_listen_host;
    char *own_version;
    char *own_index_dir;
    char *own_device_path;

    struct ss_store *store;
    int64_t started_at;

    int nworkers;
    struct ss_worker *workers;  /* nworkers, cache aligned */
    int *tcp_fds;               /* per worker; -1 when TCP is off */
    int *udp_fds;               /* per worker; -1 when UDP is off */
    int tcp_port;               /* bound port or -1 */
    int udp_port;
    atomic_int *running;        /* per worker: inside run_worker */

    atomic_int stopping;
    atomic_uint nconns;         /* open TCP connections, all workers */
    struct ss_handoff *handoffs; /* per worker: accepted sockets to adopt (ss_balance.c) */
    struct ss_udp_budget *udp_budget;

    /* The control plane's handle on the store (housekeeping, verify). */
    pthread_mutex_t ctl_lock;
    struct ss_store_thread ctl_st;
    struct ss_counters ctl_ctr;
    int ctl_ready;

    void *px;                   /* proxy mode (ss_px_routing.c); NULL: none */

    /* Object requests (obj/): NULL when off. */
    struct ss_obj *obj;
    int *http_fds;              /* per worker; -1 when off */
    int http_port;              /* bound port or -1 */
};

/* ss_balance.c */
struct ss_handoff;
int ss_balance_init(struct ss_dataplane *dp);
void ss_balance_free(struct ss_dataplane *dp);
/* proto: the connection's enum ss_proto (memcached or HTTP). */
int ss_balance_maybe_hand_off(struct ss_worker *w, int fd, int proto);
void ss_balance_drain(struct ss_worker *w);

/* ss_conn.c */
int ss_conn_open(struct ss_worker *w, int fd, const struct sockaddr_storage *peer,
                 socklen_t peer_len, int proto);
void ss_conn_on_event(struct ss_conn *c, uint32_t events);
void ss_conn_close(struct ss_conn *c);
void ss_conn_trim(struct ss_conn *c);

/* ss_conn_out.c: the output queue, c.out's bytes and the refs between them. */
static inline size_t ss_conn_out_pending(const struct ss_server_conn *sc)
{
    return sc->c.out.len - sc->wpos + sc->c.out_ref_bytes;
}
int ss_conn_out_flush(struct ss_server_conn *sc);
void ss_conn_out_compact(struct ss_server_conn *sc);
void ss_conn_out_drop(struct ss_server_conn *sc);
/* The worker's sweep: close c if it lingered past its limit. 1 when closed. */
int ss_conn_linger_expired(struct ss_conn *c, uint64_t now_ms);

/* ss_udp.c */
struct ss_udp_budget *ss_udp_budget_new(uint32_t bytes_per_sec, uint32_t burst_bytes);
void ss_udp_budget_free(struct ss_udp_budget *b);
int ss_udp_worker_init(struct ss_worker *w, int fd);
void ss_udp_worker_fini(struct ss_worker *w);
void ss_udp_on_readable(struct ss_worker *w);
void ss_udp_trim(struct ss_worker *w);

#endif
