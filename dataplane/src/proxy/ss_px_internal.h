/*
 * ss_px_internal.h - proxy mode, private to ss_px_*.c (what the server and
 * the protocol call is in ss_px.h).
 *
 * Pieces:
 *   - struct px_routing (ss_px_routing.c): an immutable copy of the control
 *     plane's table plus the shared per-back-end state (UP/DOWN...), the
 *     per-back-end per-worker counters; published by an atomic pointer swap.
 *   - struct px_worker: a worker's pools of back-end connections for the
 *     routing generation it has adopted, its deadlines and its list of client
 *     connections with replies ready to write.
 *   - struct px_bconn (ss_px_backend.c): one back-end connection, its output,
 *     its input framing and its FIFO of outstanding ops.
 *   - struct px_slot (ss_px_forward.c): a reply still owed by back ends, a
 *     deferred reply of the server's (server/ss_reply.h), so forwarded and
 *     local answers leave in order.
 */
#ifndef SS_PX_INTERNAL_H
#define SS_PX_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "ss_buf.h"
#include "mc/ss_mc.h"
#include "server/ss_server.h"
#include "ss_proxy.h"
#include "ss_px.h"
#include "ss_px_routing.h"

struct ss_worker;
struct ss_dataplane;

/* Fill races: write epochs indexed by key hash (see ss_px_epoch_*). Keys
 * share a slot, and a set that finds another write in flight in its slot
 * drops its key's copy instead of keeping it (post_write): with 800 writes
 * in flight (50 clients at depth 16), 2^16 slots dropped 1.2% of the copies
 * at each set, a tenth of the cached keys in 1.8 M sets. 2^20 slots (8 MiB)
 * make that 0.08%; the slot is prefetched ahead of the set that bumps it
 * (mc/ss_mc_lookahead.c) and of its reply (bc_pop_done). */
#define PX_EPOCH_SLOTS (1u << 20)
/* Second-hit doorkeeper: two bitmaps of this many bits, rotated per window. */
#define PX_SKETCH_BITS (1u << 20)
/* A back-end reply line longer than this is garbage. */
#define PX_LINE_MAX 8192
/* Worker poll interval while back-end ops are outstanding (deadline checks). */
#define PX_TICK_MS 10

/* Private item bit (beside SS_MC_ITEM_KEY_BINARY): the local copy was
 * written by a set that passed through, so its cas is not the back end's. */
#define PX_ITEM_CAS_UNKNOWN SS_MC_ITEM_CAS_UNKNOWN

struct px_bstat { /* one back end, one worker; written by that worker only */
    uint64_t requests, errors, timeouts, in_flight;
    uint64_t latency_us[SS_BACKEND_LATENCY_BUCKETS];
} __attribute__((aligned(64)));

struct px_bcarried { /* px_bstat's counters, without its cache-line alignment */
    uint64_t requests, errors, timeouts;
    uint64_t latency_us[SS_BACKEND_LATENCY_BUCKETS];
};

struct px_backend {
    char *name, *host;
    int port;
    struct ss_backend_settings s; /* name/host point at the copies above */
    _Atomic uint32_t state;
    _Atomic uint32_t consecutive_failures;
    _Atomic uint64_t state_changes;
    /* Counted by earlier routing tables for the same host:port, folded in when
     * they are reaped (ctl_lock), so a reload does not restart the counters. */
    struct px_bcarried carried;
};

struct px_ring {
    char *name;
    uint32_t distribution;
    struct ss_ring_point *points;
    uint32_t npoints;
    uint32_t *members;
    uint32_t nmembers;
    uint32_t *index;              /* ketama: the slice index (ss_ring_index_build) */
    struct ss_ring_settings view; /* what ss_ring_lookup takes */
};

struct px_routing {
    uint64_t generation;
    struct ss_routing_settings s; /* scalars; arrays below */
    struct px_backend *backends;
    uint32_t nbackends;
    struct px_ring *rings;
    uint32_t nrings;
    int nworkers;
    struct px_bstat *stats; /* [backend * nworkers + worker] */
    struct px_routing *retired_next;
};

struct px_bconn;

/* A worker's view: pools for one routing generation. */
struct px_worker {
    struct px_routing *r;      /* adopted table (NULL: standalone) */
    struct px_bconn **pool;    /* [backend * cpb + i] */
    uint32_t cpb;              /* connections per back end */
    struct px_bconn *all;      /* every open back-end connection, incl. retiring */
    uint64_t outstanding;      /* ops in flight on this worker */
    bool fail_pending;         /* a connection failed synchronously: handle at tick */
};

