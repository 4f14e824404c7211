/*
 * ss_mc_defer.c - replies that wait for device reads (asynchronous reads,
 * ss_store.h): a get-like command's fragments, or an mg run again.
 *
 * A slot is a deferred reply of the server's (server/ss_reply.h) holding one
 * fragment per key from the first key whose read had to wait. Keys answered
 * at once are rendered into their fragment straight away; a parked key's
 * fragment is rendered when its read completes, by running the key again
 * with the read in hand (ss_store_read_use), so the counters, bumps and
 * touches are exactly those of a synchronous lookup. An mg is one fragment
 * whose request line is kept and run again the same way. The slot is sent
 * once every fragment is done; a client that left meanwhile orphans it and
 * it is freed when its last read completes.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ss_mc_internal.h"
#include "server/ss_reply.h"
#include "server/ss_worker.h"

struct ss_mc_frag {
    struct ss_mc_slot *slot;
    struct ss_buf b;
    uint8_t nkey;
    char key[SS_KEY_MAX_LENGTH];
};

struct ss_mc_slot {
    struct ss_reply r;          /* first: its place in the client's reply order */
    struct ss_worker *w;
    struct ss_mc_get_mode mode;
    const char *trailer;
    bool failed;                /* an append failed: the client is closed */
    bool read_failed;           /* a key's device read failed: SERVER_ERROR */
    struct ss_buf line;         /* mg: the request, run again on completion */
    uint32_t nfrags, used;
    struct ss_mc_frag frags[];
};

bool ss_mc_can_defer(struct ss_conn *c)
{
    return c->transport == SS_TRANSPORT_TCP && c->w->st.io && !c->w->st.use_read;
}

static bool slot_render(struct ss_reply *r, struct ss_buf *out)
{
    struct ss_mc_slot *s = (struct ss_mc_slot *)r;
    int rc = 0;
    if (s->read_failed)
        return ss_buf_append_str(out, SS_MC_READ_FAILED "\r\n") == 0 && !s->failed;
    for (uint32_t i = 0; i < s->used; i++)
        rc |= ss_buf_append(out, s->frags[i].b.data, s->frags[i].b.len);
    if (s->trailer)
        rc |= ss_buf_append_str(out, s->trailer);
    return rc == 0 && !s->failed;
}

static void slot_release(struct ss_reply *r)
{
    struct ss_mc_slot *s = (struct ss_mc_slot *)r;
    for (uint32_t i = 0; i < s->nfrags; i++)
        ss_buf_free(&s->frags[i].b);
    ss_buf_free(&s->line);
    ss_buf_free(&s->r.after);
    free(s);
}

static const struct ss_reply_ops mc_reply_ops = {slot_render, slot_release};

struct ss_mc_slot *ss_mc_slot_new(struct ss_conn *c, uint32_t nfrags,
                                  const struct ss_mc_get_mode *mode)
{
    struct ss_mc_slot *s = calloc(1, sizeof(*s) + (size_t)nfrags * sizeof(s->frags[0]));
    if (!s)
        return NULL;
    s->w = c->w;
    if (mode)
        s->mode = *mode;
    s->nfrags = nfrags;
    for (uint32_t i = 0; i < nfrags; i++)
        s->frags[i].slot = s;
    s->r.pending = 1; /* held while the command is still being read */
    if (ss_reply_push(c, &s->r, &mc_reply_ops)) {
        free(s);
        return NULL;
    }
    return s;
}

/* Run what f waits for again with the completed read, into f's fragment:
 * the key (get-like commands) or the kept request line (mg). */
static void rerun(struct ss_mc_slot *s, struct ss_mc_frag *f, struct ss_read *rd, bool request)
{
    struct ss_store_thread *t = &s->w->st;
    struct ss_conn *c = s->r.c;
    if (c) {
        struct ss_buf keep = ss_conn_out_borrow(c, f->b);
        ss_store_read_use(t, rd);
        if (request) {
            struct ss_mc_req rq;
            ss_mc_req_parse(&rq, s->line.data, s->line.len, NULL, 0, s->line.len);
            ss_mc_execute(c, &rq);
        } else if (ss_mc_get_key(c, f->key, f->nkey, &s->mode, 0) == -EIO) {
            s->read_failed = true;
        }
        ss_store_read_use(t, NULL);
        f->b = ss_conn_out_return(c, keep);
        if (ss_mc_out_failed())
            s->failed = true;
    }
    ss_store_read_release(t, rd);
    ss_reply_complete(s->w, &s->r);
}

static void key_read_done(void *arg, struct ss_read *rd)
{
    struct ss_mc_frag *f = arg;
    rerun(f->slot, f, rd, false);
}

