/*
 * ss_mc_meta.c - memcached 1.6's meta commands: mg, ms, md, ma, me (mn is
 * answered by the dispatcher).
 *
 * `me` lives in ss_mc_meta_debug.c. A meta line is "<cmd> <key> [<datalen>]
 * <flags>*", each flag one letter with an optional argument. Flags are
 * checked and parsed once, with the request (ss_mc_req.c), then each
 * command walks them in request order, so return flags come back in the
 * order they were asked for, as memcached does. Win/stale protocol: an item carries SS_ITEM_WIN_SENT (W handed out,
 * later readers see Z) and SS_ITEM_STALE (X; invalidated by md I or a
 * stale-set ms I).
 */
#include <errno.h>

#include "common/ss_base64.h"
#include "common/ss_clock.h"
#include "ss_mc_internal.h"
#include "server/ss_worker.h"

#define KEY_TOKEN 1

/* A reply line: status, up to 20 flags of at most a key (base64) each. */
#define META_LINE_MAX 2048

/* Is any O token longer than memcached allows? */
static bool opaque_too_long(const struct ss_mc_tok *tok, size_t ntok)
{
    for (size_t i = KEY_TOKEN + 1; i + 1 < ntok; i++)
        if (tok[i].p[0] == 'O' && tok[i].len > SS_MC_OPAQUE_MAX)
            return true;
    return false;
}

/*
 * The checks every meta command opens with, in memcached's order and with its
 * wording, which differs per command (too_long, bad_flag; a NULL bad_flag
 * replies with what the flag parser said). Returns false after replying.
 */
static bool meta_prologue(struct ss_conn *c, const struct ss_mc_req *rq, const char *too_long,
                          const char *bad_flag)
{
    if (rq->ntok < 3) {
        ss_mc_reply(c, "ERROR", false);
        return false;
    }
    if (rq->tok[KEY_TOKEN].len > SS_KEY_MAX_LENGTH) {
        ss_mc_reply(c, "CLIENT_ERROR bad command line format", false);
        return false;
    }
    if (rq->ntok > SS_MC_META_MAX_TOKENS) {
        ss_mc_reply(c, too_long, false);
        return false;
    }
    if (rq->meta.rc) {
        ss_mc_reply(c, bad_flag ? bad_flag : rq->meta.err, false);
        return false;
    }
    return true;
}

/* " <c>" */
static inline char *meta_char(char *p, char ch)
{
    p[0] = ' ';
    p[1] = ch;
    return p + 2;
}

/* " k<key>", base64 with a trailing " b" when the key is binary. */
static char *meta_key(char *p, const char *key, size_t nkey, bool binary)
{
    p = meta_char(p, 'k');
    if (!binary) {
        memcpy(p, key, nkey);
        return p + nkey;
    }
    p += ss_base64_encode((const unsigned char *)key, nkey, p);
    memcpy(p, " b", 2);
    return p + 2;
}

/* " O<opaque>" copied whole. */
static char *meta_opaque(char *p, const struct ss_mc_tok *t)
{
    *p++ = ' ';
    memcpy(p, t->p, t->len);
    return p + t->len;
}

/* The O and k flags alone, for replies without an item (EN, NF, EX...). */
static char *meta_ok_flags(char *p, const struct ss_mc_tok *tok, size_t ntok,
                           const struct ss_mc_meta *of)
{
    for (size_t i = KEY_TOKEN + 1; i + 1 < ntok; i++) {
        if (tok[i].p[0] == 'O')
            p = meta_opaque(p, &tok[i]);
        else if (tok[i].p[0] == 'k')
            p = meta_key(p, of->key, of->nkey, of->key_binary);
    }
    return p;
}

/* " t<ttl>" with memcached's -1 for an item that never expires. */
static char *meta_ttl(char *p, int64_t exptime, int64_t now)
{
    p = meta_char(p, 't');
    if (exptime == 0) {
        memcpy(p, "-1", 2);
        return p + 2;
    }
    return ss_mc_u64_to(p, (uint32_t)(exptime - now));
}

static void count_get(struct ss_counters *ctr, bool touched, bool hit)
{
    if (touched) {
        ctr->cmd_touch++;
        hit ? ctr->touch_hits++ : ctr->touch_misses++;
    } else {
        ctr->cmd_get++;
        hit ? ctr->get_hits++ : ctr->get_misses++;
    }
}

