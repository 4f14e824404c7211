/*
 * ss_px_cmd.c - memcached commands in proxy mode: what is answered locally,
 * what is forwarded to the key's owner and in which form.
 *
 * Reads (get/gets/mg without write-like flags) are answered locally on a
 * hit. Misses of a text get are fetched per owner as one batch of
 * `mg <key> v f c t k q` lines ended by `mn`, and the reply is assembled in
 * the client's key order. A miss of an mg is forwarded as the client sent it,
 * and so is an mg asking what only the owner knows (h, l, t: whether and
 * when the item was last read, and its own lifetime, which the local copy's
 * capped one is not). gat/gats and every write drop the local copy first
 * (drop_copy_before_write, the one rule: a read pipelined behind them misses
 * and queues behind them on the same back-end connection), then go to the
 * owner as the client sent them, less noreply (text) or q (meta), which the
 * appliance applies itself. Anything the local parser would refuse is handed
 * back to local execution (SS_EXEC_LOCAL), so error replies stay memcached's;
 * a refusal that changes the item at memcached (a set or ms over
 * item_size_max drops it) is also sent to the owner as a delete.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/ss_base64.h"
#include "common/ss_clock.h"
#include "common/ss_hash.h"
#include "ss_px_internal.h"
#include "server/ss_server.h"

#define KEY_TOKEN 1

static __thread struct ss_buf req; /* request being built; reused */

struct miss {
    const char *key;
    uint32_t nkey, frag, backend;
};
static __thread struct miss *misses;
static __thread size_t misses_cap;

static inline struct px_worker *pxw(struct ss_worker *w)
{
    return w->px;
}

/* The write being executed found a local copy to drop: only then does a set
 * keep its value (or with write_allocate). Else it costs only its forward. */
static __thread bool write_had_copy;
/* The copy a set-like write withdrew, with a reference: its op takes it
 * (ss_px_op_keep), for post_write to rewrite it without a second lookup; a
 * command that does not is done with it in ss_px_execute. */
static __thread struct ss_value_hold *write_held_copy;

/* Drop key's local copy (a fill in flight for it is then not kept either).
 * Returns whether there was one: an index delete is paid only then. A copy
 * kept in DRAM only is withdrawn, for post_write to rewrite in place; held,
 * if given, gets a reference to it (a fill's copy then becomes DRAM-only). */
bool ss_px_invalidate(struct ss_worker *w, const char *key, size_t nkey,
                      struct ss_value_hold **held)
{
    uint64_t h = ss_hash64(key, nkey);
    ss_store_lock_hash(&w->st, h);
    ss_px_epoch_bump(w->dp, ss_px_epoch_slot_hash(h));
    bool had = ss_store_withdraw(&w->st, key, nkey, held) == 0;
    ss_store_unlock(&w->st);
    return had;
}

bool ss_px_keep_written_value(struct ss_conn *c)
{
    return write_had_copy || pxw(c->w)->r->s.write_allocate;
}

/* The owner of key, or -1 after answering the client's SERVER_ERROR. */
int ss_px_cmd_route(struct ss_conn *c, const char *key, size_t nkey, bool noreply)
{
    struct px_routing *r = pxw(c->w)->r;
    const char *why = NULL;
    int b = ss_px_route(r, key, nkey, &why);
    if (b < 0) {
        char line[300];
        ss_px_route_error(r, key, nkey, why, line, sizeof(line));
        ss_mc_reply(c, line, noreply);
    }
    return b;
}

int ss_px_req_append(const void *bytes, size_t n)
{
    return ss_buf_append(&req, bytes, n);
}

/*
 * The command line to forward: as the client sent it, or less one token
 * index (skip: a noreply the proxy applies itself), rebuilt from its tokens.
 */
