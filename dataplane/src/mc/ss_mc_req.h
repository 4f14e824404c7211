/*
 * ss_mc_req.h - one memcached command, parsed once, and what an executor
 * (local execution in mc/, proxy mode in proxy/) needs to carry it out.
 *
 * ss_mc_process() frames a line, ss_mc_req_parse() turns it into a request
 * (command from ss_mc_cmd.h, tokens, noreply, meta flags), the dispatcher
 * checks the token count the command table asks for and hands the request
 * to the connection's executor (c->exec; NULL = ss_mc_execute). An executor
 * returns enum ss_exec; it never passes parameters through thread-locals.
 */
#ifndef SS_MC_REQ_H
#define SS_MC_REQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "mc/ss_mc_cmd.h"
#include "server/ss_conn.h"
#include "ss_counters.h"
#include "ss_store.h"

/* What an executor did with a request. */
enum ss_exec {
    SS_EXEC_DONE = 0, /* answered (or queued its answer); rq->extra bytes consumed after the line */
    SS_EXEC_AGAIN,    /* its value is not all here: c->rneed set, nothing consumed */
    SS_EXEC_CLOSE,    /* close the connection once what is queued is written */
    SS_EXEC_PENDING,  /* its reply is owed by a slot (server/ss_reply.h); go on */
    SS_EXEC_LOCAL,    /* proxy mode: answer it with local execution instead */
    SS_EXEC_MISS,     /* ss_mc_meta_get probe: no usable local copy, nothing answered */
};

/* memcached proto_text.c: MAX_TOKENS; a get line is re-tokenized in chunks. */
#define SS_MC_MAX_TOKENS 24
/* memcached MFLAG_MAX_OPT_LENGTH: meta lines with more tokens are refused. */
#define SS_MC_META_MAX_TOKENS 20
/* memcached MFLAG_MAX_OPAQUE_LENGTH: the O token, letter included. */
#define SS_MC_OPAQUE_MAX 32

struct ss_mc_tok {
    const char *p;
    size_t len;
};

/* A meta command's flags, checked and parsed once (memcached's
 * _meta_flag_preparse). Valid only when the request's meta_parsed is set. */
struct ss_mc_meta {
    int rc;          /* 0, or -EINVAL with err naming the first problem */
    const char *err;
    uint64_t seen;   /* bit (flag - 'A') for every flag letter given */
    bool has_error, no_update, locked, vivify, value, set_stale, no_reply;
    bool has_cas, new_ttl, key_binary;
    bool write_like; /* N, T or R: the command may write */
    char mode;       /* M<mode>, 0 when absent */
    int64_t now;     /* the clock the relative times were taken against */
    int64_t exptime, autoviv_exptime, recache_time;
    uint32_t client_flags;
    uint64_t req_cas, delta, initial;
    const char *key; /* the key, decoded when `b` was given */
    size_t nkey;
    unsigned char keybuf[SS_KEY_MAX_LENGTH];
};

struct ss_mc_req {
    enum ss_mc_cmd cmd;
    size_t ntok;            /* tokens, the terminal one included */
    const char *line;       /* the command line, without its end of line */
    size_t len;
    const char *data;       /* the bytes after the line (a value) */
    size_t avail;
    size_t line_bytes;      /* the line with its "\n" */
    size_t extra;           /* out: bytes consumed after the line */
    bool noreply;           /* text: the next-to-last token is "noreply" */
    bool meta_parsed;       /* meta: flags parsed (the key fits, the line has them) */
    bool unread_at_owner;   /* out, mg probe: answered from a copy the owner has not
                               been read for (SS_MC_ITEM_UNREAD_AT_OWNER, now cleared) */
    struct ss_mc_tok tok[SS_MC_MAX_TOKENS];
    struct ss_mc_meta meta;
};

/*
 * Parse [line, line + len) (data/avail: what follows it) into rq. Never
 * answers: a request memcached refuses is still a request, and the executor
 * replies with memcached's error for it.
 */