/* mg's state between the lookup and the reply. */
struct mg_hit {
    struct ss_item it;
    bool created, won, ttl_set;
};

/*
 * The hit's reply line: VA <size> or HD, then the asked flags in request
 * order, then Z/X/W. Applies T, N and R to h->it as memcached does.
 */
static char *mg_hit_line(char *p, const struct ss_mc_req *rq, struct mg_hit *h)
{
    const struct ss_mc_meta *m = &rq->meta;
    struct ss_item *it = &h->it;
    if (m->value) {
        memcpy(p, "VA ", 3);
        p = ss_mc_u64_to(p + 3, it->nbytes);
    } else {
        memcpy(p, "HD", 2);
        p += 2;
    }
    for (size_t i = KEY_TOKEN + 1; i + 1 < rq->ntok; i++) {
        switch (rq->tok[i].p[0]) {
        case 'T':
            h->ttl_set = true;
            it->exptime = m->exptime;
            break;
        case 'N':
            if (h->created) {
                it->exptime = m->autoviv_exptime;
                h->won = true;
            }
            break;
        case 'R':
            if (!(it->bits & SS_ITEM_WIN_SENT) && !h->created && it->exptime != 0 &&
                it->exptime < m->recache_time)
                h->won = true;
            break;
        case 's':
            p = ss_mc_u64_to(meta_char(p, 's'), it->nbytes);
            break;
        case 't':
            p = meta_ttl(p, it->exptime, m->now);
            break;
        case 'c':
            p = ss_mc_u64_to(meta_char(p, 'c'), it->cas);
            break;
        case 'f':
            p = ss_mc_u64_to(meta_char(p, 'f'), it->flags);
            break;
        case 'l':
            p = ss_mc_u64_to(meta_char(p, 'l'),
                             (uint32_t)((uint32_t)m->now - it->last_access));
            break;
        case 'h':
            p = meta_char(p, 'h');
            *p++ = (it->bits & SS_ITEM_FETCHED) ? '1' : '0';
            break;
        case 'O':
            p = meta_opaque(p, &rq->tok[i]);
            break;
        case 'k':
            p = meta_key(p, m->key, m->nkey, (it->bits & SS_MC_ITEM_KEY_BINARY) != 0);
            break;
        }
    }
    /* Z before W: a client never sees both. */
    if (it->bits & SS_ITEM_WIN_SENT)
        p = meta_char(p, 'Z');
    if (it->bits & SS_ITEM_STALE) {
        p = meta_char(p, 'X');
        if (!(it->bits & SS_ITEM_WIN_SENT))
            h->won = true;
    }
    if (h->won) {
        p = meta_char(p, 'W');
        it->bits |= SS_ITEM_WIN_SENT;
    }
    memcpy(p, "\r\n", 2);
    return p + 2;
}

/* A miss, or an N that could not create: EN unless q. Lock not held. */
static int mg_miss(struct ss_conn *c, const struct ss_mc_req *rq)
{
    count_get(&c->w->ctr, rq->meta.new_ttl, false);
    if (rq->meta.no_reply)
        return SS_EXEC_DONE;
    char line[META_LINE_MAX];
    memcpy(line, "EN", 2);
    char *p = meta_ok_flags(line + 2, rq->tok, rq->ntok, &rq->meta);
    memcpy(p, "\r\n", 2);
    ss_mc_out(c, line, (size_t)(p + 2 - line));
    return SS_EXEC_DONE;
}

/*
 * mg <key> <flags>*: VA <size> <flags>\r\n<data>\r\n or HD <flags>, EN on a
 * miss (q: EN is not sent). N creates a missing item and hands out the win;
 * R hands out the win when the ttl is below the threshold; T sets the ttl.
 */