int ss_px_req_line(const struct ss_mc_req *rq, size_t skip)
{
    const struct ss_mc_tok *tok = rq->tok;
    size_t ntok = rq->ntok;
    req.len = 0;
    if (skip == SIZE_MAX)
        return ss_buf_append(&req, rq->line, rq->len) | ss_buf_append(&req, "\r\n", 2);
    int rc = 0;
    bool first = true;
    for (size_t i = 0; i + 1 < ntok; i++) {
        if (i == skip)
            continue;
        if (!first)
            rc |= ss_buf_append(&req, " ", 1);
        rc |= ss_buf_append(&req, tok[i].p, tok[i].len);
        first = false;
    }
    rc |= ss_buf_append(&req, "\r\n", 2);
    return rc;
}

/*
 * Forward req (already built, without the trailing mn) for key to backend b.
 * The reply goes to a new slot; noreply's slot is silent: it renders nothing
 * but holds the replies of the client's later commands until the owner has
 * answered, so that a client that has read any later reply (an `mn`, say)
 * knows the write is done, as with memcached direct, and another connection
 * of it then sees the write. Returns SS_EXEC_PENDING with the slot queued, or
 * SS_EXEC_DONE (the client was answered SERVER_ERROR, or a noreply's slot
 * could not be had: the write is still sent).
 */
int ss_px_send_req(struct ss_conn *c, int b, struct px_op *op, bool noreply)
{
    if (!op || (!op->one_line && ss_buf_append(&req, "mn\r\n", 4))) {
        if (op)
            ss_px_op_free(op);
        ss_mc_reply(c, "SERVER_ERROR out of memory", noreply);
        return SS_EXEC_DONE;
    }
    op->kind = PX_OP_RAW;
    op->slot = ss_px_slot_new(c, 0);
    if (!op->slot && !noreply) {
        ss_px_op_free(op);
        ss_mc_reply(c, "SERVER_ERROR out of memory", false);
        return SS_EXEC_DONE;
    }
    if (op->slot) {
        op->slot->r.pending = 1;
        op->slot->silent = noreply;
    }
    int held = op->slot ? SS_EXEC_PENDING : SS_EXEC_DONE;
    struct px_bconn *bc = ss_px_bconn_for(c->w, (uint32_t)b, c);
    if (!bc) {
        /* Completion only queues the slot for delivery: safe from here. */
        ss_px_op_done(c->w, op, "SERVER_ERROR out of memory\r\n");
        return held;
    }
    ss_px_bconn_send(c->w, bc, op, req.data, req.len);
    return held;
}

/*
 * Remember the key (and for a set, the value) to apply locally on success.
 * A write also counts itself in flight for the key's slot until it is freed:
 * post_write keeps a value locally only when no other write to the slot was
 * issued, completed, or still in flight meanwhile, since the back end may
 * apply concurrent writes in either order.
 */
int ss_px_op_keep(struct ss_dataplane *dp, struct px_op *op, const char *key, size_t nkey,
                  const char *val, size_t vlen)
{
    if (op->post == PX_POST_SET || op->post == PX_POST_INVALIDATE) {
        op->lhash = ss_hash64(key, nkey);
        uint32_t es = ss_px_epoch_slot_hash(op->lhash);
        op->in_flight = ss_px_writes_in_flight(dp, es);
        atomic_fetch_add(op->in_flight, 1);
        op->lepoch = ss_px_epoch_get(dp, es);
    }
    if (op->post == PX_POST_SET) {
        op->held = write_held_copy;
        write_held_copy = NULL;
    }
    return ss_px_op_keep_key(op, key, nkey, val, vlen);
}

/* "<cmd><key>\r\n" in req; binary: key is a meta key's decoded bytes, sent
 * base64-encoded with b. 0 or -ENOMEM. */
static int key_line(const char *cmd, const char *key, size_t nkey, bool binary)
{
    char enc[SS_BASE64_ENCODED_LEN(SS_KEY_MAX_LENGTH)];
    req.len = 0;
    int rc = ss_buf_append_str(&req, cmd);
    if (binary) {
        size_t n = ss_base64_encode((const unsigned char *)key, nkey, enc);
        rc |= ss_buf_append(&req, enc, n) | ss_buf_append(&req, " b", 2);
    } else {
        rc |= ss_buf_append(&req, key, nkey);
    }
    return rc | ss_buf_append(&req, "\r\n", 2);
}

