/*
 * ss_mc_meta.c - memcached 1.6's meta commands: mg, ms, md, ma, me (mn is
 * answered by the dispatcher).
 *
 * `me` lives in ss_mc_meta_debug.c. A meta line is "<cmd> <key> [<datalen>] <flags>*", each flag one letter
 * with an optional argument. Flags are checked once up front
 * (meta_preparse), then each command walks them in request order, so
 * return flags come back in the order they were asked for, as memcached
 * does. Win/stale protocol: an item carries SS_ITEM_WIN_SENT (W handed out,
 * later readers see Z) and SS_ITEM_STALE (X; invalidated by md I or a
 * stale-set ms I).
 */
#include <errno.h>

#include "common/ss_base64.h"
#include "common/ss_clock.h"
#include "ss_mc_internal.h"
#include "server/ss_worker.h"

#define KEY_TOKEN 1

__thread bool ss_mc_px_probe;
__thread bool ss_mc_px_missed;

/* A reply line: status, up to 20 flags of at most a key (base64) each. */
#define META_LINE_MAX 2048

struct meta_flags {
    bool has_error, no_update, locked, vivify, value, set_stale, no_reply;
    bool has_cas, new_ttl, key_binary;
    char mode;
    int64_t exptime, autoviv_exptime, recache_time;
    uint32_t client_flags;
    uint64_t req_cas, delta, initial;
    const char *key; /* the key, decoded when `b` was given */
    size_t nkey;
    unsigned char keybuf[SS_KEY_MAX_LENGTH];
};

/*
 * memcached's _meta_flag_preparse(): validate every flag from tok[start],
 * decode a base64 key, parse numeric arguments. Returns 0, or -EINVAL with
 * *err naming the first fatal problem (later non-fatal errors overwrite
 * earlier messages, as there).
 */
static int meta_preparse(struct ss_mc_tok *tok, size_t start, struct meta_flags *of,
                         const char **err, int64_t now)
{
    uint8_t seen[127] = {0};
    int32_t v;

    of->key = tok[KEY_TOKEN].p;
    of->nkey = tok[KEY_TOKEN].len;
    for (size_t i = start; tok[i].len != 0; i++) {
        uint8_t o = (uint8_t)tok[i].p[0];
        const char *arg = tok[i].p + 1;
        size_t alen = tok[i].len - 1;
        if (o >= 127 || seen[o]) {
            *err = "CLIENT_ERROR duplicate flag";
            return -EINVAL;
        }
        seen[o] = 1;
        switch (o) {
        case 'b':
            of->nkey = ss_base64_decode(tok[KEY_TOKEN].p, tok[KEY_TOKEN].len, of->keybuf);
            of->key = (const char *)of->keybuf;
            if (of->nkey == 0) {
                *err = "CLIENT_ERROR error decoding key";
                of->has_error = true;
            }
            of->key_binary = true;
            break;
        case 'N':
        case 'T':
        case 'R':
            of->locked = true;
            if (!ss_mc_parse_i32(arg, alen, &v)) {
                *err = "CLIENT_ERROR bad token in command line format";
                of->has_error = true;
                break;
            }
            if (o == 'N') {
                of->vivify = true;
                of->autoviv_exptime = ss_mc_exptime(v, now);
            } else if (o == 'T') {
                of->exptime = ss_mc_exptime(v, now);
                of->new_ttl = true;
            } else {
                of->recache_time = ss_mc_exptime(v, now);
            }
            break;
        case 'l':
        case 'h':
            of->locked = true;
            break;
        case 'O':
        case 'P':
        case 'L':
        case 'k':
        case 's':
        case 't':
        case 'c':
        case 'f':
            break;
        case 'v':
            of->value = true;
            break;
        case 'u':
            of->no_update = true;
            break;
        case 'q':
            of->no_reply = true;
            break;
        case 'F':
            if (!ss_mc_parse_u32(arg, alen, &of->client_flags))
                of->has_error = true;
            break;
        case 'C':
            if (!ss_mc_parse_u64(arg, alen, &of->req_cas)) {
                *err = "CLIENT_ERROR bad token in command line format";
                of->has_error = true;
            } else {
                of->has_cas = true;
            }
            break;
        case 'M':
            if (tok[i].len != 2) {
                *err = "CLIENT_ERROR incorrect length for M token";
                of->has_error = true;
            } else {
                of->mode = tok[i].p[1];
            }
            break;
        case 'J':
            if (!ss_mc_parse_u64(arg, alen, &of->initial)) {
                *err = "CLIENT_ERROR invalid numeric initial value";
                of->has_error = true;
            }
            break;
        case 'D':
            if (!ss_mc_parse_u64(arg, alen, &of->delta)) {
                *err = "CLIENT_ERROR invalid numeric delta value";
                of->has_error = true;
            }
            break;
        case 'I':
            of->set_stale = true;
            break;
        default:
            *err = "CLIENT_ERROR invalid flag";
            return -EINVAL;
        }
    }
    return of->has_error ? -EINVAL : 0;
}

