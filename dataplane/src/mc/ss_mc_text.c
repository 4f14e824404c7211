/*
 * ss_mc_text.c - framing of the memcached text protocol and its classic
 * commands (get/gets/gat/gats, set/add/replace/append/prepend/cas,
 * incr/decr, touch, delete, flush_all, verbosity, version, quit).
 *
 * Framing (ss_mc_process): a command is a line ending in "\n" (a "\r"
 * before it is dropped), followed for storage commands by <bytes> of value
 * and "\r\n". A command whose value is still in flight is left unconsumed
 * and c->rneed says how much is wanted; it is parsed again from scratch
 * when the bytes are here, so the only state kept between calls is in the
 * connection (rpos, rneed, swallow). Replies match memcached 1.6 byte for
 * byte, including its error lines and its quirks.
 */
#include <errno.h>

#include "common/ss_clock.h"
#include "ss_dataplane.h"
#include "ss_mc.h"
#include "ss_mc_internal.h"
#include "proxy/ss_px_internal.h"
#include "server/ss_worker.h"

#define KEY_TOKEN 1

/*
 * Where in c->out the replies memcached would not have written yet begin.
 * memcached writes its queued replies when it runs out of input, after
 * `mn`, and after reqs_per_event (20) commands; a get with an over-long key
 * throws away every reply queued since (conn_release_items), so we do too.
 */
static __thread size_t unsent_mark;
#define REQS_PER_EVENT 20

/* Outcome of one framed command. */
enum cmd_result {
    CMD_DONE = 0, /* consumed the line (and *extra bytes after it) */
    CMD_AGAIN,    /* value not all here: c->rneed set, nothing consumed */
    CMD_CLOSE,    /* close the connection after writing what is queued */
};

/* memcached's set_noreply_maybe(): the next-to-last token is "noreply". */
static bool noreply_maybe(struct ss_mc_tok *tok, size_t ntok)
{
    return ntok >= 2 && ss_mc_tok_is(&tok[ntok - 2], "noreply");
}

/* Append "VALUE <key> <flags> <bytes>[ <cas>]\r\n<data>\r\n". */
static void out_value(struct ss_conn *c, const char *key, size_t nkey,
                      const struct ss_item *it, const char *data, size_t n, bool with_cas)
{
    char hdr[SS_MC_VALUE_HDR_MAX];
    size_t len = ss_mc_value_header(hdr, key, nkey, it->flags, n, with_cas ? &it->cas : NULL);
    ss_mc_out(c, hdr, len);
    ss_mc_out(c, data, n);
    ss_mc_out(c, "\r\n", 2);
}

/*
 * get/gets/gat/gats: keys are the space-separated words of [pos, end). One
 * VALUE per hit, then END. A key over 250 bytes replaces the whole reply
 * with CLIENT_ERROR (memcached discards the values it had queued). gat and
 * gats set the ttl of each hit to exptime.
 */
static void text_get(struct ss_conn *c, const char *pos, const char *end,
                     bool return_cas, bool touch, int64_t exptime)
{
    struct ss_store_thread *t = &c->w->st;
    struct ss_counters *ctr = &c->w->ctr;
    size_t mark = c->out.len;

    for (;;) {
        const char *key;
        size_t nkey;
        if (!ss_mc_next_key(&pos, end, &key, &nkey))
            break;
        if (nkey > SS_KEY_MAX_LENGTH) {
            c->out.len = unsent_mark < mark ? unsent_mark : mark;
            ss_mc_reply(c, "CLIENT_ERROR bad command line format", false);
            return;
        }
        struct ss_item it;
        ss_store_lock(t, key, nkey);
        int rc = ss_store_find(t, key, nkey, &it, SS_FIND_VALUE);
        if (rc == 0) {
            out_value(c, key, nkey, &it, t->value, t->value_len, return_cas);
            ss_mc_count_hit_tier(c, &it);
            if (touch) {
                /* `it` predates find's bump: carry the bump over. */
                struct ss_item m = it;
                m.exptime = exptime;
                m.cas = 0;
                m.bits |= SS_ITEM_FETCHED;
                m.last_access = (uint32_t)ss_clock_unix_seconds();
                ss_store_update_meta(t, key, nkey, &m);
                ctr->cmd_touch++;
                ctr->touch_hits++;
            } else {
                ctr->cmd_get++;
                ctr->get_hits++;
            }
        } else {
            ss_mc_count_miss(c, rc);
            if (touch) {
                ctr->cmd_touch++;
                ctr->touch_misses++;
            } else {
                ctr->cmd_get++;
                ctr->get_misses++;
            }
        }
        ss_store_unlock(t);
    }
    ss_mc_out(c, "END\r\n", 5);
}

