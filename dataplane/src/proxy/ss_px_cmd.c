/*
 * ss_px_cmd.c - memcached commands in proxy mode: what is answered locally,
 * what is forwarded to the key's owner and in which form.
 *
 * Reads (get/gets/mg without write-like flags) are answered locally on a
 * hit. Misses of a text get are fetched per owner as one batch of
 * `mg <key> v f c t k q` lines ended by `mn`, and the reply is assembled in
 * the client's key order. A miss of an mg is forwarded as the client sent it.
 * gat/gats and every write invalidate the local copy first (so a read
 * pipelined behind them misses and queues behind them on the same back-end
 * connection), then go to the owner as the client sent them, less noreply
 * (text) or q (meta), which the appliance applies itself. Anything the local
 * parser would refuse is left to it (SS_PX_PASS), so error replies stay
 * memcached's.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/ss_base64.h"
#include "common/ss_clock.h"
#include "ss_px_internal.h"
#include "server/ss_server_internal.h"

#define KEY_TOKEN 1
#define R_DONE 0
#define R_AGAIN 1

static __thread struct ss_buf req; /* request being built; reused */

struct miss {
    const char *key;
    uint32_t nkey, frag, backend;
};
static __thread struct miss *misses;
static __thread size_t misses_cap;

static inline struct px_worker *pxw(struct ss_worker *w)
{
    return &((struct px_global *)w->dp->px)->workers[w->id];
}

/* Drop the local copy (a write is on its way) and move the key's epoch. */
static void invalidate(struct ss_worker *w, const char *key, size_t nkey)
{
    ss_store_lock(&w->st, key, nkey);
    ss_px_epoch_bump(w->dp, ss_px_epoch_slot(key, nkey));
    ss_store_forget(&w->st, key, nkey);
    ss_store_unlock(&w->st);
}

/* "SERVER_ERROR backend <owner> <why>" (no CRLF) for an unroutable key. */
static void route_error(const struct px_routing *r, const char *key, size_t nkey,
                        const char *why, char *line, size_t n)
{
    uint32_t o = ss_ring_lookup(&r->rings[0].view, ss_hash_key(r->s.hash, key, nkey));
    snprintf(line, n, "SERVER_ERROR backend %s %s", o < r->nbackends ? r->backends[o].name : "?",
             why ? why : "down");
}

/* The owner of key, or -1 after answering the client's SERVER_ERROR. */
static int route(struct ss_conn *c, const char *key, size_t nkey, bool noreply)
{
    struct px_routing *r = pxw(c->w)->r;
    const char *why = NULL;
    int b = ss_px_route(r, key, nkey, &why);
    if (b < 0) {
        char line[300];
        route_error(r, key, nkey, why, line, sizeof(line));
        ss_mc_reply(c, line, noreply);
    }
    return b;
}