/* Is any O token longer than memcached allows? */
static bool opaque_too_long(struct ss_mc_tok *tok, size_t ntok)
{
    for (size_t i = KEY_TOKEN + 1; i + 1 < ntok; i++)
        if (tok[i].p[0] == 'O' && tok[i].len > SS_MC_OPAQUE_MAX)
            return true;
    return false;
}

/*
 * The checks every meta command opens with, in memcached's order and with its
 * wording, which differs per command (too_long, bad_flag; a NULL bad_flag
 * replies with what meta_preparse said). Returns false after replying.
 */
static bool meta_prologue(struct ss_conn *c, struct ss_mc_tok *tok, size_t ntok,
                          struct meta_flags *of, const char **err, int64_t now,
                          const char *too_long, const char *bad_flag)
{
    if (ntok < 3) {
        ss_mc_reply(c, "ERROR", false);
        return false;
    }
    if (tok[KEY_TOKEN].len > SS_KEY_MAX_LENGTH) {
        ss_mc_reply(c, "CLIENT_ERROR bad command line format", false);
        return false;
    }
    if (ntok > SS_MC_META_MAX_TOKENS) {
        ss_mc_reply(c, too_long, false);
        return false;
    }
    if (meta_preparse(tok, 2, of, err, now)) {
        ss_mc_reply(c, bad_flag ? bad_flag : *err, false);
        return false;
    }
    return true;
}