/*
 * A write refused here that memcached still applies as a delete (a set too
 * large to store): delete the item at its owner too, the reply dropped (the
 * client gets the local refusal). binary: as for key_line.
 */
void ss_px_drop_at_owner(struct ss_conn *c, const char *key, size_t nkey, bool binary)
{
    const char *why = NULL;
    int b = ss_px_route(pxw(c->w)->r, key, nkey, &why);
    struct px_op *op = b < 0 ? NULL : ss_px_op_new(PX_OP_RAW);
    if (!op)
        return; /* nowhere to send it, or no memory: the local refusal stands */
    op->post = PX_POST_INVALIDATE;
    if (key_line("md ", key, nkey, binary) || ss_px_op_keep(c->w->dp, op, key, nkey, NULL, 0)) {
        ss_px_op_free(op);
        return;
    }
    op->one_line = 1; /* HD or NF */
    ss_px_send_req(c, b, op, true);
}

/* A read answered from a copy kept from a write (SS_MC_ITEM_UNREAD_AT_OWNER):
 * a plain `mg <key>` makes the owner mark the item fetched (`mg h` shows it),
 * its reply (HD or EN) dropped. binary: as for key_line. */
void ss_px_mark_read_at_owner(struct ss_conn *c, const char *key, size_t nkey, bool binary)
{
    const char *why = NULL;
    int b = ss_px_route(pxw(c->w)->r, key, nkey, &why);
    struct px_op *op = b < 0 ? NULL : ss_px_op_new(PX_OP_RAW);
    if (!op)
        return; /* nowhere to send it, or no memory: only `h` can tell */
    if (key_line("mg ", key, nkey, binary)) {
        ss_px_op_free(op);
        return;
    }
    op->one_line = 1;
    ss_px_send_req(c, b, op, true);
}

static void out_value(struct ss_buf *b, const char *key, size_t nkey, const struct ss_item *it,
                      const char *data, size_t n, bool with_cas, bool *failed)
{
    char hdr[SS_MC_VALUE_HDR_MAX];
    size_t len = ss_mc_value_header(hdr, key, nkey, it->flags, n, with_cas ? &it->cas : NULL);
    if (ss_buf_append(b, hdr, len) || ss_buf_append(b, data, n) ||
        ss_buf_append(b, "\r\n", 2))
        *failed = true;
}

/* Send one batch per owner for the misses [0, n) of slot s. */
static void send_batches(struct ss_conn *c, struct px_slot *s, size_t n, bool want_cas,
                         const struct ss_mc_tok *exptok)
{
    struct px_routing *r = pxw(c->w)->r;
    s->r.pending = 1; /* held while sending: a batch cannot complete meanwhile anyway */
    for (size_t i = 0; i < n; i++) {
        if (misses[i].backend == UINT32_MAX)
            continue;
        uint32_t b = misses[i].backend;
        uint32_t cnt = 0;
        for (size_t j = i; j < n; j++)
            cnt += misses[j].backend == b;
        struct px_op *op = ss_px_op_new(PX_OP_GETS);
        if (!op || ss_px_op_items(op, cnt)) {
            if (op)
                ss_px_op_free(op);
            s->error = true;
            ss_buf_append_str(&s->err, "SERVER_ERROR out of memory\r\n");
            break;
        }
        req.len = 0;
        for (size_t j = i; j < n; j++) {
            if (misses[j].backend != b)
                continue;
            struct px_item *it = &op->items[op->nitems++];
            it->slot = s;
            it->frag = misses[j].frag;
            it->nkey = (uint16_t)misses[j].nkey;
            memcpy(it->key, misses[j].key, misses[j].nkey);
            it->want_cas = want_cas;
            it->no_fill = exptok != NULL;
            it->epoch = ss_px_epoch_get(c->w->dp, ss_px_epoch_slot(it->key, it->nkey));
            ss_buf_append(&req, "mg ", 3);
            ss_buf_append(&req, it->key, it->nkey);
            ss_buf_append(&req, " v f c t k q", 12);
            if (exptok) {
                ss_buf_append(&req, " T", 2);
                ss_buf_append(&req, exptok->p, exptok->len);
            }
            ss_buf_append(&req, "\r\n", 2);
            misses[j].backend = UINT32_MAX;
        }
        if (ss_buf_append(&req, "mn\r\n", 4)) {
            ss_px_op_free(op);
            s->error = true;
            break;
        }
        op->slot = s;
        s->r.pending++;
        struct px_bconn *bc = ss_px_bconn_for(c->w, b, c);
        if (bc)
            ss_px_bconn_send(c->w, bc, op, req.data, req.len);
        else
            ss_px_op_done(c->w, op, "SERVER_ERROR out of memory\r\n");
    }
    (void)r;
    ss_px_slot_release(c->w, s); /* drop the hold */
}