/* Rebuild the command line from its tokens, less one token index (skip). */
static int req_line(struct ss_mc_tok *tok, size_t ntok, size_t skip, bool skip_q)
{
    req.len = 0;
    int rc = 0;
    bool first = true;
    for (size_t i = 0; i + 1 < ntok; i++) {
        if (i == skip || (skip_q && i > KEY_TOKEN && tok[i].len == 1 && tok[i].p[0] == 'q'))
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
 * The reply goes to a new slot unless noreply. Returns 0 or -ENOMEM (the
 * client is answered SERVER_ERROR).
 */
static int forward(struct ss_conn *c, int b, struct px_op *op, bool noreply)
{
    if (!op || (!op->one_line && ss_buf_append(&req, "mn\r\n", 4))) {
        if (op)
            ss_px_op_free(op);
        ss_mc_reply(c, "SERVER_ERROR out of memory", noreply);
        return -ENOMEM;
    }
    op->kind = PX_OP_RAW;
    if (!noreply) {
        op->slot = ss_px_slot_new(c, 0);
        if (!op->slot) {
            ss_px_op_free(op);
            ss_mc_reply(c, "SERVER_ERROR out of memory", false);
            return -ENOMEM;
        }
        op->slot->pending = 1;
    }
    struct px_bconn *bc = ss_px_bconn_for(c->w, (uint32_t)b, c);
    if (!bc) {
        /* Completion only queues the slot for delivery: safe from here. */
        ss_px_op_done(c->w, op, "SERVER_ERROR out of memory\r\n");
        return -ENOMEM;
    }
    ss_px_bconn_send(c->w, bc, op, req.data, req.len);
    return 0;
}

/*
 * Remember the key (and for a set, the value) to apply locally on success.
 * A write also counts itself in flight for the key's slot until it is freed:
 * post_write keeps a value locally only when no other write to the slot was
 * issued, completed, or still in flight meanwhile, since the back end may
 * apply concurrent writes in either order.
 */
static int op_keep(struct ss_dataplane *dp, struct px_op *op, const char *key, size_t nkey,
                   const char *val, size_t vlen)
{
    if (op->post == PX_POST_SET || op->post == PX_POST_INVALIDATE) {
        uint32_t es = ss_px_epoch_slot(key, nkey);
        op->in_flight = ss_px_writes_in_flight(dp, es);
        atomic_fetch_add(op->in_flight, 1);
        op->lepoch = ss_px_epoch_get(dp, es);
    }
    return ss_px_op_keep_key(op, key, nkey, val, vlen);
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
    s->pending = 1; /* held while sending: a batch cannot complete meanwhile anyway */
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
        s->pending++;
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
 * get/gets/gat/gats: hits before the first miss are answered at once; from
 * the first miss on, the reply is a slot of per-key fragments. Returns
 * SS_PX_PASS when a key is too long (the local parser answers the error).
 */
static int px_get(struct ss_conn *c, const char *pos, const char *end, bool want_cas,
                  const struct ss_mc_tok *exptok)
{
    struct ss_worker *w = c->w;
    struct ss_counters *ctr = &w->ctr;
    size_t nkeys = 0;
    for (const char *p = pos; p < end;) {
        while (p < end && *p == ' ')
            p++;
        if (p == end)
            break;
        const char *k = p;
        while (p < end && *p != ' ')
            p++;
        if ((size_t)(p - k) > SS_KEY_MAX_LENGTH)
            return SS_PX_PASS;
        nkeys++;
    }
    if (misses_cap < nkeys) {
        struct miss *m = realloc(misses, nkeys * sizeof(*m));
        if (!m) {
            ss_mc_reply(c, "SERVER_ERROR out of memory", false);
            return R_DONE;
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
            int rc = ss_store_find(&w->st, key, nkey, &it, SS_FIND_VALUE);
            ctr->cmd_get++;
            if (rc == 0 && !(want_cas && (it.bits & PX_ITEM_CAS_UNKNOWN))) {
                out_value(s ? &s->frags[fi++].b : &c->out, key, nkey, &it, w->st.value,
                          w->st.value_len, want_cas, &failed);
                ss_mc_count_hit_tier(c, &it);
                ctr->get_hits++;
                ss_store_unlock(&w->st);
                continue;
            }
            if (rc)
                ss_mc_count_miss(c, rc);
            ctr->get_misses++;
            ss_store_unlock(&w->st);
        } else {
            ctr->cmd_touch++;
            invalidate(w, key, nkey);
        }
        if (!s) {
            s = ss_px_slot_new(c, (uint32_t)(nkeys - k));
            if (!s) {
                ss_mc_reply(c, "SERVER_ERROR out of memory", false);
                return R_DONE;
            }
            s->trailer = "END\r\n";
        }
        const char *why = NULL;
        int b = ss_px_route(pxw(w)->r, key, nkey, &why);
        if (b < 0) {
            char line[300];
            route_error(pxw(w)->r, key, nkey, why, line, sizeof(line) - 2);
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
        return R_DONE;
    }
    send_batches(c, s, nmiss, want_cas, exptok);
    return R_DONE;
}

/* set/add/replace/append/prepend/cas: forward with the value. */
static int px_update(struct ss_conn *c, struct ss_mc_tok *tok, size_t ntok, const char *data,
                     size_t avail, size_t line_bytes, size_t *extra)
{
    const struct ss_mc_tok *cmd = &tok[0];
    bool is_cas = ss_mc_tok_is(cmd, "cas");
    if (is_cas ? (ntok != 7 && ntok != 8) : (ntok != 6 && ntok != 7))
        return SS_PX_PASS;
    bool noreply = ntok >= 2 && ss_mc_tok_is(&tok[ntok - 2], "noreply");
    uint32_t flags;
    int32_t exptime, vlen;
    uint64_t cas;
    if (tok[KEY_TOKEN].len > SS_KEY_MAX_LENGTH || !ss_mc_parse_u32(tok[2].p, tok[2].len, &flags) ||
        !ss_mc_parse_i32(tok[3].p, tok[3].len, &exptime) ||
        !ss_mc_parse_i32(tok[4].p, tok[4].len, &vlen) ||
        (is_cas && !ss_mc_parse_u64(tok[5].p, tok[5].len, &cas)) || vlen < 0 ||
        vlen > INT32_MAX - 2 || !ss_mc_item_fits(c, tok[KEY_TOKEN].len, flags, (size_t)vlen))
        return SS_PX_PASS;
    size_t want = (size_t)vlen + 2;
    if (avail < want) {
        c->rneed = line_bytes + want;
        return R_AGAIN;
    }
    if (data[vlen] != '\r' || data[vlen + 1] != '\n')
        return SS_PX_PASS;
    *extra = want;
    const char *key = tok[KEY_TOKEN].p;
    size_t nkey = tok[KEY_TOKEN].len;
    c->w->ctr.cmd_set++;
    invalidate(c->w, key, nkey);
    int b = route(c, key, nkey, noreply);
    if (b < 0)
        return R_DONE;
    bool sets = !ss_mc_tok_is(cmd, "append") && !ss_mc_tok_is(cmd, "prepend");
    struct px_op *op = ss_px_op_new(PX_OP_RAW);
    if (op) {
        op->post = sets ? PX_POST_SET : PX_POST_INVALIDATE;
        op->lflags = flags;
        op->lexptime = ss_mc_exptime(exptime, ss_clock_unix_seconds());
        if (op_keep(c->w->dp, op, key, nkey, sets ? data : NULL, (size_t)vlen)) {
            ss_px_op_free(op);
            op = NULL;
        }
    }
    if (req_line(tok, ntok, noreply ? ntok - 2 : SIZE_MAX, false) ||
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
    forward(c, b, op, noreply);
    return R_DONE;
}

/* incr/decr/delete/touch: forward the line, the local copy is dropped. */
static int px_simple(struct ss_conn *c, struct ss_mc_tok *tok, size_t ntok)
{
    const struct ss_mc_tok *cmd = &tok[0];
    bool noreply = ntok >= 2 && ss_mc_tok_is(&tok[ntok - 2], "noreply");
    if (tok[KEY_TOKEN].len > SS_KEY_MAX_LENGTH)
        return SS_PX_PASS;
    if (ss_mc_tok_is(cmd, "delete")) {
        if (ntok < 3 || ntok > 5)
            return SS_PX_PASS;
        if (ntok > 3) {
            bool zero = ss_mc_tok_is(&tok[2], "0");
            if (!((ntok == 4 && (zero || noreply)) || (ntok == 5 && zero && noreply)))
                return SS_PX_PASS;
        }
    } else {
        if (ntok != 4 && ntok != 5)
            return SS_PX_PASS;
        uint64_t d;
        int32_t e;
        if (cmd->p[0] == 't' ? !ss_mc_parse_i32(tok[2].p, tok[2].len, &e)
                             : !ss_mc_parse_u64(tok[2].p, tok[2].len, &d))
            return SS_PX_PASS;
        if (cmd->p[0] == 't')
            c->w->ctr.cmd_touch++;
    }
    const char *key = tok[KEY_TOKEN].p;
    size_t nkey = tok[KEY_TOKEN].len;
    invalidate(c->w, key, nkey);
    int b = route(c, key, nkey, noreply);
    if (b < 0)
        return R_DONE;
    struct px_op *op = ss_px_op_new(PX_OP_RAW);
    if (op) {
        op->post = PX_POST_INVALIDATE;
        if (op_keep(c->w->dp, op, key, nkey, NULL, 0)) {
            ss_px_op_free(op);
            op = NULL;
        }
    }
    if (req_line(tok, ntok, noreply ? ntok - 2 : SIZE_MAX, false) && op) {
        ss_px_op_free(op);
        op = NULL;
    }
    if (op) /* one reply line: a number, NOT_FOUND, DELETED, TOUCHED or an error */
        op->one_line = 1;
    forward(c, b, op, noreply);
    return R_DONE;
}

/* flush_all: refused unless allowed; then every back end, then locally. */
static int px_flush_all(struct ss_conn *c, struct ss_mc_tok *tok, size_t ntok)
{
    struct px_routing *r = pxw(c->w)->r;
    bool noreply = ntok >= 2 && ss_mc_tok_is(&tok[ntok - 2], "noreply");
    if (ntok < 2 || ntok > 4)
        return SS_PX_PASS;
    if (!r->s.allow_flush_all) {
        c->w->ctr.cmd_flush++;
        ss_mc_reply(c, "SERVER_ERROR flush_all is disabled in proxy mode; set "
                       "routing.allow_flush_all", noreply);
        return R_DONE;
    }
    for (uint32_t b = 0; b < r->nbackends; b++) {
        if (req_line(tok, ntok, noreply ? ntok - 2 : SIZE_MAX, false))
            break;
        forward(c, (int)b, ss_px_op_new(PX_OP_RAW), true);
    }
    return SS_PX_PASS; /* the local store, and the reply */
}

/* ---- meta ---- */

struct meta_scan {
    bool ok, binary, quiet, value, write_like, has_cas, has_invalidate;
    char mode;
    const struct ss_mc_tok *T, *F;
    const char *key;
    size_t nkey;
    unsigned char keybuf[SS_KEY_MAX_LENGTH];
};

/* Flags as the local parser accepts them; ok = false means leave it to it. */
static void meta_scan(struct ss_mc_tok *tok, size_t ntok, size_t start, struct meta_scan *m)
{
    static const char allowed[] = "bNTRlhOPLkstcfvuqFCMJDI";
    bool seen[128] = {false};
    memset(m, 0, offsetof(struct meta_scan, keybuf));
    if (ntok < 3 || ntok > SS_MC_META_MAX_TOKENS || tok[KEY_TOKEN].len > SS_KEY_MAX_LENGTH)
        return;
    for (size_t i = start; i + 1 < ntok; i++) {
        unsigned char o = (unsigned char)tok[i].p[0];
        if (o >= 128 || seen[o] || !strchr(allowed, o) || o == 0)
            return;
        if (o == 'O' && tok[i].len > SS_MC_OPAQUE_MAX)
            return;
        seen[o] = true;
        switch (o) {
        case 'b': m->binary = true; break;
        case 'q': m->quiet = true; break;
        case 'v': m->value = true; break;
        case 'N': case 'R': m->write_like = true; break;
        case 'T': m->write_like = true; m->T = &tok[i]; break;
        case 'F': m->F = &tok[i]; break;
        case 'C': m->has_cas = true; break;
        case 'I': m->has_invalidate = true; break;
        case 'M': m->mode = tok[i].len == 2 ? tok[i].p[1] : '?'; break;
        }
    }
    m->key = tok[KEY_TOKEN].p;
    m->nkey = tok[KEY_TOKEN].len;
    if (m->binary) {
        m->nkey = ss_base64_decode(tok[KEY_TOKEN].p, tok[KEY_TOKEN].len, m->keybuf);
        if (m->nkey == 0)
            return;
        m->key = (const char *)m->keybuf;
    }
    m->ok = true;
}

/* mg: a hit (without write-like flags) is local; anything else goes to the owner. */
static int px_mg(struct ss_conn *c, struct ss_mc_tok *tok, size_t ntok)
{
    struct meta_scan m;
    meta_scan(tok, ntok, 2, &m);
    if (!m.ok)
        return SS_PX_PASS;
    if (!m.write_like) {
        ss_mc_px_probe = true;
        ss_mc_px_missed = false;
        ss_mc_meta_get(c, tok, ntok);
        ss_mc_px_probe = false;
        if (!ss_mc_px_missed)
            return R_DONE;
    } else {
        invalidate(c->w, m.key, m.nkey);
    }
    int b = route(c, m.key, m.nkey, false);
    if (b < 0)
        return R_DONE;
    struct px_op *op = ss_px_op_new(PX_OP_RAW);
    if (op) {
        op->post = m.write_like ? PX_POST_INVALIDATE : (m.value ? PX_POST_FILL_MG : PX_POST_NONE);
        op->lepoch = ss_px_epoch_get(c->w->dp, ss_px_epoch_slot(m.key, m.nkey));
        if (op_keep(c->w->dp, op, m.key, m.nkey, NULL, 0)) {
            ss_px_op_free(op);
            op = NULL;
        }
    }
    if (req_line(tok, ntok, SIZE_MAX, false) && op) {
        ss_px_op_free(op);
        op = NULL;
    }
    forward(c, b, op, false);
    return R_DONE;
}

/* ms/md/ma: invalidate, forward less q (quiet mode is applied here). */
static int px_meta_write(struct ss_conn *c, struct ss_mc_tok *tok, size_t ntok, char which,
                         const char *data, size_t avail, size_t line_bytes, size_t *extra)
{
    struct meta_scan m;
    size_t want = 0;
    int32_t vlen = 0;
    if (which == 's') {
        if (ntok < 4 || !ss_mc_parse_i32(tok[2].p, tok[2].len, &vlen) || vlen < 0 ||
            vlen > INT32_MAX - 2)
            return SS_PX_PASS;
        meta_scan(tok, ntok, 3, &m);
        uint32_t fl = 0;
        if (!m.ok || !strchr("SEAPR", m.mode ? m.mode : 'S') ||
            (m.F && !ss_mc_parse_u32(m.F->p + 1, m.F->len - 1, &fl)) ||
            !ss_mc_item_fits(c, m.nkey, fl, (size_t)vlen))
            return SS_PX_PASS;
        want = (size_t)vlen + 2;
        if (avail < want) {
            c->rneed = line_bytes + want;
            return R_AGAIN;
        }
        if (data[vlen] != '\r' || data[vlen + 1] != '\n')
            return SS_PX_PASS;
        c->w->ctr.cmd_set++;
    } else {
        meta_scan(tok, ntok, 2, &m);
        if (!m.ok || (which == 'a' && m.mode && !strchr("I+D-", m.mode)))
            return SS_PX_PASS;
    }
    *extra = want;
    invalidate(c->w, m.key, m.nkey);
    int b = route(c, m.key, m.nkey, false);
    if (b < 0)
        return R_DONE;
    bool sets = which == 's' && strchr("SER", m.mode ? m.mode : 'S') && !m.has_invalidate;
    struct px_op *op = ss_px_op_new(PX_OP_RAW);
    if (op) {
        op->quiet = m.quiet;
        op->post = sets ? PX_POST_SET : PX_POST_INVALIDATE;
        if (sets) {
            uint32_t fl = 0;
            int32_t e = 0;
            if (m.F)
                ss_mc_parse_u32(m.F->p + 1, m.F->len - 1, &fl);
            if (m.T)
                ss_mc_parse_i32(m.T->p + 1, m.T->len - 1, &e);
            op->lflags = fl;
            op->lexptime = ss_mc_exptime(e, ss_clock_unix_seconds());
        }
        if (op_keep(c->w->dp, op, m.key, m.nkey, sets ? data : NULL, (size_t)vlen)) {
            ss_px_op_free(op);
            op = NULL;
        }
    }
    if ((req_line(tok, ntok, SIZE_MAX, true) || (want && ss_buf_append(&req, data, want))) &&
        op) {
        ss_px_op_free(op);
        op = NULL;
    }
    forward(c, b, op, false);
    return R_DONE;
}

/* Entry point from the text dispatcher (see ss_px_internal.h). */
int ss_px_dispatch(struct ss_conn *c, struct ss_mc_tok *tok, size_t ntok, const char *line,
                   size_t len, const char *data, size_t avail, size_t line_bytes,
                   size_t *extra)
{
    const struct ss_mc_tok *cmd = &tok[0];
    *extra = 0;
    if (cmd->len == 2 && cmd->p[0] == 'm') {
        switch (cmd->p[1]) {
        case 'g':
            c->w->ctr.cmd_meta++;
            return px_mg(c, tok, ntok);
        case 's':
        case 'd':
        case 'a': {
            int r = px_meta_write(c, tok, ntok, cmd->p[1], data, avail, line_bytes, extra);
            if (r != SS_PX_PASS && r != R_AGAIN)
                c->w->ctr.cmd_meta++;
            return r;
        }
        default:
            return SS_PX_PASS;
        }
    }
    bool get = ss_mc_tok_is(cmd, "get") || ss_mc_tok_is(cmd, "bget");
    bool gets = ss_mc_tok_is(cmd, "gets");
    bool gat = ss_mc_tok_is(cmd, "gat");
    bool gats = ss_mc_tok_is(cmd, "gats");
    if (get || gets) {
        if (ntok < 3)
            return SS_PX_PASS;
        return px_get(c, cmd->p + cmd->len, line + len, gets, NULL);
    }
    if (gat || gats) {
        int32_t e;
        if (ntok < 4 || !ss_mc_parse_i32(tok[1].p, tok[1].len, &e))
            return SS_PX_PASS;
        return px_get(c, tok[1].p + tok[1].len, line + len, gats, &tok[1]);
    }
    static const char *const updates[] = {"set", "add", "replace", "append", "prepend", "cas"};
    for (size_t i = 0; i < sizeof(updates) / sizeof(updates[0]); i++)
        if (ss_mc_tok_is(cmd, updates[i]))
            return px_update(c, tok, ntok, data, avail, line_bytes, extra);
    if (ss_mc_tok_is(cmd, "incr") || ss_mc_tok_is(cmd, "decr") || ss_mc_tok_is(cmd, "delete") ||
        ss_mc_tok_is(cmd, "touch"))
        return px_simple(c, tok, ntok);
    if (ss_mc_tok_is(cmd, "flush_all"))
        return px_flush_all(c, tok, ntok);
    return SS_PX_PASS;
}