int ss_mc_meta_get(struct ss_conn *c, struct ss_mc_req *rq, enum ss_mc_mg_mode mode)
{
    struct ss_store_thread *t = &c->w->st;
    const struct ss_mc_meta *m = &rq->meta;

    if (!meta_prologue(c, rq, "CLIENT_ERROR options flags are too long", NULL))
        return SS_EXEC_DONE;
    if (opaque_too_long(rq->tok, rq->ntok)) {
        ss_mc_reply(c, "CLIENT_ERROR opaque token too long", false);
        return SS_EXEC_DONE;
    }

    struct mg_hit h = {.created = false};
    /* A value on the device is read asynchronously when the client can wait. */
    bool defer = mode == SS_MC_MG_ANSWER && m->value && ss_mc_can_defer(c);
    ss_store_lock(t, m->key, m->nkey);
    int rc = ss_store_find(t, m->key, m->nkey, &h.it,
                           SS_FIND_NO_BUMP | (m->value ? SS_FIND_VALUE : 0) |
                               (defer ? SS_FIND_ASYNC : 0) |
                               (mode == SS_MC_MG_PROBE ? SS_FIND_NO_WAIT : 0));
    if (rc == -EINPROGRESS) {
        ss_store_unlock(t);
        return ss_mc_defer_request(c, rq, t->started);
    }
    if (rc == -EAGAIN)
        c->w->ctr.device_reads_forwarded++; /* a probe's read would wait */
    if (mode == SS_MC_MG_PROBE &&
        (rc != 0 || !ss_mc_local_answers(h.it.bits, ss_mc_meta_has(m, 'c')))) {
        ss_store_unlock(t);
        if (rc != 0)
            ss_mc_count_miss(c, rc);
        count_get(&c->w->ctr, false, false);
        return SS_EXEC_MISS;
    }
    if (mode == SS_MC_MG_PROBE && (h.it.bits & SS_MC_ITEM_UNREAD_AT_OWNER)) {
        struct ss_item read = h.it;
        read.bits &= ~SS_MC_ITEM_UNREAD_AT_OWNER;
        if (ss_store_update_meta(t, m->key, m->nkey, &read) == 0)
            rq->unread_at_owner = true; /* the caller tells the owner */
    }
    if (rc == -EIO) {
        /* The device failed the read (its entry is dropped): the protocol's
         * server error, whatever q asks for. */
        ss_store_unlock(t);
        ss_mc_reply(c, SS_MC_READ_FAILED, false);
        return SS_EXEC_DONE;
    }
    if (rc != 0 && m->vivify) {
        /* Auto-vivify: an empty placeholder whose creator gets the win. */
        memset(&h.it, 0, sizeof(h.it));
        h.it.last_access = (uint32_t)m->now;
        struct iovec iov = {NULL, 0};
        if (ss_store_write(t, m->key, m->nkey, &h.it, &iov, 1, SS_WRITE_KEEP_META) == 0) {
            h.created = true;
            h.it.nbytes = 0;
            t->value = "";
            t->value_len = 0;
            rc = 0;
        }
    } else if (rc != 0) {
        ss_mc_count_miss(c, rc);
    }
    if (rc != 0) {
        ss_store_unlock(t);
        return mg_miss(c, rq);
    }

    struct ss_item orig = h.it;
    char line[META_LINE_MAX];
    ss_mc_out(c, line, (size_t)(mg_hit_line(line, rq, &h) - line));
    if (m->value) {
        ss_mc_out(c, t->value, t->value_len);
        ss_mc_out(c, "\r\n", 2);
    }
    ss_mc_count_hit_tier(c, &h.it);

    if (!m->no_update) {
        /* memcached's bump: fetched, and last access at most once a
         * minute (so `l` keeps counting between bumps). */
        h.it.bits |= SS_ITEM_FETCHED;
        if (h.it.last_access < (uint32_t)m->now - SS_MC_UPDATE_INTERVAL)
            h.it.last_access = (uint32_t)m->now;
    }
    if (h.it.bits != orig.bits || h.it.exptime != orig.exptime ||
        h.it.last_access != orig.last_access) {
        h.it.cas = 0;
        ss_store_update_meta(t, m->key, m->nkey, &h.it);
    }
    ss_store_unlock(t);
    count_get(&c->w->ctr, h.ttl_set, true);
    return SS_EXEC_DONE;
}

/* ms's M<mode> as a store op; false for a mode ms does not have. */
static bool ms_mode_op(const struct ss_mc_meta *m, enum ss_mc_store_op *op)
{
    switch (m->mode) {
    case 0:
    case 'S':
        *op = SS_MC_OP_SET;
        break;
    case 'E':
        *op = SS_MC_OP_ADD;
        break;
    case 'A':
        *op = SS_MC_OP_APPEND;
        break;
    case 'P':
        *op = SS_MC_OP_PREPEND;
        break;
    case 'R':
        *op = SS_MC_OP_REPLACE;
        break;
    default:
        return false;
    }
    /* C turns set and replace into cas. */
    if (m->has_cas && (*op == SS_MC_OP_SET || *op == SS_MC_OP_REPLACE))
        *op = SS_MC_OP_CAS;
    return true;
}

