/*
 * ss_mc_internal.h - shared between the memcached protocol files
 * (ss_mc_text.c framing and text commands, ss_mc_dispatch.c the local
 * executor, ss_mc_meta.c meta commands, ss_mc_exec.c memcached semantics
 * over the store, ss_mc_stats.c stats). What other executors need too is in
 * ss_mc_req.h.
 *
 * Request flow: ss_mc_process() frames one command line (and its value),
 * ss_mc_req_parse() turns it into a request, the executor applies
 * memcached's rules with the key's store lock held, and the reply is
 * appended to c->out.
 */
#ifndef SS_MC_INTERNAL_H
#define SS_MC_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "server/ss_conn.h"
#include "ss_mc.h"
#include "ss_mc_req.h"
#include "ss_counters.h"
#include "ss_store.h"

/* memcached: a buffered line with no '\n' after 2048 bytes closes the
 * connection unless it is a (long multi-key) get or gets. */
#define SS_MC_LINE_MAX 2048
/* Upper bound we accept for such a multi-key get line before closing. */
#define SS_MC_GET_LINE_MAX (8u << 20)
/* protocol.txt: exptime up to 30 days is relative, larger is unix time. */
#define SS_MC_REALTIME_MAXDELTA 2592000
/* memcached ITEM_UPDATE_INTERVAL: last access moves at most this often. */
#define SS_MC_UPDATE_INTERVAL 60
/* Longest decimal uint64 plus room. */
#define SS_MC_NUM_MAX 24

/* SS_MC_ITEM_KEY_BINARY, SS_MC_ITEM_CAS_UNKNOWN, ss_mc_value_header: ss_mc.h */

char *ss_mc_u64_to(char *p, uint64_t v);

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

/* Meta commands (mg, ss_mc_meta_get: ss_mc_req.h). Each returns enum ss_exec; ms
 * sets rq->extra to the value bytes consumed, or returns SS_EXEC_AGAIN with
 * c->rneed set while the value is in flight. */
int ss_mc_meta_set(struct ss_conn *c, struct ss_mc_req *rq);
int ss_mc_meta_delete(struct ss_conn *c, struct ss_mc_req *rq);
int ss_mc_meta_arith(struct ss_conn *c, struct ss_mc_req *rq);
int ss_mc_meta_debug(struct ss_conn *c, struct ss_mc_req *rq);

/* Text commands (ss_mc_text.c), each returning enum ss_exec. */
int ss_mc_text_get(struct ss_conn *c, struct ss_mc_req *rq);
int ss_mc_text_update(struct ss_conn *c, struct ss_mc_req *rq);
int ss_mc_text_touch(struct ss_conn *c, struct ss_mc_req *rq);
int ss_mc_text_delta(struct ss_conn *c, struct ss_mc_req *rq);
int ss_mc_text_delete(struct ss_conn *c, struct ss_mc_req *rq);
int ss_mc_text_flush_all(struct ss_conn *c, struct ss_mc_req *rq);
int ss_mc_text_verbosity(struct ss_conn *c, struct ss_mc_req *rq);

/* Check the token count the command table asks for, run rq on c's executor
 * (local when it has none or hands it back), count it. enum ss_exec. */
int ss_mc_dispatch(struct ss_conn *c, struct ss_mc_req *rq);

/* ss_mc_lookahead.c: prefetch what the lookups of the next few whole
 * commands in [p, end) will touch. Returns where its scan stopped (p when
 * the first command is not one it reads). */
const char *ss_mc_lookahead(struct ss_conn *c, const char *p, const char *end);

/* ---- get-like commands and deferred replies (ss_mc_text.c, ss_mc_defer.c) ---- */

struct ss_mc_get_mode {
    bool cas;        /* gets, gats: VALUE lines carry the cas */
    bool touch;      /* gat, gats: hits get exptime */
    int64_t exptime;
};
/* One key of a get-like command into c->out; -EINPROGRESS when find_flags
 * has SS_FIND_ASYNC and its read was started (c->w->st.started). */
int ss_mc_get_key(struct ss_conn *c, const char *key, size_t nkey,
                  const struct ss_mc_get_mode *mode, unsigned find_flags);

/* May a request on c wait for a device read? (TCP, a ring, not already
 * inside a completion.) */
bool ss_mc_can_defer(struct ss_conn *c);
struct ss_mc_slot;
/* A deferred reply of nfrags fragments, queued behind c's replies. NULL on ENOMEM. */
struct ss_mc_slot *ss_mc_slot_new(struct ss_conn *c, uint32_t nfrags,
                                  const struct ss_mc_get_mode *mode);
/* The reply of a get-like command whose device read failed. */
#define SS_MC_READ_FAILED "SERVER_ERROR device read failed"
/* The first fragment: what c->out holds past mark (keys answered before the
 * first wait), moved into the slot; read_failed if one of them failed. */
void ss_mc_slot_take_answered(struct ss_mc_slot *s, struct ss_conn *c, size_t mark,
                              bool read_failed);
/* The next fragment waits for rd, then runs that key again. */
void ss_mc_slot_park_key(struct ss_mc_slot *s, const char *key, size_t nkey, struct ss_read *rd);
/* The next fragment: the key answered now, or parked when its read starts. */
void ss_mc_slot_get_key(struct ss_mc_slot *s, struct ss_conn *c, const char *key, size_t nkey);
/* Done building: trailer (or NULL) follows the fragments. */
void ss_mc_slot_seal(struct ss_conn *c, struct ss_mc_slot *s, const char *trailer);
/* mg whose read started: its reply is a slot that runs the request again
 * once rd completes. SS_EXEC_PENDING, or SS_EXEC_DONE after answering
 * SERVER_ERROR. */
int ss_mc_defer_request(struct ss_conn *c, const struct ss_mc_req *rq, struct ss_read *rd);

/* mn: memcached writes its queued replies now (ss_mc_text.c keeps the mark). */
void ss_mc_mark_sent(struct ss_conn *c);

void ss_mc_stats(struct ss_conn *c, struct ss_mc_tok *tok, size_t ntok);

#endif