/*
 * set/add/replace/append/prepend/cas <key> <flags> <exptime> <bytes>
 * [<cas>] [noreply], then the value. Returns CMD_DONE with *extra set to
 * the value bytes consumed, or CMD_AGAIN while the value is in flight.
 */
static enum cmd_result text_update(struct ss_conn *c, struct ss_mc_tok *tok, size_t ntok,
                                   enum ss_mc_store_op op, const char *data, size_t avail,
                                   size_t line_bytes, size_t *extra)
{
    bool noreply = noreply_maybe(tok, ntok);
    bool is_cas = op == SS_MC_OP_CAS;
    uint32_t flags;
    int32_t exptime, vlen;
    uint64_t req_cas = 0;

    *extra = 0;
    if (tok[KEY_TOKEN].len > SS_KEY_MAX_LENGTH ||
        !ss_mc_parse_u32(tok[2].p, tok[2].len, &flags) ||
        !ss_mc_parse_i32(tok[3].p, tok[3].len, &exptime) ||
        !ss_mc_parse_i32(tok[4].p, tok[4].len, &vlen) ||
        (is_cas && !ss_mc_parse_u64(tok[5].p, tok[5].len, &req_cas)) ||
        vlen < 0 || vlen > INT32_MAX - 2) {
        ss_mc_reply(c, "CLIENT_ERROR bad command line format", noreply);
        return CMD_DONE;
    }
    const char *key = tok[KEY_TOKEN].p;
    size_t nkey = tok[KEY_TOKEN].len;
    size_t want = (size_t)vlen + 2;

    if (!ss_mc_item_fits(c, nkey, flags, (size_t)vlen)) {
        c->w->ctr.errors_too_large++;
        ss_mc_reply(c, "SERVER_ERROR object too large for cache", noreply);
        /* A refused set must not leave the previous value readable. */
        if (op == SS_MC_OP_SET)
            ss_mc_exec_unlink(c, key, nkey);
        c->swallow = want;
        return CMD_DONE;
    }
    if (avail < want) {
        c->rneed = line_bytes + want;
        return CMD_AGAIN;
    }
    *extra = want;
    if (data[vlen] != '\r' || data[vlen + 1] != '\n') {
        c->w->ctr.cmd_set++;
        ss_mc_reply(c, "CLIENT_ERROR bad data chunk", noreply);
        return CMD_DONE;
    }

    struct ss_mc_store_req r = {
        .op = op,
        .key = key,
        .nkey = nkey,
        .flags = flags,
        .exptime = ss_mc_exptime(exptime, ss_clock_unix_seconds()),
        .cas = req_cas,
        .value = data,
        .vlen = (size_t)vlen,
    };
    uint64_t cas;
    static const char *const replies[] = {
        [SS_MC_STORED] = "STORED",
        [SS_MC_NOT_STORED] = "NOT_STORED",
        [SS_MC_EXISTS] = "EXISTS",
        [SS_MC_NOT_FOUND] = "NOT_FOUND",
        [SS_MC_STORE_ERROR] = "SERVER_ERROR out of memory storing object",
    };
    ss_mc_reply(c, replies[ss_mc_exec_store(c, &r, &cas)], noreply);
    return CMD_DONE;
}

