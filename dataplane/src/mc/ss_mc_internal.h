/*
 * ss_mc_internal.h - shared between the memcached protocol files
 * (ss_mc_text.c framing and text commands, ss_mc_meta.c meta commands,
 * ss_mc_exec.c memcached semantics over the store, ss_mc_stats.c stats).
 *
 * Request flow: ss_mc_process() frames one command line (and its value),
 * the parsers turn tokens into a request, the executors apply memcached's
 * rules with the key's store lock held, and the reply is appended to c->out.
 */
#ifndef SS_MC_INTERNAL_H
#define SS_MC_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "server/ss_conn.h"
#include "ss_mc.h"
#include "ss_counters.h"
#include "ss_store.h"

/* memcached proto_text.c: MAX_TOKENS; a get line is re-tokenized in chunks. */
#define SS_MC_MAX_TOKENS 24
/* memcached: a buffered line with no '\n' after 2048 bytes closes the
 * connection unless it is a (long multi-key) get or gets. */
#define SS_MC_LINE_MAX 2048
/* Upper bound we accept for such a multi-key get line before closing. */
#define SS_MC_GET_LINE_MAX (8u << 20)
/* protocol.txt: exptime up to 30 days is relative, larger is unix time. */
#define SS_MC_REALTIME_MAXDELTA 2592000
/* memcached MFLAG_MAX_OPT_LENGTH: meta lines with more tokens are refused. */
#define SS_MC_META_MAX_TOKENS 20
/* memcached MFLAG_MAX_OPAQUE_LENGTH: the O token, letter included. */
#define SS_MC_OPAQUE_MAX 32
/* memcached ITEM_UPDATE_INTERVAL: last access moves at most this often. */
#define SS_MC_UPDATE_INTERVAL 60
/* Longest decimal uint64 plus room. */
#define SS_MC_NUM_MAX 24

/* Item bit kept beside SS_ITEM_*: the key arrived base64 encoded (ms b). */
#define SS_MC_ITEM_KEY_BINARY 0x100u
/* SS_MC_ITEM_CAS_UNKNOWN, ss_mc_value_header: ss_mc.h */

/* Proxy mode's probe of mg (ss_px_cmd.c): when ss_mc_px_probe is set, a
 * miss (or a hit whose cas is unknown, when c is asked) answers nothing and
 * sets ss_mc_px_missed, so the request can be forwarded instead. */
extern __thread bool ss_mc_px_probe;
extern __thread bool ss_mc_px_missed;

struct ss_mc_tok {
    const char *p;
    size_t len;
};

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
char *ss_mc_u64_to(char *p, uint64_t v);

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

/* ---- execution (ss_mc_exec.c) ---- */

enum ss_mc_store_op {
    SS_MC_OP_SET = 0,
    SS_MC_OP_ADD,
    SS_MC_OP_REPLACE,
    SS_MC_OP_APPEND,
    SS_MC_OP_PREPEND,
    SS_MC_OP_CAS,
};

enum ss_mc_store_res {
    SS_MC_STORED = 0,
    SS_MC_NOT_STORED,
    SS_MC_EXISTS,
    SS_MC_NOT_FOUND,
    SS_MC_STORE_ERROR, /* the store failed (device, space) */
};

struct ss_mc_store_req {
    enum ss_mc_store_op op;
    const char *key;
    size_t nkey;
    uint32_t flags;
    int64_t exptime;    /* absolute, 0 = never */
    uint64_t cas;       /* 0 = none */
    bool set_stale;     /* ms I: a lower cas stores the value as stale */
    bool key_binary;
    const char *value;
    size_t vlen;
};

/* Apply a storage command. *cas_out gets the new cas when stored. */
enum ss_mc_store_res ss_mc_exec_store(struct ss_conn *c, const struct ss_mc_store_req *r,
                                      uint64_t *cas_out);

enum ss_mc_delta_res {
    SS_MC_DELTA_OK = 0,
    SS_MC_DELTA_NON_NUMERIC,
    SS_MC_DELTA_NOT_FOUND,
    SS_MC_DELTA_CAS_MISMATCH,
    SS_MC_DELTA_ERROR,
};

/* incr/decr with the key's lock held. buf gets the decimal result (nul
 * terminated), *it the item as written. */
enum ss_mc_delta_res ss_mc_exec_delta_locked(struct ss_conn *c, const char *key, size_t nkey,
                                             bool incr, uint64_t delta, uint64_t req_cas,
                                             char *buf, struct ss_item *it);

/* Remove the key if present (lock not held). */
void ss_mc_exec_unlink(struct ss_conn *c, const char *key, size_t nkey);

/* Count a find result as a miss kind (expired, flushed). */
void ss_mc_count_miss(struct ss_conn *c, int rc);
void ss_mc_count_hit_tier(struct ss_conn *c, const struct ss_item *it);

/* Meta commands. Those with a value (ms) return the bytes consumed after the
 * line, or -EAGAIN with c->rneed set when the value is not all here. */
void ss_mc_meta_get(struct ss_conn *c, struct ss_mc_tok *tok, size_t ntok);
long ss_mc_meta_set(struct ss_conn *c, struct ss_mc_tok *tok, size_t ntok,
                    const char *data, size_t avail, size_t line_bytes);
void ss_mc_meta_delete(struct ss_conn *c, struct ss_mc_tok *tok, size_t ntok);
void ss_mc_meta_arith(struct ss_conn *c, struct ss_mc_tok *tok, size_t ntok);
void ss_mc_meta_debug(struct ss_conn *c, struct ss_mc_tok *tok, size_t ntok);

void ss_mc_stats(struct ss_conn *c, struct ss_mc_tok *tok, size_t ntok);

#endif