/* Process-wide proxy state, hung off struct ss_dataplane. */
struct px_global {
    _Atomic(struct px_routing *) routing;
    _Atomic uint64_t generation;
    _Atomic uint64_t *seen;   /* per worker: generation adopted */
    struct px_routing *retired;
    struct px_worker *workers;
    int nworkers;
    /* PX_EPOCH_SLOTS: a slot's write epoch and its forwarded writes not yet
     * done, side by side: a write bumps the one and counts itself in the
     * other, one cache miss for both. */
    struct px_key_slot {
        _Atomic uint32_t epoch;
        _Atomic uint32_t writes_in_flight;
    } *key_slots;
    _Atomic uint32_t flushes; /* flush_all commands seen: part of every epoch */
    /* PX_EPOCH_SLOTS: a key of the slot may be stale at its owner (an md or ms
     * with I went there, and no plain set since). memcached gives the win
     * token (W) to the first mg of a stale item, and a text get takes none:
     * such keys are neither fetched with mg nor kept locally. */
    _Atomic uint8_t *stale_maybe;
    _Atomic uint64_t *sketch[2];
    _Atomic uint32_t sketch_cur;
    _Atomic uint64_t sketch_rotated_ms;
};

/* ---- ops and slots ---- */

enum px_op_kind { PX_OP_GETS = 0, PX_OP_RAW = 1 };

/* One key of a batched fetch. */
struct px_item {
    struct px_slot *slot;
    uint32_t frag;      /* index of the fragment it fills */
    uint32_t epoch;     /* write epoch when sent */
    uint16_t nkey;
    bool want_cas;
    bool no_fill;       /* gat/gats: do not admit */
    char key[SS_KEY_MAX_LENGTH];
};

struct px_op {
    struct px_op *next;
    /* PX_POST_SET: the local copy withdrawn when the write began, with a
     * reference (ss_store_withdraw), or NULL; ss_px_op_free lets go of it.
     * Next to `next`: a back end's queue prefetches both in one line. */
    struct ss_value_hold *held;
    _Atomic uint32_t *in_flight; /* the key slot's writes_in_flight, held by this op
                                    (in the same line: prefetched with held) */
    uint8_t kind;        /* enum px_op_kind */
    uint8_t post;        /* what to do locally on success (PX_POST_*) */
    uint8_t one_line;    /* RAW: the reply is exactly one line, so no `mn` is sent */
    uint8_t answer_bad_line; /* RAW: the client gets CLIENT_ERROR bad command line
                                format once the owner has answered */
    uint32_t backend;
    uint64_t sent_us;
    uint64_t deadline_ms;
    struct px_slot *slot; /* RAW: where the reply goes (NULL: noreply) */
    /* GETS */
    struct px_item *items;
    uint32_t nitems, matched;
    /* RAW: the reply as it arrives; for PX_POST_SET, the value to keep */
    struct ss_buf reply;
    uint32_t items_cap;  /* items allocated (kept while the op is cached) */
    bool has_key;        /* lkey holds the key to apply locally */
    char *lkey;
    size_t nlkey, lkey_cap;
    uint32_t lflags;
    int64_t lexptime;
    uint64_t lhash;      /* PX_POST_SET/INVALIDATE: lkey's ss_hash64 (its stripe and slot) */
    uint32_t lepoch;     /* PX_POST_FILL_MG: write epoch when sent;
                            PX_POST_SET/INVALIDATE: write epoch after our own bump */
    char *lvalue;
    size_t lvlen, lvalue_cap;
};

#define PX_POST_NONE 0
#define PX_POST_INVALIDATE 1 /* drop the local copy again once done */
#define PX_POST_SET 2        /* on success, keep the value with cas unknown */
#define PX_POST_FILL_MG 3    /* a forwarded mg: fill from its reply */

struct px_frag {
    struct ss_buf b;
};

struct px_slot {
    struct ss_reply r;    /* first: its place in the client's reply order; r.pending
                             counts the ops still to answer */
    bool error;           /* a back end failed: reply is err only */
    bool multi;           /* reply = frags + trailer */
    bool silent;          /* a noreply write's: renders nothing, only keeps order */
    struct px_frag *frags;
    uint32_t nfrags;
    uint32_t frags_cap;   /* allocated (kept while the slot is cached) */
    const char *trailer;  /* "END\r\n" for text gets */
    struct ss_buf err;    /* the error that replaced the reply, or a raw reply */
};

/* ---- ss_px_cmd.c: building and forwarding a request, shared with ss_px_meta.c ---- */
/* Drop key's local copy before a write; whether there was one (held: below). */
bool ss_px_invalidate(struct ss_worker *w, const char *key, size_t nkey,
                      struct ss_value_hold **held);
/* The write being executed keeps its value locally on success. */
bool ss_px_keep_written_value(struct ss_conn *c);
/* The owner of key, or -1 after answering the client's SERVER_ERROR. */
int ss_px_cmd_route(struct ss_conn *c, const char *key, size_t nkey, bool noreply);
/* The request being built (one per worker thread): the client's line, less
 * the tokens from skip on; then more bytes. 0 or -ENOMEM. */
int ss_px_req_line(const struct ss_mc_req *rq, size_t skip);
int ss_px_req_append(const void *bytes, size_t n);
/* Send that request for op to back end b, its reply to a new slot. An SS_EXEC_*. */
int ss_px_send_req(struct ss_conn *c, int b, struct px_op *op, bool noreply);
/* Remember the key (and a set's value) for post_write. 0 or -ENOMEM. */
int ss_px_op_keep(struct ss_dataplane *dp, struct px_op *op, const char *key, size_t nkey,
                  const char *val, size_t vlen);