/*
 * A get naming a key that may be stale at its owner goes there as the client
 * sent it: fetched with mg, a stale item would hand our fetch its win token,
 * which memcached gives to no text get. Nothing is answered or kept locally.
 *
 * A get with a too-long key: memcached reads (marks fetched, touches) the
 * keys before it, then answers only the error. Those keys go to their owner,
 * the error is answered here: sent whole, such a get makes memcached 1.6 lose
 * the previous command's reply when both share a read (pipelining does that).
 *
 * SS_EXEC_MISS when the keys have several owners (each is then fetched with
 * mg as usual: the one case where a stale key's win token is lost), or none.
 */
static int px_get_as_sent(struct ss_conn *c, struct ss_mc_req *rq, const char *pos,
                          const char *end, bool touches)
{
    const char *key, *why = NULL, *cut = NULL;
    size_t nkey;
    int owner = -1;
    for (const char *p = pos; ss_mc_next_key(&p, end, &key, &nkey);) {
        if (nkey > SS_KEY_MAX_LENGTH) {
            cut = key;
            break;
        }
        int b = ss_px_route(pxw(c->w)->r, key, nkey, &why);
        if (b < 0 || (owner >= 0 && b != owner))
            return SS_EXEC_MISS;
        owner = b;
        if (touches)
            ss_px_invalidate(c->w, key, nkey, NULL);
    }
    if (owner < 0)
        return SS_EXEC_MISS;
    struct px_op *op = ss_px_op_new(PX_OP_RAW);
    if (op && cut) {
        size_t n = (size_t)(cut - rq->line);
        while (n && rq->line[n - 1] == ' ')
            n--;
        req.len = 0;
        op->answer_bad_line = 1;
        if (ss_buf_append(&req, rq->line, n) || ss_buf_append(&req, "\r\n", 2)) {
            ss_px_op_free(op);
            op = NULL;
        }
    } else if (op && ss_px_req_line(rq, SIZE_MAX)) {
        ss_px_op_free(op);
        op = NULL;
    }
    return ss_px_send_req(c, owner, op, false);
}

/*
 * get/gets/gat/gats: hits before the first miss are answered at once; from
 * the first miss on, the reply is a slot of per-key fragments. Returns
 * SS_EXEC_LOCAL when a key is too long (the local parser answers the error).
 */