/* ms's reply line for res: HD/NS/EX/NF with the O, k and c flags asked for. */
static void ms_reply(struct ss_conn *c, const struct ss_mc_req *rq, enum ss_mc_store_res res,
                     uint64_t cas)
{
    static const char *const codes[] = {
        [SS_MC_STORED] = "HD", [SS_MC_NOT_STORED] = "NS",
        [SS_MC_EXISTS] = "EX", [SS_MC_NOT_FOUND] = "NF",
    };
    const struct ss_mc_meta *m = &rq->meta;
    char line[META_LINE_MAX];
    char *p = line;
    memcpy(p, codes[res], 2);
    p += 2;
    for (size_t i = 3; i + 1 < rq->ntok; i++) {
        switch (rq->tok[i].p[0]) {
        case 'O':
            p = meta_opaque(p, &rq->tok[i]);
            break;
        case 'k':
            p = meta_key(p, m->key, m->nkey, m->key_binary);
            break;
        case 'c':
            p = ss_mc_u64_to(meta_char(p, 'c'), cas);
            break;
        }
    }
    memcpy(p, "\r\n", 2);
    ss_mc_out(c, line, (size_t)(p + 2 - line));
}

/* ms's refusals before the value is read: the line's error, then the value
 * is swallowed as it arrives. */
static int ms_refuse(struct ss_conn *c, const char *err, size_t want)
{
    ss_mc_reply(c, err, false);
    c->swallow = want;
    return SS_EXEC_DONE;
}

/*
 * ms <key> <datalen> <flags>*\r\n<data>\r\n: modes E(add) A(ppend)
 * P(repend) R(eplace) S(et); C turns set/replace into cas; I with C stores
 * a late value as stale. HD (q: not sent) / NS / EX / NF. Sets rq->extra to
 * the value bytes consumed, or returns SS_EXEC_AGAIN with c->rneed set.
 */
int ss_mc_meta_set(struct ss_conn *c, struct ss_mc_req *rq)
{
    const struct ss_mc_tok *tok = rq->tok;
    const struct ss_mc_meta *m = &rq->meta;
    int32_t vlen;

    if (rq->ntok < 3) {
        ss_mc_reply(c, "ERROR", false);
        return SS_EXEC_DONE;
    }
    if (tok[KEY_TOKEN].len > SS_KEY_MAX_LENGTH || rq->ntok == 3) {
        ss_mc_reply(c, "CLIENT_ERROR bad command line format", false);
        return SS_EXEC_DONE;
    }
    if (rq->ntok > SS_MC_META_MAX_TOKENS) {
        ss_mc_reply(c, "CLIENT_ERROR options flags too long", false);
        return SS_EXEC_DONE;
    }
    if (!ss_mc_parse_i32(tok[2].p, tok[2].len, &vlen) || vlen < 0 || vlen > INT32_MAX - 2) {
        ss_mc_reply(c, "CLIENT_ERROR bad command line format", false);
        return SS_EXEC_DONE;
    }
    size_t want = (size_t)vlen + 2;
    enum ss_mc_store_op op = SS_MC_OP_SET;

    if (m->rc)
        return ms_refuse(c, m->err, want);
    if (!ms_mode_op(m, &op))
        return ms_refuse(c, "CLIENT_ERROR invalid mode for ms M token", want);
    if (opaque_too_long(tok, rq->ntok))
        return ms_refuse(c, "CLIENT_ERROR opaque token too long", want);
    if (!ss_mc_item_fits(c, m->nkey, m->client_flags, (size_t)vlen)) {
        c->w->ctr.errors_too_large++;
        ss_mc_exec_unlink(c, m->key, m->nkey);
        return ms_refuse(c, "SERVER_ERROR object too large for cache", want);
    }
    if (rq->avail < want) {
        c->rneed = rq->line_bytes + want;
        return SS_EXEC_AGAIN;
    }
    rq->extra = want;
    if (rq->data[vlen] != '\r' || rq->data[vlen + 1] != '\n') {
        c->w->ctr.cmd_set++;
        ss_mc_reply(c, "CLIENT_ERROR bad data chunk", false);
        return SS_EXEC_DONE;
    }

    struct ss_mc_store_req r = {
        .op = op,
        .key = m->key,
        .nkey = m->nkey,
        .flags = m->client_flags,
        .exptime = m->exptime,
        .cas = m->req_cas,
        .set_stale = m->set_stale && op == SS_MC_OP_CAS,
        .key_binary = m->key_binary,
        .value = rq->data,
        .vlen = (size_t)vlen,
    };
    uint64_t cas;
    enum ss_mc_store_res res = ss_mc_exec_store(c, &r, &cas);
    if (res == SS_MC_STORE_ERROR)
        ss_mc_reply(c, "SERVER_ERROR out of memory storing object", false);
    else if (!(res == SS_MC_STORED && m->no_reply))
        ms_reply(c, rq, res, cas);
    return SS_EXEC_DONE;
}

