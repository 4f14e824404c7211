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
#include "common/ss_hash.h"
#include "ss_dataplane.h"
#include "ss_mc.h"
#include "ss_mc_internal.h"
#include "server/ss_reply.h"
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

void ss_mc_mark_sent(struct ss_conn *c)
{
    unsent_mark = c->out.len;
}

/* Values from this size up are sent from their DRAM item rather than copied
 * into `out`: below it the copy costs less than the hold and the iovec. */
#define SEND_BY_REF_MIN 1024

/* Queue a hit's value bytes (data, n: t's value, key's lock held) by
 * reference when they lie in a DRAM item the connection may hold until sent.
 * False when they are to be copied. */
static bool value_by_ref(struct ss_conn *c, struct ss_store_thread *t, const char *data,
                         size_t n)
{
    if (n < SEND_BY_REF_MIN)
        return false;
    struct ss_value_hold *h = ss_store_value_hold(t);
    if (!h)
        return false; /* read from the device into the thread's scratch */
    if (ss_conn_out_ref(c, data, n, ss_store_value_put, h) == 0)
        return true;
    ss_store_value_put(h);
    return false;
}

/* Append "VALUE <key> <flags> <bytes>[ <cas>]\r\n<data>\r\n" (t's value). */
static void out_value(struct ss_conn *c, struct ss_store_thread *t, const char *key,
                      size_t nkey, const struct ss_item *it, bool with_cas)
{
    char hdr[SS_MC_VALUE_HDR_MAX];
    const char *data = t->value;
    size_t n = t->value_len;
    size_t len = ss_mc_value_header(hdr, key, nkey, it->flags, n, with_cas ? &it->cas : NULL);
    ss_mc_out(c, hdr, len);
    if (!value_by_ref(c, t, data, n))
        ss_mc_out(c, data, n);
    ss_mc_out(c, "\r\n", 2);
}

/*
 * One key of a get-like command (lock taken here): its VALUE into c->out on
 * a hit, the counters, gat's touch. With find_flags SS_FIND_ASYNC it may
 * instead start the device read and return -EINPROGRESS, having done
 * nothing else (ss_store.h); the read's completion runs it again.
 */