static int px_get(struct ss_conn *c, struct ss_mc_req *rq, const char *pos, const char *end,
                  bool want_cas, const struct ss_mc_tok *exptok)
{
    struct ss_worker *w = c->w;
    struct ss_counters *ctr = &w->ctr;
    size_t nkeys = 0;
    bool stale = false;
    for (const char *p = pos; p < end;) {
        while (p < end && *p == ' ')
            p++;
        if (p == end)
            break;
        const char *k = p;
        while (p < end && *p != ' ')
            p++;
        if ((size_t)(p - k) > SS_KEY_MAX_LENGTH) {
            /* memcached reads the keys before a too-long one (marking them
             * fetched) and then answers the error: let their owner do both. */
            int rc = px_get_as_sent(c, rq, pos, end, exptok != NULL);
            return rc == SS_EXEC_MISS ? SS_EXEC_LOCAL : rc;
        }
        stale = stale || ss_px_stale_maybe(w->dp, ss_px_epoch_slot(k, (size_t)(p - k)));
        nkeys++;
    }
    if (stale) {
        int rc = px_get_as_sent(c, rq, pos, end, exptok != NULL);
        if (rc != SS_EXEC_MISS)
            return rc;
    }
    if (misses_cap < nkeys) {
        struct miss *m = realloc(misses, nkeys * sizeof(*m));
        if (!m) {
            ss_mc_reply(c, "SERVER_ERROR out of memory", false);
            return SS_EXEC_DONE;
        }
        misses = m;
        misses_cap = nkeys;
    }
    struct px_slot *s = NULL;
    size_t nmiss = 0, k = 0;
    uint32_t fi = 0;
    bool failed = false;
    for (;; k++) {
        const char *key;
        size_t nkey;
        if (!ss_mc_next_key(&pos, end, &key, &nkey))
            break;
        if (!exptok) {
            struct ss_item it;
            ss_store_lock(&w->st, key, nkey);
            /* A local copy that only the device holds, and not in the page
             * cache, is not waited for: the owning back end has it in RAM. */
            int rc = ss_store_find(&w->st, key, nkey, &it, SS_FIND_VALUE | SS_FIND_NO_WAIT);
            if (rc == -EAGAIN)
                ctr->device_reads_forwarded++;
            ctr->cmd_get++;
            if (rc == 0 && ss_mc_local_answers(it.bits, want_cas)) {
                out_value(s ? &s->frags[fi++].b : &c->out, key, nkey, &it, w->st.value,
                          w->st.value_len, want_cas, &failed);
                ss_mc_count_hit_tier(c, &it);
                ctr->get_hits++;
                bool unread = it.bits & SS_MC_ITEM_UNREAD_AT_OWNER;
                if (unread) {
                    it.bits &= ~SS_MC_ITEM_UNREAD_AT_OWNER;
                    unread = ss_store_update_meta(&w->st, key, nkey, &it) == 0;
                }
                ss_store_unlock(&w->st);
                if (unread)
                    ss_px_mark_read_at_owner(c, key, nkey, false);
                continue;
            }
            if (rc)
                ss_mc_count_miss(c, rc);
            ctr->get_misses++;
            ss_store_unlock(&w->st);
        } else {
            ctr->cmd_touch++;
            ss_px_invalidate(w, key, nkey, NULL);
        }
        if (!s) {
            s = ss_px_slot_new(c, (uint32_t)(nkeys - k));
            if (!s) {
                ss_mc_reply(c, "SERVER_ERROR out of memory", false);
                return SS_EXEC_DONE;
            }
            s->trailer = "END\r\n";
        }
        const char *why = NULL;
        int b = ss_px_route(pxw(w)->r, key, nkey, &why);
        if (b < 0) {
            char line[300];
            ss_px_route_error(pxw(w)->r, key, nkey, why, line, sizeof(line) - 2);
            if (!s->error) {
                s->error = true;
                ss_buf_append_str(&s->err, line);
                ss_buf_append(&s->err, "\r\n", 2);
            }
            fi++;
            continue;
        }
        misses[nmiss++] = (struct miss){key, (uint32_t)nkey, fi++, (uint32_t)b};
    }
    if (failed)
        c->close_after_write = 1;
    if (!s) {
        ss_mc_out(c, "END\r\n", 5);
        return SS_EXEC_DONE;
    }
    send_batches(c, s, nmiss, want_cas, exptok);
    return SS_EXEC_PENDING;
}