/* Does the request carry flag f? */
static bool meta_asks(struct ss_mc_tok *tok, size_t ntok, char f)
{
    for (size_t i = KEY_TOKEN + 1; i + 1 < ntok; i++)
        if (tok[i].p[0] == f)
            return true;
    return false;
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
static char *meta_ok_flags(char *p, struct ss_mc_tok *tok, size_t ntok,
                           const struct meta_flags *of)
{
    for (size_t i = KEY_TOKEN + 1; i + 1 < ntok; i++) {
        if (tok[i].p[0] == 'O')
            p = meta_opaque(p, &tok[i]);
        else if (tok[i].p[0] == 'k')
            p = meta_key(p, of->key, of->nkey, of->key_binary);
    }
    return p;
}

/*
 * mg <key> <flags>*: VA <size> <flags>\r\n<data>\r\n or HD <flags>, EN on a
 * miss (q: EN is not sent). N creates a missing item and hands out the win;
 * R hands out the win when the ttl is below the threshold; T sets the ttl.
 */
void ss_mc_meta_get(struct ss_conn *c, struct ss_mc_tok *tok, size_t ntok)
{
    struct ss_store_thread *t = &c->w->st;
    struct ss_counters *ctr = &c->w->ctr;
    struct meta_flags of = {0};
    const char *err = "CLIENT_ERROR bad command line format";
    int64_t now = ss_clock_unix_seconds();
    char line[META_LINE_MAX];
    char *p = line;

    if (!meta_prologue(c, tok, ntok, &of, &err, now, "CLIENT_ERROR options flags are too long",
                       NULL))
        return;
    if (opaque_too_long(tok, ntok)) {
        ss_mc_reply(c, "CLIENT_ERROR opaque token too long", false);
        return;
    }

    struct ss_item it;
    bool created = false, won = false, ttl_set = false;
    ss_store_lock(t, of.key, of.nkey);
    int rc = ss_store_find(t, of.key, of.nkey, &it,
                           SS_FIND_NO_BUMP | (of.value ? SS_FIND_VALUE : 0));
    if (ss_mc_px_probe && (rc != 0 || ((it.bits & SS_MC_ITEM_CAS_UNKNOWN) &&
                                       meta_asks(tok, ntok, 'c')))) {
        ss_store_unlock(t);
        if (rc != 0)
            ss_mc_count_miss(c, rc);
        ctr->cmd_get++;
        ctr->get_misses++;
        ss_mc_px_missed = true;
        return;
    }
    if (rc != 0 && of.vivify) {
        /* Auto-vivify: an empty placeholder whose creator gets the win. */
        memset(&it, 0, sizeof(it));
        it.last_access = (uint32_t)now;
        struct iovec iov = {NULL, 0};
        if (ss_store_write(t, of.key, of.nkey, &it, &iov, 1, SS_WRITE_KEEP_META) == 0) {
            created = true;
            it.nbytes = 0;
            t->value = "";
            t->value_len = 0;
            rc = 0;
        }
    } else if (rc != 0) {
        ss_mc_count_miss(c, rc);
    }

    if (rc != 0) {
        ss_store_unlock(t);
        if (ttl_set || of.new_ttl) {
            ctr->cmd_touch++;
            ctr->touch_misses++;
        } else {
            ctr->cmd_get++;
            ctr->get_misses++;
        }
        if (of.no_reply)
            return;
        memcpy(p, "EN", 2);
        p = meta_ok_flags(p + 2, tok, ntok, &of);
        memcpy(p, "\r\n", 2);
        ss_mc_out(c, line, (size_t)(p + 2 - line));
        return;
    }

    struct ss_item orig = it;
    if (of.value) {
        memcpy(p, "VA ", 3);
        p = ss_mc_u64_to(p + 3, it.nbytes);
    } else {
        memcpy(p, "HD", 2);
        p += 2;
    }
    for (size_t i = KEY_TOKEN + 1; i + 1 < ntok; i++) {
        switch (tok[i].p[0]) {
        case 'T':
            ttl_set = true;
            it.exptime = of.exptime;
            break;
        case 'N':
            if (created) {
                it.exptime = of.autoviv_exptime;
                won = true;
            }
            break;
        case 'R':
            if (!(it.bits & SS_ITEM_WIN_SENT) && !created && it.exptime != 0 &&
                it.exptime < of.recache_time)
                won = true;
            break;
        case 's':
            p = ss_mc_u64_to(meta_char(p, 's'), it.nbytes);
            break;
        case 't':
            p = meta_char(p, 't');
            if (it.exptime == 0) {
                memcpy(p, "-1", 2);
                p += 2;
            } else {
                p = ss_mc_u64_to(p, (uint32_t)(it.exptime - now));
            }
            break;
        case 'c':
            p = ss_mc_u64_to(meta_char(p, 'c'), it.cas);
            break;
        case 'f':
            p = ss_mc_u64_to(meta_char(p, 'f'), it.flags);
            break;
        case 'l':
            p = ss_mc_u64_to(meta_char(p, 'l'), (uint32_t)((uint32_t)now - it.last_access));
            break;
        case 'h':
            p = meta_char(p, 'h');
            *p++ = (it.bits & SS_ITEM_FETCHED) ? '1' : '0';
            break;
        case 'O':
            p = meta_opaque(p, &tok[i]);
            break;
        case 'k':
            p = meta_key(p, of.key, of.nkey, (it.bits & SS_MC_ITEM_KEY_BINARY) != 0);
            break;
        }
    }
    /* Z before W: a client never sees both. */
    if (it.bits & SS_ITEM_WIN_SENT)
        p = meta_char(p, 'Z');
    if (it.bits & SS_ITEM_STALE) {
        p = meta_char(p, 'X');
        if (!(it.bits & SS_ITEM_WIN_SENT))
            won = true;
    }
    if (won) {
        p = meta_char(p, 'W');
        it.bits |= SS_ITEM_WIN_SENT;
    }
    memcpy(p, "\r\n", 2);
    p += 2;
    ss_mc_out(c, line, (size_t)(p - line));
    if (of.value) {
        ss_mc_out(c, t->value, t->value_len);
        ss_mc_out(c, "\r\n", 2);
    }
    ss_mc_count_hit_tier(c, &it);

    if (!of.no_update) {
        /* memcached's bump: fetched, and last access at most once a
         * minute (so `l` keeps counting between bumps). */
        it.bits |= SS_ITEM_FETCHED;
        if (it.last_access < (uint32_t)now - SS_MC_UPDATE_INTERVAL)
            it.last_access = (uint32_t)now;
    }
    if (it.bits != orig.bits || it.exptime != orig.exptime ||
        it.last_access != orig.last_access) {
        it.cas = 0;
        ss_store_update_meta(t, of.key, of.nkey, &it);
    }
    ss_store_unlock(t);
    if (ttl_set) {
        ctr->cmd_touch++;
        ctr->touch_hits++;
    } else {
        ctr->cmd_get++;
        ctr->get_hits++;
    }
}

/*
 * ms <key> <datalen> <flags>*\r\n<data>\r\n: modes E(add) A(ppend)
 * P(repend) R(eplace) S(et); C turns set/replace into cas; I with C stores
 * a late value as stale. HD (q: not sent) / NS / EX / NF. Returns bytes of
 * value consumed after the line, or -EAGAIN with c->rneed set.
 */
long ss_mc_meta_set(struct ss_conn *c, struct ss_mc_tok *tok, size_t ntok,
                    const char *data, size_t avail, size_t line_bytes)
{
    struct meta_flags of = {0};
    const char *err = "CLIENT_ERROR bad command line format";
    int64_t now = ss_clock_unix_seconds();
    int32_t vlen;

    if (ntok < 3) {
        ss_mc_reply(c, "ERROR", false);
        return 0;
    }
    if (tok[KEY_TOKEN].len > SS_KEY_MAX_LENGTH || ntok == 3) {
        ss_mc_reply(c, "CLIENT_ERROR bad command line format", false);
        return 0;
    }
    if (ntok > SS_MC_META_MAX_TOKENS) {
        ss_mc_reply(c, "CLIENT_ERROR options flags too long", false);
        return 0;
    }
    if (!ss_mc_parse_i32(tok[2].p, tok[2].len, &vlen) || vlen < 0 || vlen > INT32_MAX - 2) {
        ss_mc_reply(c, "CLIENT_ERROR bad command line format", false);
        return 0;
    }
    size_t want = (size_t)vlen + 2;
    enum ss_mc_store_op op = SS_MC_OP_SET;

    if (meta_preparse(tok, 3, &of, &err, now))
        goto error;
    bool has_error = false;
    if (opaque_too_long(tok, ntok)) {
        err = "CLIENT_ERROR opaque token too long";
        has_error = true;
    }
    switch (of.mode) {
    case 0:
    case 'S':
        break;
    case 'E':
        op = SS_MC_OP_ADD;
        break;
    case 'A':
        op = SS_MC_OP_APPEND;
        break;
    case 'P':
        op = SS_MC_OP_PREPEND;
        break;
    case 'R':
        op = SS_MC_OP_REPLACE;
        break;
    default:
        err = "CLIENT_ERROR invalid mode for ms M token";
        goto error;
    }
    if (of.has_cas && (op == SS_MC_OP_SET || op == SS_MC_OP_REPLACE))
        op = SS_MC_OP_CAS;
    if (has_error)
        goto error;
    if (!ss_mc_item_fits(c, of.nkey, of.client_flags, (size_t)vlen)) {
        c->w->ctr.errors_too_large++;
        ss_mc_exec_unlink(c, of.key, of.nkey);
        err = "SERVER_ERROR object too large for cache";
        goto error;
    }
    if (avail < want) {
        c->rneed = line_bytes + want;
        return -EAGAIN;
    }
    if (data[vlen] != '\r' || data[vlen + 1] != '\n') {
        c->w->ctr.cmd_set++;
        ss_mc_reply(c, "CLIENT_ERROR bad data chunk", false);
        return (long)want;
    }

    struct ss_mc_store_req r = {
        .op = op,
        .key = of.key,
        .nkey = of.nkey,
        .flags = of.client_flags,
        .exptime = of.exptime,
        .cas = of.req_cas,
        .set_stale = of.set_stale && op == SS_MC_OP_CAS,
        .key_binary = of.key_binary,
        .value = data,
        .vlen = (size_t)vlen,
    };
    uint64_t cas;
    enum ss_mc_store_res res = ss_mc_exec_store(c, &r, &cas);
    static const char *const codes[] = {
        [SS_MC_STORED] = "HD", [SS_MC_NOT_STORED] = "NS",
        [SS_MC_EXISTS] = "EX", [SS_MC_NOT_FOUND] = "NF",
    };
    if (res == SS_MC_STORE_ERROR) {
        ss_mc_reply(c, "SERVER_ERROR out of memory storing object", false);
        return (long)want;
    }
    if (res == SS_MC_STORED && of.no_reply)
        return (long)want;
    char line[META_LINE_MAX];
    char *p = line;
    memcpy(p, codes[res], 2);
    p += 2;
    for (size_t i = 3; i + 1 < ntok; i++) {
        switch (tok[i].p[0]) {
        case 'O':
            p = meta_opaque(p, &tok[i]);
            break;
        case 'k':
            p = meta_key(p, of.key, of.nkey, of.key_binary);
            break;
        case 'c':
            p = ss_mc_u64_to(meta_char(p, 'c'), cas);
            break;
        }
    }
    memcpy(p, "\r\n", 2);
    ss_mc_out(c, line, (size_t)(p + 2 - line));
    return (long)want;

error:
    ss_mc_reply(c, err, false);
    c->swallow = want;
    return 0;
}

/*
 * md <key> <flags>*: HD (q: not sent) / NF / EX. I marks the item stale
 * (new cas, optional T ttl, the win can be handed out again) instead of
 * removing it; C deletes only on a matching cas.
 */
void ss_mc_meta_delete(struct ss_conn *c, struct ss_mc_tok *tok, size_t ntok)
{
    struct ss_store_thread *t = &c->w->st;
    struct meta_flags of = {0};
    const char *err = "CLIENT_ERROR bad command line format";
    int64_t now = ss_clock_unix_seconds();

    if (!meta_prologue(c, tok, ntok, &of, &err, now, "CLIENT_ERROR options flags too long",
                       "CLIENT_ERROR invalid or duplicate flag"))
        return;
    if (opaque_too_long(tok, ntok)) {
        ss_mc_reply(c, "CLIENT_ERROR opaque token too long", false);
        return;
    }

    const char *code;
    bool skip = false;
    struct ss_item it;
    ss_store_lock(t, of.key, of.nkey);
    int rc = ss_store_find(t, of.key, of.nkey, &it, SS_FIND_NO_BUMP);
    if (rc != 0) {
        c->w->ctr.delete_misses++;
        code = "NF";
    } else if (of.has_cas && it.cas != of.req_cas) {
        c->w->ctr.delete_misses++;
        code = "EX";
    } else if (of.set_stale) {
        if (of.new_ttl)
            it.exptime = of.exptime;
        it.bits |= SS_ITEM_STALE;
        it.bits &= ~SS_ITEM_WIN_SENT;
        it.cas = ss_store_next_cas(t->store);
        ss_store_update_meta(t, of.key, of.nkey, &it);
        code = "HD";
        skip = of.no_reply;
    } else {
        ss_store_remove(t, of.key, of.nkey);
        c->w->ctr.delete_hits++;
        code = "HD";
        skip = of.no_reply;
    }
    ss_store_unlock(t);
    if (skip)
        return;
    char line[META_LINE_MAX];
    memcpy(line, code, 2);
    char *p = meta_ok_flags(line + 2, tok, ntok, &of);
    memcpy(p, "\r\n", 2);
    ss_mc_out(c, line, (size_t)(p + 2 - line));
}

/*
 * ma <key> <flags>*: incr (MI, M+, default) or decr (MD, M-) by D (1);
 * N creates a missing item with value J (0); C requires a matching cas.
 * HD / VA <len> ... (q: not sent) / NF / EX.
 */
void ss_mc_meta_arith(struct ss_conn *c, struct ss_mc_tok *tok, size_t ntok)
{
    struct ss_store_thread *t = &c->w->st;
    struct meta_flags of = {.delta = 1};
    const char *err = "CLIENT_ERROR bad command line format";
    int64_t now = ss_clock_unix_seconds();
    bool incr = true;

    if (!meta_prologue(c, tok, ntok, &of, &err, now, "CLIENT_ERROR options flags too long",
                       "CLIENT_ERROR invalid or duplicate flag"))
        return;
    switch (of.mode) {
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
        return;
    }

    char num[SS_MC_NUM_MAX];
    char line[META_LINE_MAX + SS_MC_NUM_MAX];
    char *p = line;
    struct ss_item it;
    bool have = false, created = false, skip = false;

    ss_store_lock(t, of.key, of.nkey);
    switch (ss_mc_exec_delta_locked(c, of.key, of.nkey, incr, of.delta, of.req_cas, num, &it)) {
    case SS_MC_DELTA_OK:
        have = true;
        skip = of.no_reply;
        break;
    case SS_MC_DELTA_NON_NUMERIC:
        ss_store_unlock(t);
        ss_mc_reply(c, "CLIENT_ERROR cannot increment or decrement non-numeric value", false);
        return;
    case SS_MC_DELTA_ERROR:
        ss_store_unlock(t);
        ss_mc_reply(c, "SERVER_ERROR out of memory", false);
        return;
    case SS_MC_DELTA_NOT_FOUND:
        if (of.vivify) {
            char *e = ss_mc_u64_to(num, of.initial);
            *e = '\0';
            memset(&it, 0, sizeof(it));
            it.last_access = (uint32_t)now;
            struct iovec iov = {num, (size_t)(e - num)};
            if (ss_store_write(t, of.key, of.nkey, &it, &iov, 1, SS_WRITE_KEEP_META) == 0) {
                have = created = true;
            } else {
                memcpy(p, "NS", 2);
                p += 2;
            }
        } else {
            if (incr)
                c->w->ctr.incr_misses++;
            else
                c->w->ctr.decr_misses++;
            memcpy(p, "NF", 2);
            p += 2;
        }
        break;
    case SS_MC_DELTA_CAS_MISMATCH:
        memcpy(p, "EX", 2);
        p += 2;
        break;
    }

    if (have) {
        size_t vlen = strlen(num);
        int64_t exptime = it.exptime;
        if (of.value) {
            memcpy(p, "VA ", 3);
            p = ss_mc_u64_to(p + 3, vlen);
        } else {
            memcpy(p, "HD", 2);
            p += 2;
        }
        for (size_t i = KEY_TOKEN + 1; i + 1 < ntok; i++) {
            switch (tok[i].p[0]) {
            case 'c':
                p = ss_mc_u64_to(meta_char(p, 'c'), it.cas);
                break;
            case 't':
                p = meta_char(p, 't');
                if (it.exptime == 0) {
                    memcpy(p, "-1", 2);
                    p += 2;
                } else {
                    p = ss_mc_u64_to(p, (uint32_t)(it.exptime - now));
                }
                break;
            case 'T':
                it.exptime = of.exptime;
                break;
            case 'N':
                if (created)
                    it.exptime = of.autoviv_exptime;
                break;
            case 'O':
                if (tok[i].len > SS_MC_OPAQUE_MAX) {
                    /* memcached reports this after the update is done. */
                    ss_store_unlock(t);
                    ss_mc_reply(c, "CLIENT_ERROR opaque token too long", false);
                    return;
                }
                p = meta_opaque(p, &tok[i]);
                break;
            case 'k':
                p = meta_key(p, of.key, of.nkey, of.key_binary);
                break;
            }
        }
        if (of.value) {
            memcpy(p, "\r\n", 2);
            memcpy(p + 2, num, vlen);
            p += 2 + vlen;
        }
        if (it.exptime != exptime) {
            struct ss_item m = it;
            m.cas = 0;
            ss_store_update_meta(t, of.key, of.nkey, &m);
        }
    } else {
        if (opaque_too_long(tok, ntok)) {
            ss_store_unlock(t);
            ss_mc_reply(c, "CLIENT_ERROR opaque token too long", false);
            return;
        }
        p = meta_ok_flags(p, tok, ntok, &of);
    }
    ss_store_unlock(t);
    if (skip)
        return;
    memcpy(p, "\r\n", 2);
    ss_mc_out(c, line, (size_t)(p + 2 - line));
}
