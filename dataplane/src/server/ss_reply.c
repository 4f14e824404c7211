/*
 * ss_reply.c - a connection's FIFO of deferred replies (see ss_reply.h).
 */
#include <errno.h>
#include <stdlib.h>

#include "ss_reply.h"
#include "ss_server_internal.h"

/* A connection's owed slots, and its place on the worker's ready list. */
struct ss_replyq {
    struct ss_reply *head, *tail;
    uint32_t nslots;
    bool ready;                  /* on the worker's ready list */
    struct ss_replyq *ready_next;
    struct ss_conn *c;           /* NULL once the client closed */
};

static struct ss_replyq *queue_of(struct ss_conn *c)
{
    return c->transport == SS_TRANSPORT_TCP ? ss_server_conn_of(c)->replies : NULL;
}

int ss_reply_push(struct ss_conn *c, struct ss_reply *r, const struct ss_reply_ops *ops)
{
    /* A datagram has no connection to hold a late reply: executors answer
     * UDP requests at once. */
    if (c->transport != SS_TRANSPORT_TCP)
        return -EINVAL;
    struct ss_server_conn *sc = ss_server_conn_of(c);
    struct ss_replyq *q = sc->replies;
    if (!q) {
        q = calloc(1, sizeof(*q));
        if (!q)
            return -ENOMEM;
        q->c = c;
        sc->replies = q;
    }
    r->next = NULL;
    r->c = c;
    r->ops = ops;
    if (q->tail)
        q->tail->next = r;
    else
        q->head = r;
    q->tail = r;
    q->nslots++;
    return 0;
}

static void mark_ready(struct ss_worker *w, struct ss_replyq *q)
{
    if (!q->ready) {
        q->ready = true;
        q->ready_next = w->replies_ready;
        w->replies_ready = q;
    }
}

void ss_reply_complete(struct ss_worker *w, struct ss_reply *r)
{
    if (--r->pending)
        return;
    if (!r->c)
        r->ops->release(r);
    else
        mark_ready(w, ss_server_conn_of(r->c)->replies);
}

struct ss_reply *ss_reply_out_begin(struct ss_conn *c)
{
    struct ss_replyq *q = queue_of(c);
    if (!q || !q->tail)
        return NULL;
    q->tail->after = ss_conn_out_borrow(c, q->tail->after);
    return q->tail;
}

void ss_reply_out_end(struct ss_conn *c, struct ss_reply *r)
{
    if (!r)
        return;
    r->after = ss_conn_out_return(c, r->after);
}

bool ss_reply_owed(struct ss_conn *c)
{
    struct ss_replyq *q = queue_of(c);
    return q && q->head;
}

bool ss_reply_full(struct ss_conn *c)
{
    struct ss_replyq *q = queue_of(c);
    return q && q->tail &&
           (q->nslots >= SS_REPLY_MAX_SLOTS || q->tail->after.len >= SS_CONN_OUT_HIGH_WATER);
}

/* Move q's complete head slots, each followed by its `after` bytes, into c->out. */
static void queue_drain(struct ss_replyq *q)
{
    struct ss_conn *c = q->c;
    while (q->head && q->head->pending == 0) {
        struct ss_reply *r = q->head;
        bool ok = r->ops->render(r, &c->out);
        if (!ok || ss_buf_append(&c->out, r->after.data, r->after.len))
            c->close_after_write = 1;
        q->head = r->next;
        if (!q->head)
            q->tail = NULL;
        q->nslots--;
        r->ops->release(r);
    }
}

bool ss_reply_any_ready(const struct ss_worker *w)
{
    return w->replies_ready != NULL;
}

void ss_reply_deliver(struct ss_worker *w)
{
    while (w->replies_ready) {
        struct ss_replyq *q = w->replies_ready;
        w->replies_ready = q->ready_next;
        q->ready = false;
        if (!q->c) { /* the client closed meanwhile */
            free(q);
            continue;
        }
        queue_drain(q);
        if (q->c->close_after_write)
            ss_conn_set_state(q->c, SS_CONN_CLOSING);
        ss_conn_output_ready(q->c); /* may close the client */
    }
}

void ss_reply_conn_closed(struct ss_conn *c)
{
    struct ss_server_conn *sc = ss_server_conn_of(c);
    struct ss_replyq *q = sc->replies;
    if (!q)
        return;
    sc->replies = NULL;
    for (struct ss_reply *r = q->head, *next; r; r = next) {
        next = r->next;
        r->c = NULL;
        if (r->pending == 0)
            r->ops->release(r);
    }
    q->head = q->tail = NULL;
    q->c = NULL;
    if (!q->ready)
        free(q); /* else ss_reply_deliver frees it */
}

void ss_reply_worker_fini(struct ss_worker *w)
{
    while (w->replies_ready) {
        struct ss_replyq *q = w->replies_ready;
        w->replies_ready = q->ready_next;
        if (!q->c)
            free(q);
        else
            q->ready = false;
    }
}