/* What memcached does at the owner for a refusal here (delete the item), or
 * after a local answer from a copy kept from a write (mark it fetched). */
void ss_px_drop_at_owner(struct ss_conn *c, const char *key, size_t nkey, bool binary);
void ss_px_mark_read_at_owner(struct ss_conn *c, const char *key, size_t nkey, bool binary);

/* ---- ss_px_meta.c: mg, and ms, md, ma ---- */
int ss_px_mg(struct ss_conn *c, struct ss_mc_req *rq);
int ss_px_meta_write(struct ss_conn *c, struct ss_mc_req *rq);

/* ---- ss_px_routing.c (ss_px_init, ss_px_free, ss_px_housekeep: ss_px.h) ---- */
struct px_global *ss_px_global(struct ss_dataplane *dp);
/* Route a key; returns the back-end index, or -1 with *why set (fail policy). */
int ss_px_route(const struct px_routing *r, const char *key, size_t nkey, const char **why);
void ss_px_route_error(const struct px_routing *r, const char *key, size_t nkey,
                       const char *why, char *line, size_t n);
/* The index in r of the back end at host:port, or -1 (a reload matches tables by it). */
int ss_px_backend_index(const struct px_routing *r, const char *host, int port);
/* ss_px_epoch_slot and ss_px_epoch_bump: ss_px_routing.h */
uint32_t ss_px_epoch_get(struct ss_dataplane *dp, uint32_t slot);
/* flush_all: every fill already sent is then dropped when it returns. */
void ss_px_epoch_bump_all(struct ss_dataplane *dp);
_Atomic uint32_t *ss_px_writes_in_flight(struct ss_dataplane *dp, uint32_t slot);
bool ss_px_stale_maybe(struct ss_dataplane *dp, uint32_t slot);
void ss_px_stale_mark(struct ss_dataplane *dp, uint32_t slot, bool maybe);
bool ss_px_admit(struct ss_dataplane *dp, const struct px_routing *r, const char *key,
                 size_t nkey, size_t vlen);
void ss_px_backend_failed(struct px_routing *r, uint32_t b);
void ss_px_backend_ok(struct px_routing *r, uint32_t b);
static inline struct px_bstat *ss_px_bstat(struct px_routing *r, uint32_t b, int worker)
{
    return &r->stats[(size_t)b * (size_t)r->nworkers + (size_t)worker];
}

/* ---- ss_px_backend.c ---- */
struct sockaddr_storage;
int ss_px_parse_addr(const char *host, int port, struct sockaddr_storage *ss, socklen_t *len);
struct px_bconn *ss_px_bconn_for(struct ss_worker *w, uint32_t backend, const void *client);
/* Queue an op whose request bytes are [req, req + n). The op is owned by
 * the connection from here on. */
void ss_px_bconn_send(struct ss_worker *w, struct px_bconn *bc, struct px_op *op,
                      const char *req, size_t n);
void ss_px_bconn_on_event(struct ss_worker *w, struct px_bconn *bc, uint32_t events);
void ss_px_worker_check(struct ss_worker *w, uint64_t now_ms);
void ss_px_worker_adopt(struct ss_worker *w, struct px_routing *r);
void ss_px_worker_close_all(struct ss_worker *w);

/* ---- ss_px_forward.c ---- */
void ss_px_op_done(struct ss_worker *w, struct px_op *op, const char *err);
/* W, X or Z in an mg reply: the owner's win-token state for a stale or
 * vivified item, which no local copy can show; such items are not kept. */
static inline bool ss_px_owner_state_flag(const char *tok, size_t len)
{
    return len == 1 && (tok[0] == 'W' || tok[0] == 'X' || tok[0] == 'Z');
}

void ss_px_item_value(struct ss_worker *w, struct px_op *op, struct px_item *it, uint32_t flags,
                      uint64_t cas, int64_t ttl, const char *val, size_t vlen,
                      bool keep);
void ss_px_slot_release(struct ss_worker *w, struct px_slot *s);
struct px_slot *ss_px_slot_new(struct ss_conn *c, uint32_t nfrags);
/* A zeroed op of kind (from this thread's cache when it has one). NULL on ENOMEM. */
struct px_op *ss_px_op_new(uint8_t kind);
/* Room for n GETS items in op->items (kept across reuse). Returns 0 or -ENOMEM. */
int ss_px_op_items(struct px_op *op, uint32_t n);
/* Keep key (and val, unless NULL) in the op to apply locally. Returns 0 or -ENOMEM. */
int ss_px_op_keep_key(struct px_op *op, const char *key, size_t nkey, const char *val,
                      size_t vlen);
/* Free this thread's op and slot caches (worker exit). */
void ss_px_cache_drain(void);
void ss_px_op_free(struct px_op *op);

#endif