/* touch <key> <exptime> [noreply] */
static void text_touch(struct ss_conn *c, struct ss_mc_tok *tok, size_t ntok)
{
    bool noreply = noreply_maybe(tok, ntok);
    struct ss_store_thread *t = &c->w->st;
    int32_t e;

    if (tok[KEY_TOKEN].len > SS_KEY_MAX_LENGTH) {
        ss_mc_reply(c, "CLIENT_ERROR bad command line format", noreply);
        return;
    }
    if (!ss_mc_parse_i32(tok[2].p, tok[2].len, &e)) {
        ss_mc_reply(c, "CLIENT_ERROR invalid exptime argument", noreply);
        return;
    }
    const char *key = tok[KEY_TOKEN].p;
    size_t nkey = tok[KEY_TOKEN].len;
    struct ss_item it;
    c->w->ctr.cmd_touch++;
    ss_store_lock(t, key, nkey);
    int rc = ss_store_find(t, key, nkey, &it, 0);
    if (rc == 0) {
        it.exptime = ss_mc_exptime(e, ss_clock_unix_seconds());
        it.cas = 0;
        it.bits |= SS_ITEM_FETCHED; /* as find's bump left it */
        it.last_access = (uint32_t)ss_clock_unix_seconds();
        ss_store_update_meta(t, key, nkey, &it);
        c->w->ctr.touch_hits++;
    } else {
        c->w->ctr.touch_misses++;
    }
    ss_store_unlock(t);
    ss_mc_reply(c, rc == 0 ? "TOUCHED" : "NOT_FOUND", noreply);
}

/* incr|decr <key> <delta> [noreply] */
static void text_delta(struct ss_conn *c, struct ss_mc_tok *tok, size_t ntok, bool incr)
{
    bool noreply = noreply_maybe(tok, ntok);
    struct ss_store_thread *t = &c->w->st;
    uint64_t delta;

    if (tok[KEY_TOKEN].len > SS_KEY_MAX_LENGTH) {
        ss_mc_reply(c, "CLIENT_ERROR bad command line format", noreply);
        return;
    }
    if (!ss_mc_parse_u64(tok[2].p, tok[2].len, &delta)) {
        ss_mc_reply(c, "CLIENT_ERROR invalid numeric delta argument", noreply);
        return;
    }
    const char *key = tok[KEY_TOKEN].p;
    size_t nkey = tok[KEY_TOKEN].len;
    char buf[SS_MC_NUM_MAX];
    struct ss_item it;
    ss_store_lock(t, key, nkey);
    enum ss_mc_delta_res res = ss_mc_exec_delta_locked(c, key, nkey, incr, delta, 0, buf, &it);
    ss_store_unlock(t);
    switch (res) {
    case SS_MC_DELTA_OK:
        ss_mc_reply(c, buf, noreply);
        break;
    case SS_MC_DELTA_NON_NUMERIC:
        ss_mc_reply(c, "CLIENT_ERROR cannot increment or decrement non-numeric value", noreply);
        break;
    case SS_MC_DELTA_NOT_FOUND:
        if (incr)
            c->w->ctr.incr_misses++;
        else
            c->w->ctr.decr_misses++;
        ss_mc_reply(c, "NOT_FOUND", noreply);
        break;
    case SS_MC_DELTA_CAS_MISMATCH:
        break;
    case SS_MC_DELTA_ERROR:
        ss_mc_reply(c, "SERVER_ERROR out of memory", noreply);
        break;
    }
}

/* delete <key> [0] [noreply] (the 0 is a relic memcached still accepts) */
static void text_delete(struct ss_conn *c, struct ss_mc_tok *tok, size_t ntok)
{
    bool noreply = false;
    struct ss_store_thread *t = &c->w->st;

    if (ntok > 3) {
        bool hold_is_zero = ss_mc_tok_is(&tok[2], "0");
        noreply = noreply_maybe(tok, ntok);
        bool valid = (ntok == 4 && (hold_is_zero || noreply)) ||
                     (ntok == 5 && hold_is_zero && noreply);
        if (!valid) {
            ss_mc_reply(c, "CLIENT_ERROR bad command line format.  "
                           "Usage: delete <key> [noreply]", noreply);
            return;
        }
    }
    const char *key = tok[KEY_TOKEN].p;
    size_t nkey = tok[KEY_TOKEN].len;
    if (nkey > SS_KEY_MAX_LENGTH) {
        ss_mc_reply(c, "CLIENT_ERROR bad command line format", noreply);
        return;
    }
    struct ss_item it;
    ss_store_lock(t, key, nkey);
    int rc = ss_store_find(t, key, nkey, &it, SS_FIND_NO_BUMP);
    if (rc == 0) {
        ss_store_remove(t, key, nkey);
        c->w->ctr.delete_hits++;
    } else {
        c->w->ctr.delete_misses++;
    }
    ss_store_unlock(t);
    ss_mc_reply(c, rc == 0 ? "DELETED" : "NOT_FOUND", noreply);
}