/* set/add/replace/append/prepend/cas: forward with the value. */
static int px_update(struct ss_conn *c, struct ss_mc_req *rq)
{
    const struct ss_mc_tok *tok = rq->tok;
    bool is_cas = rq->cmd == SS_MC_CMD_CAS;
    bool noreply = rq->noreply;
    uint32_t flags;
    int32_t exptime, vlen;
    uint64_t cas;
    if (tok[KEY_TOKEN].len > SS_KEY_MAX_LENGTH || !ss_mc_parse_u32(tok[2].p, tok[2].len, &flags) ||
        !ss_mc_parse_i32(tok[3].p, tok[3].len, &exptime) ||
        !ss_mc_parse_i32(tok[4].p, tok[4].len, &vlen) ||
        (is_cas && !ss_mc_parse_u64(tok[5].p, tok[5].len, &cas)) || vlen < 0 ||
        vlen > INT32_MAX - 2)
        return SS_EXEC_LOCAL;
    if (!ss_mc_item_fits(c, tok[KEY_TOKEN].len, flags, (size_t)vlen)) {
        /* memcached drops the item of a set too large to store (add, replace,
         * append, prepend and cas leave it): so must its owner. */
        if (rq->cmd == SS_MC_CMD_SET)
            ss_px_drop_at_owner(c, tok[KEY_TOKEN].p, tok[KEY_TOKEN].len, false);
        return SS_EXEC_LOCAL; /* the local parser answers, and swallows the value */
    }
    size_t want = (size_t)vlen + 2;
    if (rq->avail < want) {
        c->rneed = rq->line_bytes + want;
        return SS_EXEC_AGAIN;
    }
    const char *data = rq->data;
    if (data[vlen] != '\r' || data[vlen + 1] != '\n')
        return SS_EXEC_LOCAL;
    rq->extra = want;
    const char *key = tok[KEY_TOKEN].p;
    size_t nkey = tok[KEY_TOKEN].len;
    c->w->ctr.cmd_set++;
    int b = ss_px_cmd_route(c, key, nkey, noreply);
    if (b < 0)
        return SS_EXEC_DONE;
    bool sets = rq->cmd != SS_MC_CMD_APPEND && rq->cmd != SS_MC_CMD_PREPEND &&
                ss_px_keep_written_value(c);
    struct px_op *op = ss_px_op_new(PX_OP_RAW);
    if (op) {
        op->post = sets ? PX_POST_SET : PX_POST_INVALIDATE;
        op->lflags = flags;
        op->lexptime = ss_mc_exptime(exptime, ss_clock_unix_seconds());
        if (ss_px_op_keep(c->w->dp, op, key, nkey, sets ? data : NULL, (size_t)vlen)) {
            ss_px_op_free(op);
            op = NULL;
        }
    }
    if (ss_px_req_line(rq, noreply ? rq->ntok - 2 : SIZE_MAX) ||
        ss_buf_append(&req, data, want)) {
        if (op)
            ss_px_op_free(op);
        op = NULL;
    }
    /* A well-formed storage command (the local parser refused the rest) gets
     * exactly one reply line, so it needs no `mn`: the back end parses one
     * command, not two. */
    if (op)
        op->one_line = 1;
    return ss_px_send_req(c, b, op, noreply);
}