int ss_mc_get_key(struct ss_conn *c, const char *key, size_t nkey,
                  const struct ss_mc_get_mode *mode, unsigned find_flags)
{
    struct ss_store_thread *t = &c->w->st;
    struct ss_counters *ctr = &c->w->ctr;
    struct ss_item it;
    ss_store_lock(t, key, nkey);
    int rc = ss_store_find(t, key, nkey, &it, SS_FIND_VALUE | find_flags);
    if (rc == -EINPROGRESS) {
        ss_store_unlock(t);
        return rc;
    }
    if (rc == 0) {
        out_value(c, t, key, nkey, &it, mode->cas);
        ss_mc_count_hit_tier(c, &it);
        if (mode->touch) {
            /* `it` predates find's bump: carry the bump over. */
            struct ss_item m = it;
            m.exptime = mode->exptime;
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
        if (mode->touch) {
            ctr->cmd_touch++;
            ctr->touch_misses++;
        } else {
            ctr->cmd_get++;
            ctr->get_misses++;
        }
    }
    ss_store_unlock(t);
    return rc;
}

/* Keys of a multi-get prefetched ahead of their lookups. */
#define PREFETCH_KEYS 32

/*
 * A multi-get's first keys: prefetch each one's stripe, then its DRAM-tier
 * bucket, then the item the bucket names, so that the lookups after overlap
 * their cache misses instead of taking them one after another (on a virtual
 * machine a miss that also misses the TLB costs several hundred
 * nanoseconds). As ss_mc_lookahead.c does across pipelined commands.
 */
static void prefetch_keys(struct ss_store *st, const char *pos, const char *end)
{
    uint64_t hash[PREFETCH_KEYS];
    unsigned n = 0;
    const char *key, *first;
    size_t nkey, nfirst;
    /* A single-key get (the common case) has nothing to overlap. */
    if (!ss_mc_next_key(&pos, end, &first, &nfirst) || !ss_mc_next_key(&pos, end, &key, &nkey))
        return;
    hash[n++] = ss_hash64(first, nfirst);
    do
        hash[n++] = ss_hash64(key, nkey);
    while (n < PREFETCH_KEYS && ss_mc_next_key(&pos, end, &key, &nkey));
    ss_store_prefetch_keys(st, hash, n);
}

/* Is every key of [pos, end) short enough? Counts them. */
static bool keys_fit(const char *pos, const char *end, uint32_t *nkeys)
{
    const char *key;
    size_t nkey;
    *nkeys = 0;
    while (ss_mc_next_key(&pos, end, &key, &nkey)) {
        if (nkey > SS_KEY_MAX_LENGTH)
            return false;
        (*nkeys)++;
    }
    return true;
}

/*
 * get/gets/gat/gats: keys are the space-separated words of [pos, end). One
 * VALUE per hit, then END. A key over 250 bytes replaces the whole reply
 * with CLIENT_ERROR (memcached discards the values it had queued). gat and
 * gats set the ttl of each hit to exptime. A key whose value is on the
 * device (and the connection may wait: ss_mc_can_defer) is read
 * asynchronously: from it on, the reply is a deferred slot of one fragment
 * per key (ss_mc_defer.c), filled as reads complete, sent in key order.
 * A device read that fails (an I/O error, a short or damaged record)
 * replaces the whole reply with SERVER_ERROR.
 */
static int text_get_keys(struct ss_conn *c, const char *pos, const char *end,
                         const struct ss_mc_get_mode *mode)
{
    size_t mark = c->out.len;
    uint32_t nkeys = 0;
    prefetch_keys(c->w->st.store, pos, end);
    bool defer = ss_mc_can_defer(c) && keys_fit(pos, end, &nkeys);
    struct ss_mc_slot *s = NULL;
    bool read_failed = false;
    uint32_t k = 0;

    for (;; k++) {
        const char *key;
        size_t nkey;
        if (!ss_mc_next_key(&pos, end, &key, &nkey))
            break;
        if (nkey > SS_KEY_MAX_LENGTH) {
            ss_conn_out_truncate(c, unsent_mark < mark ? unsent_mark : mark);
            ss_mc_reply(c, "CLIENT_ERROR bad command line format", false);
            return SS_EXEC_DONE;
        }
        if (s) { /* after the first deferred key, every key has its fragment */
            ss_mc_slot_get_key(s, c, key, nkey);
            continue;
        }
        int rc = ss_mc_get_key(c, key, nkey, mode, defer ? SS_FIND_ASYNC : 0);
        if (rc == -EIO)
            read_failed = true;
        if (rc != -EINPROGRESS)
            continue;
        /* One fragment for the values answered so far, one per key from here. */
        s = ss_mc_slot_new(c, nkeys - k + 1, mode);
        if (!s) {
            ss_conn_out_truncate(c, mark);
            ss_mc_reply(c, "SERVER_ERROR out of memory", false);
            return SS_EXEC_DONE; /* the read completes with nobody waiting */
        }
        ss_mc_slot_take_answered(s, c, mark, read_failed);
        ss_mc_slot_park_key(s, key, nkey, c->w->st.started);
    }
    if (!s) {
        if (read_failed) {
            /* The whole reply is the error, as a client expects of a failed
             * command; the failed key's entry is gone (a later get misses). */
            ss_conn_out_truncate(c, mark);
            ss_mc_reply(c, SS_MC_READ_FAILED, false);
            return SS_EXEC_DONE;
        }
        ss_mc_out(c, "END\r\n", 5);
        return SS_EXEC_DONE;
    }
    ss_mc_slot_seal(c, s, "END\r\n");
    return SS_EXEC_PENDING;
}

/* get/bget/gets [keys], gat/gats <exptime> [keys] */
int ss_mc_text_get(struct ss_conn *c, struct ss_mc_req *rq)
{
    const struct ss_mc_tok *cmd = &rq->tok[0];
    bool touch = rq->cmd == SS_MC_CMD_GAT || rq->cmd == SS_MC_CMD_GATS;
    bool cas = rq->cmd == SS_MC_CMD_GETS || rq->cmd == SS_MC_CMD_GATS;
    const char *keys = cmd->p + cmd->len;
    int64_t exptime = 0;
    if (touch) {
        int32_t e;
        if (!ss_mc_parse_i32(rq->tok[1].p, rq->tok[1].len, &e)) {
            ss_mc_reply(c, "CLIENT_ERROR invalid exptime argument", false);
            return SS_EXEC_DONE;
        }
        exptime = ss_mc_exptime(e, ss_clock_unix_seconds());
        keys = rq->tok[1].p + rq->tok[1].len;
    }
    struct ss_mc_get_mode mode = {.cas = cas, .touch = touch, .exptime = exptime};
    return text_get_keys(c, keys, rq->line + rq->len, &mode);
}

/*
 * set/add/replace/append/prepend/cas <key> <flags> <exptime> <bytes>
 * [<cas>] [noreply], then the value. Returns SS_EXEC_DONE with rq->extra
 * set to the value bytes consumed, or SS_EXEC_AGAIN while the value is in
 * flight.
 */
int ss_mc_text_update(struct ss_conn *c, struct ss_mc_req *rq)
{
    static const enum ss_mc_store_op ops[SS_MC_CMD__COUNT] = {
        [SS_MC_CMD_SET] = SS_MC_OP_SET,         [SS_MC_CMD_ADD] = SS_MC_OP_ADD,
        [SS_MC_CMD_REPLACE] = SS_MC_OP_REPLACE, [SS_MC_CMD_APPEND] = SS_MC_OP_APPEND,
        [SS_MC_CMD_PREPEND] = SS_MC_OP_PREPEND, [SS_MC_CMD_CAS] = SS_MC_OP_CAS,
    };
    enum ss_mc_store_op op = ops[rq->cmd];
    const struct ss_mc_tok *tok = rq->tok;
    const char *data = rq->data;
    bool noreply = rq->noreply;
    bool is_cas = op == SS_MC_OP_CAS;
    uint32_t flags;
    int32_t exptime, vlen;
    uint64_t req_cas = 0;

    if (tok[KEY_TOKEN].len > SS_KEY_MAX_LENGTH ||
        !ss_mc_parse_u32(tok[2].p, tok[2].len, &flags) ||
        !ss_mc_parse_i32(tok[3].p, tok[3].len, &exptime) ||
        !ss_mc_parse_i32(tok[4].p, tok[4].len, &vlen) ||
        (is_cas && !ss_mc_parse_u64(tok[5].p, tok[5].len, &req_cas)) ||
        vlen < 0 || vlen > INT32_MAX - 2) {
        ss_mc_reply(c, "CLIENT_ERROR bad command line format", noreply);
        return SS_EXEC_DONE;
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
        return SS_EXEC_DONE;
    }
    if (rq->avail < want) {
        c->rneed = rq->line_bytes + want;
        return SS_EXEC_AGAIN;
    }
    rq->extra = want;
    if (data[vlen] != '\r' || data[vlen + 1] != '\n') {
        c->w->ctr.cmd_set++;
        ss_mc_reply(c, "CLIENT_ERROR bad data chunk", noreply);
        return SS_EXEC_DONE;
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
    return SS_EXEC_DONE;
}

/* touch <key> <exptime> [noreply] */
int ss_mc_text_touch(struct ss_conn *c, struct ss_mc_req *rq)
{
    const struct ss_mc_tok *tok = rq->tok;
    bool noreply = rq->noreply;
    struct ss_store_thread *t = &c->w->st;
    int32_t e;

    if (tok[KEY_TOKEN].len > SS_KEY_MAX_LENGTH) {
        ss_mc_reply(c, "CLIENT_ERROR bad command line format", noreply);
        return SS_EXEC_DONE;
    }
    if (!ss_mc_parse_i32(tok[2].p, tok[2].len, &e)) {
        ss_mc_reply(c, "CLIENT_ERROR invalid exptime argument", noreply);
        return SS_EXEC_DONE;
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
    return SS_EXEC_DONE;
}

/* incr|decr <key> <delta> [noreply] */
int ss_mc_text_delta(struct ss_conn *c, struct ss_mc_req *rq)
{
    const struct ss_mc_tok *tok = rq->tok;
    bool noreply = rq->noreply;
    bool incr = rq->cmd == SS_MC_CMD_INCR;
    struct ss_store_thread *t = &c->w->st;
    uint64_t delta;

    if (tok[KEY_TOKEN].len > SS_KEY_MAX_LENGTH) {
        ss_mc_reply(c, "CLIENT_ERROR bad command line format", noreply);
        return SS_EXEC_DONE;
    }
    if (!ss_mc_parse_u64(tok[2].p, tok[2].len, &delta)) {
        ss_mc_reply(c, "CLIENT_ERROR invalid numeric delta argument", noreply);
        return SS_EXEC_DONE;
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
    return SS_EXEC_DONE;
}

/* delete <key> [0] [noreply] (the 0 is a relic memcached still accepts) */
int ss_mc_text_delete(struct ss_conn *c, struct ss_mc_req *rq)
{
    const struct ss_mc_tok *tok = rq->tok;
    size_t ntok = rq->ntok;
    bool noreply = false;
    struct ss_store_thread *t = &c->w->st;

    if (ntok > 3) {
        bool hold_is_zero = ss_mc_tok_is(&tok[2], "0");
        noreply = rq->noreply;
        bool valid = (ntok == 4 && (hold_is_zero || noreply)) ||
                     (ntok == 5 && hold_is_zero && noreply);
        if (!valid) {
            ss_mc_reply(c, "CLIENT_ERROR bad command line format.  "
                           "Usage: delete <key> [noreply]", noreply);
            return SS_EXEC_DONE;
        }
    }
    const char *key = tok[KEY_TOKEN].p;
    size_t nkey = tok[KEY_TOKEN].len;
    if (nkey > SS_KEY_MAX_LENGTH) {
        ss_mc_reply(c, "CLIENT_ERROR bad command line format", noreply);
        return SS_EXEC_DONE;
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
    return SS_EXEC_DONE;
}

/* flush_all [delay] [noreply] */
int ss_mc_text_flush_all(struct ss_conn *c, struct ss_mc_req *rq)
{
    const struct ss_mc_tok *tok = rq->tok;
    size_t ntok = rq->ntok;
    bool noreply = rq->noreply;
    int32_t delay = 0;
    int64_t now = ss_clock_unix_seconds();

    if (ntok != (noreply ? 3u : 2u)) {
        if (!ss_mc_parse_i32(tok[1].p, tok[1].len, &delay)) {
            ss_mc_reply(c, "CLIENT_ERROR invalid exptime argument", noreply);
            return SS_EXEC_DONE;
        }
    }
    /* memcached invalidates up to one second early (oldest_live is the
     * deadline minus one), so `flush_all 1` acts at once: match it. */
    int64_t when = delay > 0 ? ss_mc_exptime(delay, now) - 1 : now;
    ss_store_flush_all(&c->w->st, when);
    ss_mc_reply(c, "OK", noreply);
    return SS_EXEC_DONE;
}

/* verbosity <level> [noreply]: accepted and ignored (no per-request logs). */
int ss_mc_text_verbosity(struct ss_conn *c, struct ss_mc_req *rq)
{
    const struct ss_mc_tok *tok = rq->tok;
    bool noreply = rq->noreply;
    uint32_t level;
    if (!ss_mc_parse_u32(tok[1].p, tok[1].len, &level)) {
        ss_mc_reply(c, "CLIENT_ERROR bad command line format", noreply);
        return SS_EXEC_DONE;
    }
    ss_mc_reply(c, "OK", noreply);
    return SS_EXEC_DONE;
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

/*
 * Entry point (ss_mc.h): consume every complete command in
 * rbuf[rpos, rlen), replies to c->out, in order (a reply owed by a slot
 * keeps its place; see server/ss_reply.h).
 */
int ss_mc_process(struct ss_conn *c)
{
    struct ss_mc_req rq;
    unsigned ncmd = 0;
    c->rneed = 0;
    unsent_mark = c->out.len;
    /* Service time: one clock read per command, its end being the next one's start. */
    uint64_t t0 = ss_clock_mono_ns();
    size_t prefetched_to = c->rpos; /* commands before it had their keys prefetched */
    while (c->rpos < c->rlen) {
        if (c->out.len + c->out_ref_bytes >= SS_CONN_OUT_HIGH_WATER)
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
        if (c->rpos >= prefetched_to) {
            const char *stop = ss_mc_lookahead(c, start, start + avail);
            prefetched_to = stop > start ? (size_t)(stop - c->rbuf) : c->rpos + 1;
        }
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
        if (ss_reply_full(c))
            break; /* resumed once owed replies have gone out */
        ss_mc_req_parse(&rq, start, len, nl + 1, avail - line_bytes, line_bytes);
        struct ss_reply *behind = ss_reply_out_begin(c);
        int r = ss_mc_dispatch(c, &rq);
        ss_reply_out_end(c, behind);
        if (r != SS_EXEC_AGAIN) { /* a command waiting for its value is timed when whole */
            uint64_t t1 = ss_clock_mono_ns();
            c->w->latency_ns[ss_latency_bucket(t1 - t0)]++;
            c->w->latency_ns_sum += t1 - t0;
            t0 = t1;
        }
        if (ss_mc_out_failed()) {
            c->close_after_write = 1;
            return SS_MC_CLOSE;
        }
        if (r == SS_EXEC_AGAIN)
            break;
        c->rpos += line_bytes + rq.extra;
        if (++ncmd % REQS_PER_EVENT == 0)
            unsent_mark = c->out.len;
        if (r == SS_EXEC_CLOSE) {
            c->close_after_write = 1;
            return SS_MC_CLOSE;
        }
    }
    return SS_MC_OK;
}