void ss_mc_req_parse(struct ss_mc_req *rq, const char *line, size_t len, const char *data,
                     size_t avail, size_t line_bytes);

static inline const struct ss_mc_tok *ss_mc_req_key(const struct ss_mc_req *rq)
{
    return &rq->tok[1];
}

static inline bool ss_mc_meta_has(const struct ss_mc_meta *m, char flag)
{
    unsigned bit = (unsigned)(unsigned char)flag - 'A';
    return bit < 64 && (m->seen >> bit & 1u);
}

/* A meta command every local check would accept (the flags, the key, the
 * token count and the O length), so another executor may act on it. */
bool ss_mc_meta_ok(const struct ss_mc_req *rq);

/* Local execution over the store: the executor of a standalone appliance,
 * and of anything proxy mode answers locally. Returns enum ss_exec. */
int ss_mc_execute(struct ss_conn *c, struct ss_mc_req *rq);

/* mg: answer from the local store; with SS_MC_MG_PROBE, answer only a hit
 * (whose cas is the back end's when `c` is asked) and return SS_EXEC_MISS
 * otherwise, counted as a get miss, without a reply. */
enum ss_mc_mg_mode { SS_MC_MG_ANSWER = 0, SS_MC_MG_PROBE = 1 };
int ss_mc_meta_get(struct ss_conn *c, struct ss_mc_req *rq, enum ss_mc_mg_mode mode);

/* ---- lexical helpers (ss_mc_parse.c) ---- */

/*
 * Split s[0, len) on spaces into at most max - 1 tokens plus a terminal
 * token of length 0 whose p is NULL when the whole line was used, or the
 * first unread byte otherwise (memcached's tokenize_command). Returns the
 * token count including the terminal token.
 */
size_t ss_mc_tokenize(const char *s, size_t len, struct ss_mc_tok *tok, size_t max);

static inline bool ss_mc_tok_is(const struct ss_mc_tok *t, const char *lit)
{
    size_t n = strlen(lit);
    return t->p && t->len == n && memcmp(t->p, lit, n) == 0;
}

/* Number parsing with memcached's safe_strto* acceptance rules. */
bool ss_mc_parse_u64(const char *p, size_t len, uint64_t *out);
bool ss_mc_parse_u32(const char *p, size_t len, uint32_t *out);
bool ss_mc_parse_i32(const char *p, size_t len, int32_t *out);

/* memcached's realtime(): relative, absolute or already expired; 0 = never. */
int64_t ss_mc_exptime(int32_t exptime, int64_t now);

/* Append helpers: a failed allocation marks the connection for closing
 * (ss_mc_out_failed() reports and clears it). */
bool ss_mc_out_failed(void);
void ss_mc_out(struct ss_conn *c, const void *p, size_t n);
static inline void ss_mc_out_str(struct ss_conn *c, const char *s)
{
    ss_mc_out(c, s, strlen(s));
}
/* Append line + "\r\n" unless noreply; count error replies. */
void ss_mc_reply(struct ss_conn *c, const char *line, bool noreply);

/* Next space-separated key of a multi-key line: false at the end. */
static inline bool ss_mc_next_key(const char **pos, const char *end, const char **key,
                                  size_t *nkey)
{
    const char *p = *pos;
    while (p < end && *p == ' ')
        p++;
    if (p == end)
        return false;
    *key = p;
    while (p < end && *p != ' ')
        p++;
    *nkey = (size_t)(p - *key);
    *pos = p;
    return true;
}

/* memcached's item_size_ok(): would this item fit in item_size_max? */
bool ss_mc_item_fits(struct ss_conn *c, size_t nkey, uint32_t flags, size_t vlen);

/* Count a find result as a miss kind (expired, flushed), a hit by its tier. */
void ss_mc_count_miss(struct ss_conn *c, int rc);
void ss_mc_count_hit_tier(struct ss_conn *c, const struct ss_item *it);

#endif