void ss_mc_slot_park_key(struct ss_mc_slot *s, const char *key, size_t nkey, struct ss_read *rd)
{
    struct ss_mc_frag *f = &s->frags[s->used++];
    f->nkey = (uint8_t)nkey;
    memcpy(f->key, key, nkey);
    s->r.pending++;
    ss_store_read_on_done(rd, key_read_done, f);
}

void ss_mc_slot_take_answered(struct ss_mc_slot *s, struct ss_conn *c, size_t mark,
                              bool read_failed)
{
    struct ss_mc_frag *f = &s->frags[s->used++];
    if (ss_conn_out_move(c, mark, &f->b))
        s->failed = true; /* queued already: it closes the client when its turn comes */
    s->read_failed = read_failed;
}

void ss_mc_slot_get_key(struct ss_mc_slot *s, struct ss_conn *c, const char *key, size_t nkey)
{
    struct ss_mc_frag *f = &s->frags[s->used];
    struct ss_buf keep = ss_conn_out_borrow(c, f->b);
    int rc = ss_mc_get_key(c, key, nkey, &s->mode, SS_FIND_ASYNC);
    f->b = ss_conn_out_return(c, keep);
    if (rc == -EIO)
        s->read_failed = true;
    if (rc == -EINPROGRESS)
        ss_mc_slot_park_key(s, key, nkey, c->w->st.started);
    else
        s->used++;
}

void ss_mc_slot_seal(struct ss_conn *c, struct ss_mc_slot *s, const char *trailer)
{
    s->trailer = trailer;
    ss_reply_complete(c->w, &s->r); /* drop the hold */
}

static void request_read_done(void *arg, struct ss_read *rd)
{
    struct ss_mc_slot *s = arg;
    rerun(s, &s->frags[0], rd, true);
}

int ss_mc_defer_request(struct ss_conn *c, const struct ss_mc_req *rq, struct ss_read *rd)
{
    struct ss_mc_slot *s = ss_mc_slot_new(c, 1, NULL);
    if (!s) {
        ss_mc_reply(c, "SERVER_ERROR out of memory", false);
        return SS_EXEC_DONE; /* the read completes with nobody waiting */
    }
    if (ss_buf_append(&s->line, rq->line, rq->len)) {
        s->failed = true; /* queued already: it closes the client when its turn comes */
        ss_mc_slot_seal(c, s, NULL);
        return SS_EXEC_PENDING;
    }
    s->used = 1;
    s->r.pending++;
    ss_store_read_on_done(rd, request_read_done, s);
    ss_mc_slot_seal(c, s, NULL);
    return SS_EXEC_PENDING;
}

/* Start the read of key's record if it must come from the device (and may). */
static bool prefetch_key(struct ss_conn *c, const char *key, size_t nkey, struct ss_read **reads)
{
    struct ss_store_thread *t = &c->w->st;
    struct ss_item it;
    if (nkey == 0 || nkey > SS_KEY_MAX_LENGTH)
        return false;
    ss_store_lock(t, key, nkey);
    int rc = ss_store_find(t, key, nkey, &it, SS_FIND_VALUE | SS_FIND_NO_BUMP | SS_FIND_ASYNC);
    ss_store_unlock(t);
    if (rc != -EINPROGRESS)
        return false;
    ss_store_read_link(t->started, *reads);
    *reads = t->started;
    return true;
}

unsigned ss_mc_prefetch(struct ss_conn *c, const char *p, size_t len, struct ss_read **reads)
{
    unsigned started = 0;
    *reads = NULL;
    if (!c->w->st.io || c->w->st.use_read)
        return 0;
    const char *end = p + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl)
            break;
        size_t n = (size_t)(nl - p);
        if (n > 0 && nl[-1] == '\r')
            n--;
        struct ss_mc_req rq;
        ss_mc_req_parse(&rq, p, n, nl + 1, (size_t)(end - nl - 1), (size_t)(nl - p) + 1);
        if (rq.cmd == SS_MC_CMD_GET || rq.cmd == SS_MC_CMD_GETS || rq.cmd == SS_MC_CMD_BGET) {
            const char *pos = rq.tok[0].p + rq.tok[0].len, *key;
            size_t nkey;
            while (ss_mc_next_key(&pos, p + n, &key, &nkey))
                started += prefetch_key(c, key, nkey, reads);
        } else if (rq.cmd == SS_MC_CMD_MG && rq.meta_parsed && rq.meta.rc == 0 &&
                   rq.meta.value) {
            started += prefetch_key(c, rq.meta.key, rq.meta.nkey, reads);
        } else {
            break; /* what follows may depend on it: it runs as it comes */
        }
        p = nl + 1;
    }
    return started;
}