/* flush_all [delay] [noreply] */
static void text_flush_all(struct ss_conn *c, struct ss_mc_tok *tok, size_t ntok)
{
    bool noreply = noreply_maybe(tok, ntok);
    int32_t delay = 0;
    int64_t now = ss_clock_unix_seconds();

    c->w->ctr.cmd_flush++;
    if (ntok != (noreply ? 3u : 2u)) {
        if (!ss_mc_parse_i32(tok[1].p, tok[1].len, &delay)) {
            ss_mc_reply(c, "CLIENT_ERROR invalid exptime argument", noreply);
            return;
        }
    }
    /* memcached invalidates up to one second early (oldest_live is the
     * deadline minus one), so `flush_all 1` acts at once: match it. */
    int64_t when = delay > 0 ? ss_mc_exptime(delay, now) - 1 : now;
    ss_store_flush_all(&c->w->st, when);
    ss_mc_reply(c, "OK", noreply);
}

/* verbosity <level> [noreply]: accepted and ignored (no per-request logs). */
static void text_verbosity(struct ss_conn *c, struct ss_mc_tok *tok, size_t ntok)
{
    bool noreply = noreply_maybe(tok, ntok);
    uint32_t level;
    if (!ss_mc_parse_u32(tok[1].p, tok[1].len, &level)) {
        ss_mc_reply(c, "CLIENT_ERROR bad command line format", noreply);
        return;
    }
    ss_mc_reply(c, "OK", noreply);
}

static bool tok_eq(const struct ss_mc_tok *t, const char *lit)
{
    return ss_mc_tok_is(t, lit);
}

/* Does [p, end) start, after up to 100 spaces, with "get " or "gets "? */
static bool looks_like_get(const char *p, const char *end)
{
    const char *s = p;
    while (s < end && *s == ' ')
        s++;
    if (s - p > 100)
        return false;
    size_t n = (size_t)(end - s);
    return (n >= 4 && memcmp(s, "get ", 4) == 0) || (n >= 5 && memcmp(s, "gets ", 5) == 0);
}

/* Commands proxy mode answers locally over UDP: reads that change nothing. */
static bool udp_local_read(const struct ss_mc_tok *tok, size_t ntok)
{
    const struct ss_mc_tok *cmd = &tok[0];
    if (cmd->len == 2 && memcmp(cmd->p, "mg", 2) == 0) {
        /* T (touch) and N (vivify) write. */
        for (size_t i = 2; i + 1 < ntok; i++)
            if (tok[i].len && (tok[i].p[0] == 'T' || tok[i].p[0] == 'N'))
                return false;
        return true;
    }
    return (cmd->len == 3 && memcmp(cmd->p, "get", 3) == 0) ||
           (cmd->len == 4 && memcmp(cmd->p, "gets", 4) == 0) ||
           (cmd->len == 2 && memcmp(cmd->p, "mn", 2) == 0) ||
           (cmd->len == 7 && memcmp(cmd->p, "version", 7) == 0);
}

/*
 * Parse and execute one command line [line, line + len). data/avail are
 * the bytes after the line (a value), line_bytes the line with its "\n".
 */