/* incr/decr/delete/touch: forward the line, the local copy is dropped. */
static int px_simple(struct ss_conn *c, struct ss_mc_req *rq)
{
    const struct ss_mc_tok *tok = rq->tok;
    size_t ntok = rq->ntok;
    bool noreply = rq->noreply;
    if (tok[KEY_TOKEN].len > SS_KEY_MAX_LENGTH)
        return SS_EXEC_LOCAL;
    if (rq->cmd == SS_MC_CMD_DELETE) {
        if (ntok > 3) {
            bool zero = ss_mc_tok_is(&tok[2], "0");
            if (!((ntok == 4 && (zero || noreply)) || (ntok == 5 && zero && noreply)))
                return SS_EXEC_LOCAL;
        }
    } else {
        bool touch = rq->cmd == SS_MC_CMD_TOUCH;
        uint64_t d;
        int32_t e;
        if (touch ? !ss_mc_parse_i32(tok[2].p, tok[2].len, &e)
                  : !ss_mc_parse_u64(tok[2].p, tok[2].len, &d))
            return SS_EXEC_LOCAL;
        if (touch)
            c->w->ctr.cmd_touch++;
    }
    const char *key = tok[KEY_TOKEN].p;
    size_t nkey = tok[KEY_TOKEN].len;
    int b = ss_px_cmd_route(c, key, nkey, noreply);
    if (b < 0)
        return SS_EXEC_DONE;
    struct px_op *op = ss_px_op_new(PX_OP_RAW);
    if (op) {
        op->post = PX_POST_INVALIDATE;
        if (ss_px_op_keep(c->w->dp, op, key, nkey, NULL, 0)) {
            ss_px_op_free(op);
            op = NULL;
        }
    }
    if (ss_px_req_line(rq, noreply ? ntok - 2 : SIZE_MAX) && op) {
        ss_px_op_free(op);
        op = NULL;
    }
    if (op) /* one reply line: a number, NOT_FOUND, DELETED, TOUCHED or an error */
        op->one_line = 1;
    return ss_px_send_req(c, b, op, noreply);
}

/* flush_all: refused unless allowed; then every back end, then locally. */
static int px_flush_all(struct ss_conn *c, struct ss_mc_req *rq)
{
    struct px_routing *r = pxw(c->w)->r;
    bool noreply = rq->noreply;
    if (!r->s.allow_flush_all) {
        ss_mc_reply(c, "SERVER_ERROR flush_all is disabled in proxy mode; set "
                       "routing.allow_flush_all", noreply);
        return SS_EXEC_DONE;
    }
    /* A fill sent before the flush may return after it, with a value the
     * flush removed at its owner. */
    ss_px_epoch_bump_all(c->w->dp);
    for (uint32_t b = 0; b < r->nbackends; b++) {
        if (ss_px_req_line(rq, noreply ? rq->ntok - 2 : SIZE_MAX))
            break;
        ss_px_send_req(c, (int)b, ss_px_op_new(PX_OP_RAW), true);
    }
    return SS_EXEC_LOCAL; /* the local store, and the reply */
}

/*
 * The local copy's one rule: a command that may change its key at the owner
 * drops the local copy before anything else, whether it is then forwarded or
 * refused here, whatever its outcome. Only a reply that proves the new value
 * puts a copy back (post_write, ss_px_forward.c). gat/gats (several keys) and
 * mg with N, T or R drop theirs key by key as they go.
 */
/* Commands whose success may put the value they carry back as the local
 * copy (post_write): only they withdraw a copy with a reference to rewrite. */
static bool may_store_value(enum ss_mc_cmd cmd)
{
    return cmd == SS_MC_CMD_SET || cmd == SS_MC_CMD_ADD || cmd == SS_MC_CMD_REPLACE ||
           cmd == SS_MC_CMD_CAS || cmd == SS_MC_CMD_MS;
}

static void drop_copy_before_write(struct ss_conn *c, struct ss_mc_req *rq)
{
    write_had_copy = false;
    switch (rq->cmd) {
    case SS_MC_CMD_SET:
    case SS_MC_CMD_ADD:
    case SS_MC_CMD_REPLACE:
    case SS_MC_CMD_APPEND:
    case SS_MC_CMD_PREPEND:
    case SS_MC_CMD_CAS:
    case SS_MC_CMD_INCR:
    case SS_MC_CMD_DECR:
    case SS_MC_CMD_DELETE:
    case SS_MC_CMD_TOUCH:
        if (rq->ntok > KEY_TOKEN + 1 && rq->tok[KEY_TOKEN].len <= SS_KEY_MAX_LENGTH)
            write_had_copy =
                ss_px_invalidate(c->w, rq->tok[KEY_TOKEN].p, rq->tok[KEY_TOKEN].len,
                                 may_store_value(rq->cmd) ? &write_held_copy : NULL);
        return;
    case SS_MC_CMD_MS:
    case SS_MC_CMD_MD:
    case SS_MC_CMD_MA:
        if (ss_mc_meta_ok(rq))
            write_had_copy = ss_px_invalidate(c->w, rq->meta.key, rq->meta.nkey,
                                              may_store_value(rq->cmd) ? &write_held_copy : NULL);
        return;
    default:
        return;
    }
}

