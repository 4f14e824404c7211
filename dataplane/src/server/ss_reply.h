/*
 * ss_reply.h - deferred replies: a connection's replies stay in request order
 * whatever finishes first.
 *
 * A request that cannot be answered at once (a back end's reply in proxy
 * mode; a device read or an origin fetch later) takes a slot at the tail of
 * its connection's FIFO and its executor returns SS_EXEC_PENDING. Replies of
 * later requests that are answered at once go into the `after` buffer of the
 * last slot (ss_reply_out_begin/end swap it with c->out around the command),
 * so they leave behind it. When an owner's work finishes it calls
 * ss_reply_complete(); once a slot owes nothing its connection is marked
 * ready, and at the end of the worker's loop turn ss_reply_deliver() renders
 * complete head slots into c->out, followed by their `after` bytes, and
 * writes. A completion therefore never writes inside the client's own
 * command processing.
 *
 * The owner embeds struct ss_reply in its own slot (proxy/ss_px_forward.c:
 * struct px_slot) and supplies how to render and free it.
 */
#ifndef SS_REPLY_H
#define SS_REPLY_H

#include <stdbool.h>
#include <stdint.h>

#include "ss_buf.h"

struct ss_conn;
struct ss_worker;
struct ss_reply;

struct ss_reply_ops {
    /* Append the finished reply to out; false if an append failed. */
    bool (*render)(struct ss_reply *r, struct ss_buf *out);
    /* Give the owner's slot back (it may cache it); r->after is the owner's too. */
    void (*release)(struct ss_reply *r);
};

struct ss_reply {
    struct ss_reply *next;
    struct ss_conn *c;               /* NULL once orphaned (the client closed) */
    const struct ss_reply_ops *ops;
    uint32_t pending;                /* completions still owed */
    struct ss_buf after;             /* replies of later requests, answered at once */
};

/* A connection with this many slots owed stops taking commands until they drain. */
#define SS_REPLY_MAX_SLOTS 256

/* Queue r (pending set by the owner) at the tail of c's FIFO. 0 or -ENOMEM. */
int ss_reply_push(struct ss_conn *c, struct ss_reply *r, const struct ss_reply_ops *ops);
/* One completion of r: when none is owed any more, r is delivered (or, if its
 * client is gone, released) at the end of the loop turn. */
void ss_reply_complete(struct ss_worker *w, struct ss_reply *r);

/* Around a command answered at once: its reply goes behind the owed slots. */
struct ss_reply *ss_reply_out_begin(struct ss_conn *c);
void ss_reply_out_end(struct ss_conn *c, struct ss_reply *r);
/* Replies are owed (the connection must not close or count as idle). */
bool ss_reply_owed(struct ss_conn *c);
/* Too much is owed or queued behind it: take no further command for now. */
bool ss_reply_full(struct ss_conn *c);

/* Render every ready connection's complete head slots and write them. */
void ss_reply_deliver(struct ss_worker *w);
bool ss_reply_any_ready(const struct ss_worker *w);
/* The client is closing: its slots are orphaned (released as they complete). */
void ss_reply_conn_closed(struct ss_conn *c);
/* Worker stopping, clients closed: forget ready queues. */
void ss_reply_worker_fini(struct ss_worker *w);

#endif