static enum cmd_result dispatch(struct ss_conn *c, const char *line, size_t len,
                                const char *data, size_t avail, size_t line_bytes,
                                size_t *extra)
{
    struct ss_mc_tok tok[SS_MC_MAX_TOKENS];
    *extra = 0;

    /* memcached stops at a NUL byte (its line is a C string). */
    const char *nul = memchr(line, '\0', len);
    if (nul)
        len = (size_t)(nul - line);
    size_t ntok = ss_mc_tokenize(line, len, tok, SS_MC_MAX_TOKENS);
    if (ntok < 2 || tok[0].len < 2) {
        ss_mc_reply(c, "ERROR", false);
        return CMD_DONE;
    }
    const struct ss_mc_tok *cmd = &tok[0];
    char first = cmd->p[0];

    if (ss_px_active(c)) {
        int pr = ss_px_dispatch(c, tok, ntok, line, len, data, avail, line_bytes, extra);
        if (pr != SS_PX_PASS)
            return (enum cmd_result)pr;
    } else if (ss_px_udp_local_only(c) && !udp_local_read(tok, ntok)) {
        ss_mc_reply(c, "SERVER_ERROR proxy mode answers only get, gets and mg over UDP; "
                       "send this command over TCP", false);
        *extra = avail; /* drop the rest of the datagram (a value would parse as commands) */
        return CMD_DONE;
    }

#define WANT(cond)                          \
    do {                                    \
        if (!(cond)) {                      \
            ss_mc_reply(c, "ERROR", false); \
            return CMD_DONE;                \
        }                                   \
    } while (0)

    if (first == 'm' && cmd->len == 2) {
        c->w->ctr.cmd_meta++;
        switch (cmd->p[1]) {
        case 'g':
            ss_mc_meta_get(c, tok, ntok);
            return CMD_DONE;
        case 's': {
            long n = ss_mc_meta_set(c, tok, ntok, data, avail, line_bytes);
            if (n == -EAGAIN)
                return CMD_AGAIN;
            *extra = (size_t)n;
            return CMD_DONE;
        }
        case 'd':
            ss_mc_meta_delete(c, tok, ntok);
            return CMD_DONE;
        case 'n':
            ss_mc_out(c, "MN\r\n", 4);
            unsent_mark = c->out.len; /* mn makes memcached write now */
            return CMD_DONE;
        case 'a':
            ss_mc_meta_arith(c, tok, ntok);
            return CMD_DONE;
        case 'e':
            ss_mc_meta_debug(c, tok, ntok);
            return CMD_DONE;
        default:
            ss_mc_reply(c, "ERROR", false);
            return CMD_DONE;
        }
    }

    bool get = tok_eq(cmd, "get") || tok_eq(cmd, "bget");
    bool gets = tok_eq(cmd, "gets");
    bool gat = tok_eq(cmd, "gat");
    bool gats = tok_eq(cmd, "gats");
    if (get || gets || gat || gats) {
        WANT(ntok >= 3);
        const char *keys = cmd->p + cmd->len;
        int64_t exptime = 0;
        if (gat || gats) {
            int32_t e;
            if (!ss_mc_parse_i32(tok[1].p, tok[1].len, &e)) {
                ss_mc_reply(c, "CLIENT_ERROR invalid exptime argument", false);
                return CMD_DONE;
            }
            exptime = ss_mc_exptime(e, ss_clock_unix_seconds());
            keys = tok[1].p + tok[1].len;
        }
        text_get(c, keys, line + len, gets || gats, gat || gats, exptime);
        return CMD_DONE;
    }

    static const struct {
        const char *name;
        enum ss_mc_store_op op;
    } updates[] = {
        {"set", SS_MC_OP_SET},         {"add", SS_MC_OP_ADD},
        {"replace", SS_MC_OP_REPLACE}, {"append", SS_MC_OP_APPEND},
        {"prepend", SS_MC_OP_PREPEND}, {"cas", SS_MC_OP_CAS},
    };
    for (size_t i = 0; i < sizeof(updates) / sizeof(updates[0]); i++) {
        if (!tok_eq(cmd, updates[i].name))
            continue;
        if (updates[i].op == SS_MC_OP_CAS)
            WANT(ntok == 7 || ntok == 8);
        else
            WANT(ntok == 6 || ntok == 7);
        return text_update(c, tok, ntok, updates[i].op, data, avail, line_bytes, extra);
    }

    if (tok_eq(cmd, "incr") || tok_eq(cmd, "decr")) {
        WANT(ntok == 4 || ntok == 5);
        text_delta(c, tok, ntok, cmd->p[0] == 'i');
    } else if (tok_eq(cmd, "delete")) {
        WANT(ntok >= 3 && ntok <= 5);
        text_delete(c, tok, ntok);
    } else if (tok_eq(cmd, "touch")) {
        WANT(ntok == 4 || ntok == 5);
        text_touch(c, tok, ntok);
    } else if (tok_eq(cmd, "stats")) {
        ss_mc_stats(c, tok, ntok);
    } else if (tok_eq(cmd, "flush_all")) {
        WANT(ntok >= 2 && ntok <= 4);
        text_flush_all(c, tok, ntok);
    } else if (tok_eq(cmd, "version")) {
        const struct ss_dataplane_settings *s = ss_dataplane_settings(c->w->dp);
        ss_mc_out(c, "VERSION ", 8);
        ss_mc_out_str(c, s->version ? s->version : "1.6.18");
        ss_mc_out(c, "\r\n", 2);
    } else if (tok_eq(cmd, "quit")) {
        return CMD_CLOSE;
    } else if (tok_eq(cmd, "verbosity")) {
        WANT(ntok == 3 || ntok == 4);
        text_verbosity(c, tok, ntok);
    } else if (tok_eq(cmd, "shutdown")) {
        ss_mc_reply(c, "ERROR: shutdown not enabled", false);
    } else if (tok[ntok - 2].len >= 5 && memcmp(tok[ntok - 2].p, "HTTP/", 5) == 0) {
        /* An HTTP request on the memcached port: memcached hangs up. */
        return CMD_CLOSE;
    } else {
        ss_mc_reply(c, "ERROR", false);
    }
    return CMD_DONE;
#undef WANT
}