/*
 * md <key> <flags>*: HD (q: not sent) / NF / EX. I marks the item stale
 * (new cas, optional T ttl, the win can be handed out again) instead of
 * removing it; C deletes only on a matching cas.
 */
int ss_mc_meta_delete(struct ss_conn *c, struct ss_mc_req *rq)
{
    struct ss_store_thread *t = &c->w->st;
    const struct ss_mc_meta *m = &rq->meta;

    if (!meta_prologue(c, rq, "CLIENT_ERROR options flags too long",
                       "CLIENT_ERROR invalid or duplicate flag"))
        return SS_EXEC_DONE;
    if (opaque_too_long(rq->tok, rq->ntok)) {
        ss_mc_reply(c, "CLIENT_ERROR opaque token too long", false);
        return SS_EXEC_DONE;
    }

    const char *code;
    bool skip = false;
    struct ss_item it;
    ss_store_lock(t, m->key, m->nkey);
    int rc = ss_store_find(t, m->key, m->nkey, &it, SS_FIND_NO_BUMP);
    if (rc != 0) {
        c->w->ctr.delete_misses++;
        code = "NF";
    } else if (m->has_cas && it.cas != m->req_cas) {
        c->w->ctr.delete_misses++;
        code = "EX";
    } else if (m->set_stale) {
        if (m->new_ttl)
            it.exptime = m->exptime;
        it.bits |= SS_ITEM_STALE;
        it.bits &= ~SS_ITEM_WIN_SENT;
        it.cas = ss_store_next_cas(t->store);
        ss_store_update_meta(t, m->key, m->nkey, &it);
        code = "HD";
        skip = m->no_reply;
    } else {
        ss_store_remove(t, m->key, m->nkey);
        c->w->ctr.delete_hits++;
        code = "HD";
        skip = m->no_reply;
    }
    ss_store_unlock(t);
    if (skip)
        return SS_EXEC_DONE;
    char line[META_LINE_MAX];
    memcpy(line, code, 2);
    char *p = meta_ok_flags(line + 2, rq->tok, rq->ntok, m);
    memcpy(p, "\r\n", 2);
    ss_mc_out(c, line, (size_t)(p + 2 - line));
    return SS_EXEC_DONE;
}

/* ma's outcome once the delta has been tried. */
struct ma_result {
    struct ss_item it;
    char num[SS_MC_NUM_MAX]; /* the value as written, nul terminated */
    bool have, created;
};

/*
 * ma's reply for a value it holds: HD or VA <len>, the asked flags (T and N
 * applied to the item), the value. Returns the end of the line, or NULL when
 * an O token is too long (memcached reports that after the update).
 */
static char *ma_hit_line(char *p, const struct ss_mc_req *rq, struct ma_result *res)
{
    const struct ss_mc_meta *m = &rq->meta;
    size_t vlen = strlen(res->num);
    if (m->value) {
        memcpy(p, "VA ", 3);
        p = ss_mc_u64_to(p + 3, vlen);
    } else {
        memcpy(p, "HD", 2);
        p += 2;
    }
    for (size_t i = KEY_TOKEN + 1; i + 1 < rq->ntok; i++) {
        switch (rq->tok[i].p[0]) {
        case 'c':
            p = ss_mc_u64_to(meta_char(p, 'c'), res->it.cas);
            break;
        case 't':
            p = meta_ttl(p, res->it.exptime, m->now);
            break;
        case 'T':
            res->it.exptime = m->exptime;
            break;
        case 'N':
            if (res->created)
                res->it.exptime = m->autoviv_exptime;
            break;
        case 'O':
            if (rq->tok[i].len > SS_MC_OPAQUE_MAX)
                return NULL;
            p = meta_opaque(p, &rq->tok[i]);
            break;
        case 'k':
            p = meta_key(p, m->key, m->nkey, m->key_binary);
            break;
        }
    }
    if (m->value) {
        memcpy(p, "\r\n", 2);
        memcpy(p + 2, res->num, vlen);
        p += 2 + vlen;
    }
    return p;
}