static int execute(struct ss_conn *c, struct ss_mc_req *rq);

/* The executor of a worker in proxy mode, TCP (see ss_px.h). */
int ss_px_execute(struct ss_conn *c, struct ss_mc_req *rq)
{
    drop_copy_before_write(c, rq);
    int rc = execute(c, rq);
    if (write_held_copy) { /* no set op took it: refused, noreply, or not a set */
        ss_store_value_put(write_held_copy);
        write_held_copy = NULL;
    }
    return rc;
}

static int execute(struct ss_conn *c, struct ss_mc_req *rq)
{
    const struct ss_mc_tok *tok = rq->tok;
    switch (rq->cmd) {
    case SS_MC_CMD_MG:
        return ss_px_mg(c, rq);
    case SS_MC_CMD_MS:
    case SS_MC_CMD_MD:
    case SS_MC_CMD_MA:
        return ss_px_meta_write(c, rq);
    case SS_MC_CMD_GET:
    case SS_MC_CMD_BGET:
    case SS_MC_CMD_GETS:
        return px_get(c, rq, tok[0].p + tok[0].len, rq->line + rq->len,
                      rq->cmd == SS_MC_CMD_GETS, NULL);
    case SS_MC_CMD_GAT:
    case SS_MC_CMD_GATS: {
        int32_t e;
        if (rq->ntok < 4 || !ss_mc_parse_i32(tok[1].p, tok[1].len, &e))
            return SS_EXEC_LOCAL;
        return px_get(c, rq, tok[1].p + tok[1].len, rq->line + rq->len,
                      rq->cmd == SS_MC_CMD_GATS, &tok[1]);
    }
    case SS_MC_CMD_SET:
    case SS_MC_CMD_ADD:
    case SS_MC_CMD_REPLACE:
    case SS_MC_CMD_APPEND:
    case SS_MC_CMD_PREPEND:
    case SS_MC_CMD_CAS:
        return px_update(c, rq);
    case SS_MC_CMD_INCR:
    case SS_MC_CMD_DECR:
    case SS_MC_CMD_DELETE:
    case SS_MC_CMD_TOUCH:
        return px_simple(c, rq);
    case SS_MC_CMD_FLUSH_ALL:
        return px_flush_all(c, rq);
    default:
        return SS_EXEC_LOCAL;
    }
}

/*
 * Proxy mode over UDP: reads are answered from the local copy (a local miss is
 * a miss) and everything else is refused, since a datagram has no connection
 * to hold a back end's reply, and a write kept only locally would leave the
 * back end, the source of truth, behind.
 */
int ss_px_execute_udp(struct ss_conn *c, struct ss_mc_req *rq)
{
    bool reads = rq->cmd == SS_MC_CMD_UNKNOWN ||
                 (ss_mc_cmd_table[rq->cmd].flags & SS_MC_CMD_UDP_READ);
    /* mg T (touch) and N (vivify) write. */
    if (rq->cmd == SS_MC_CMD_MG && rq->meta_parsed &&
        (ss_mc_meta_has(&rq->meta, 'T') || ss_mc_meta_has(&rq->meta, 'N')))
        reads = false;
    if (reads)
        return SS_EXEC_LOCAL;
    ss_mc_reply(c, "SERVER_ERROR proxy mode answers only get, gets and mg over UDP; "
                   "send this command over TCP", false);
    rq->extra = rq->avail; /* drop the rest of the datagram (a value would parse as commands) */
    return SS_EXEC_DONE;
}