/*
 * Entry point (ss_mc.h): consume every complete command in
 * rbuf[rpos, rlen), replies to c->out, in order.
 */
int ss_mc_process(struct ss_conn *c)
{
    unsigned ncmd = 0;
    c->rneed = 0;
    unsent_mark = c->out.len;
    /* Service time: one clock read per command, its end being the next one's start. */
    uint64_t t0 = ss_clock_mono_ns();
    while (c->rpos < c->rlen) {
        if (c->out.len >= SS_CONN_OUT_HIGH_WATER)
            break; /* resumed by the server once the replies have drained */
        size_t avail = c->rlen - c->rpos;
        if (c->swallow) {
            /* The rest of a refused value: discard as it arrives. */
            size_t n = c->swallow < avail ? c->swallow : avail;
            c->rpos += n;
            c->swallow -= n;
            continue;
        }
        const char *start = c->rbuf + c->rpos;
        const char *nl = memchr(start, '\n', avail);
        if (!nl) {
            /* No end of line yet. A long one is fatal unless it is a long
             * multi-key get, as in memcached. */
            if (avail > SS_MC_LINE_MAX &&
                (avail > SS_MC_GET_LINE_MAX || !looks_like_get(start, start + avail))) {
                c->close_after_write = 1;
                return SS_MC_CLOSE;
            }
            break;
        }
        size_t len = (size_t)(nl - start);
        if (len > 1 && nl[-1] == '\r')
            len--;
        size_t line_bytes = (size_t)(nl - start) + 1;
        size_t extra = 0;
        if (ss_px_client_full(c))
            break; /* resumed once owed replies have gone out */
        struct px_slot *behind = ss_px_out_begin(c);
        enum cmd_result r = dispatch(c, start, len, nl + 1, avail - line_bytes, line_bytes,
                                     &extra);
        ss_px_out_end(c, behind);
        if (r != CMD_AGAIN) { /* a command waiting for its value is timed when whole */
            uint64_t t1 = ss_clock_mono_ns();
            c->w->latency_ns[ss_latency_bucket(t1 - t0)]++;
            c->w->latency_ns_sum += t1 - t0;
            t0 = t1;
        }
        if (ss_mc_out_failed()) {
            c->close_after_write = 1;
            return SS_MC_CLOSE;
        }
        if (r == CMD_AGAIN)
            break;
        c->rpos += line_bytes + extra;
        if (++ncmd % REQS_PER_EVENT == 0)
            unsent_mark = c->out.len;
        if (r == CMD_CLOSE) {
            c->close_after_write = 1;
            return SS_MC_CLOSE;
        }
    }
    return SS_MC_OK;
}