/*
 * Apply ma's delta (lock held): res gets the item when there is one to
 * report. Returns the status for a reply without a value (NF, NS, EX), ""
 * when res->have, or NULL after answering an error line.
 */
static const char *ma_apply(struct ss_conn *c, const struct ss_mc_req *rq, bool incr,
                            struct ma_result *res)
{
    struct ss_store_thread *t = &c->w->st;
    const struct ss_mc_meta *m = &rq->meta;
    switch (ss_mc_exec_delta_locked(c, m->key, m->nkey, incr, m->delta, m->req_cas, res->num,
                                    &res->it)) {
    case SS_MC_DELTA_OK:
        res->have = true;
        return "";
    case SS_MC_DELTA_NON_NUMERIC:
        ss_mc_reply(c, "CLIENT_ERROR cannot increment or decrement non-numeric value", false);
        return NULL;
    case SS_MC_DELTA_ERROR:
        ss_mc_reply(c, "SERVER_ERROR out of memory", false);
        return NULL;
    case SS_MC_DELTA_CAS_MISMATCH:
        return "EX";
    case SS_MC_DELTA_NOT_FOUND:
        break;
    }
    if (!m->vivify) {
        if (incr)
            c->w->ctr.incr_misses++;
        else
            c->w->ctr.decr_misses++;
        return "NF";
    }
    char *e = ss_mc_u64_to(res->num, m->initial);
    *e = '\0';
    memset(&res->it, 0, sizeof(res->it));
    res->it.last_access = (uint32_t)m->now;
    struct iovec iov = {res->num, (size_t)(e - res->num)};
    if (ss_store_write(t, m->key, m->nkey, &res->it, &iov, 1, SS_WRITE_KEEP_META) != 0)
        return "NS";
    res->have = res->created = true;
    return "";
}

/*
 * ma <key> <flags>*: incr (MI, M+, default) or decr (MD, M-) by D (1);
 * N creates a missing item with value J (0); C requires a matching cas.
 * HD / VA <len> ... (q: not sent) / NF / EX.
 */
int ss_mc_meta_arith(struct ss_conn *c, struct ss_mc_req *rq)
{
    struct ss_store_thread *t = &c->w->st;
    const struct ss_mc_meta *m = &rq->meta;
    bool incr = true;

    if (!meta_prologue(c, rq, "CLIENT_ERROR options flags too long",
                       "CLIENT_ERROR invalid or duplicate flag"))
        return SS_EXEC_DONE;
    switch (m->mode) {
    case 0:
    case 'I':
    case '+':
        break;
    case 'D':
    case '-':
        incr = false;
        break;
    default:
        ss_mc_reply(c, "CLIENT_ERROR invalid mode for ma M token", false);
        return SS_EXEC_DONE;
    }

    char line[META_LINE_MAX + SS_MC_NUM_MAX];
    char *p = line;
    struct ma_result res = {.have = false};

    ss_store_lock(t, m->key, m->nkey);
    const char *status = ma_apply(c, rq, incr, &res);
    if (!status) {
        ss_store_unlock(t);
        return SS_EXEC_DONE;
    }
    if (res.have) {
        int64_t exptime = res.it.exptime;
        p = ma_hit_line(p, rq, &res);
        if (!p) {
            ss_store_unlock(t);
            ss_mc_reply(c, "CLIENT_ERROR opaque token too long", false);
            return SS_EXEC_DONE;
        }
        if (res.it.exptime != exptime) {
            struct ss_item upd = res.it;
            upd.cas = 0;
            ss_store_update_meta(t, m->key, m->nkey, &upd);
        }
    } else {
        if (opaque_too_long(rq->tok, rq->ntok)) {
            ss_store_unlock(t);
            ss_mc_reply(c, "CLIENT_ERROR opaque token too long", false);
            return SS_EXEC_DONE;
        }
        memcpy(p, status, 2);
        p = meta_ok_flags(p + 2, rq->tok, rq->ntok, m);
    }
    ss_store_unlock(t);
    /* q hides the reply of an update, not of a creation (as before). */
    if (res.have && !res.created && m->no_reply)
        return SS_EXEC_DONE;
    memcpy(p, "\r\n", 2);
    ss_mc_out(c, line, (size_t)(p + 2 - line));
    return SS_EXEC_DONE;
}
