/*
 * ss_px_forward.c - the client side of proxy mode: reply slots that keep a
 * connection's answers in order, completion of back-end ops into those slots,
 * fills of the local store (admission, the write-epoch check, local_ttl_max),
 * and the local effects of forwarded writes.
 *
 * Ordering: a reply owed by back ends is a px_slot, which embeds the
 * server's deferred reply (server/ss_reply.h): the server keeps the
 * connection's FIFO of slots, the replies answered locally behind them, and
 * delivers complete slots at the end of the loop turn through px_reply_ops
 * below (the fragments of a multi-key get in key order, or the raw reply, or
 * the error that replaced it).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/ss_clock.h"
#include "ss_px_internal.h"
#include "server/ss_server.h"

static inline struct px_worker *pxw(struct ss_worker *w)
{
    return w->px;
}

/*
 * Per-thread caches of finished ops and slots, buffers included. Without them a
 * forwarded request costs five to eight malloc/free pairs (about 12% of a
 * forwarded get's CPU in bench/proxy.py --perf). Ops and slots stay on the
 * worker that made them. A worker may have as many in flight as its clients
 * pipeline (50 connections at depth 16 on 2 workers: 400 each), so the cache
 * holds up to PX_CACHE_MAX; buffers above PX_KEEP_BYTES go back to malloc, and
 * beyond the first PX_CACHE_ROOMY entries those above PX_KEEP_BYTES_DEEP, so
 * that a burst of large values is not pinned per worker (the 768 deeper
 * entries of each cache keep at most 9 MiB between them).
 */
#define PX_CACHE_MAX 1024
#define PX_CACHE_ROOMY 256
#define PX_KEEP_BYTES 16384
#define PX_KEEP_BYTES_DEEP 1024
static __thread struct px_op *op_cache;
static __thread uint32_t op_cached;
static __thread struct px_slot *slot_cache;
static __thread uint32_t slot_cached;

/* The largest buffer an entry joining a cache of `cached` keeps. */
static size_t keep_bytes(uint32_t cached)
{
    return cached < PX_CACHE_ROOMY ? PX_KEEP_BYTES : PX_KEEP_BYTES_DEEP;
}

static void buf_recycle(struct ss_buf *b, size_t keep)
{
    if (b->cap > keep)
        ss_buf_free(b);
    else
        b->len = 0;
}

/* Slots with up to this many fragments are cached (a get of a few keys). */
#define PX_SLOT_CACHED_FRAGS 8

static void slot_free(struct px_slot *s)
{
    if (slot_cached >= PX_CACHE_MAX || s->frags_cap > PX_SLOT_CACHED_FRAGS) {
        for (uint32_t i = 0; i < s->frags_cap; i++)
            ss_buf_free(&s->frags[i].b);
        free(s->frags);
        ss_buf_free(&s->err);
        ss_buf_free(&s->r.after);
        free(s);
        return;
    }
    size_t keep_b = keep_bytes(slot_cached);
    for (uint32_t i = 0; i < s->frags_cap; i++)
        buf_recycle(&s->frags[i].b, keep_b);
    buf_recycle(&s->err, keep_b);
    buf_recycle(&s->r.after, keep_b);
    struct px_slot keep = {.frags = s->frags, .frags_cap = s->frags_cap, .err = s->err,
                           .r.after = s->r.after};
    *s = keep;
    s->r.next = (struct ss_reply *)slot_cache;
    slot_cache = s;
    slot_cached++;
}

/* The reply of a complete slot, into the client's output. */
static bool slot_render(struct ss_reply *r, struct ss_buf *out)
{
    struct px_slot *s = (struct px_slot *)r;
    int rc = 0;
    if (s->silent)
        return true;
    if (s->multi && !s->error) {
        for (uint32_t i = 0; i < s->nfrags; i++)
            rc |= ss_buf_append(out, s->frags[i].b.data, s->frags[i].b.len);
        if (s->trailer)
            rc |= ss_buf_append_str(out, s->trailer);
    } else {
        rc |= ss_buf_append(out, s->err.data, s->err.len); /* the raw reply, or the error */
    }
    return rc == 0;
}

static void slot_release(struct ss_reply *r)
{
    slot_free((struct px_slot *)r);
}

static const struct ss_reply_ops px_reply_ops = {slot_render, slot_release};

/* A new slot at the tail of c's FIFO (nfrags fragments). NULL on ENOMEM. */
struct px_slot *ss_px_slot_new(struct ss_conn *c, uint32_t nfrags)
{
    struct px_slot *s = slot_cache;
    if (s) {
        slot_cache = (struct px_slot *)s->r.next;
        slot_cached--;
        s->r.next = NULL;
    } else {
        s = calloc(1, sizeof(*s));
        if (!s)
            return NULL;
    }
    if (nfrags > s->frags_cap) {
        struct px_frag *f = realloc(s->frags, (size_t)nfrags * sizeof(*f));
        if (!f) {
            slot_free(s);
            return NULL;
        }
        memset(f + s->frags_cap, 0, (size_t)(nfrags - s->frags_cap) * sizeof(*f));
        s->frags = f;
        s->frags_cap = nfrags;
    }
    if (nfrags) {
        s->nfrags = nfrags;
        s->multi = true;
    }
    if (ss_reply_push(c, &s->r, &px_reply_ops)) {
        slot_free(s);
        return NULL;
    }
    return s;
}

/* One op of s finished: an orphaned slot goes, a complete one is served. */
void ss_px_slot_release(struct ss_worker *w, struct px_slot *s)
{
    ss_reply_complete(w, &s->r);
}

static void slot_error(struct px_slot *s, const char *line, size_t n)
{
    if (!s->error) {
        s->error = true;
        s->err.len = 0;
        if (ss_buf_append(&s->err, line, n))
            s->err.len = 0;
    }
}

static void op_release(struct px_op *op)
{
    free(op->items);
    ss_buf_free(&op->reply);
    free(op->lkey);
    free(op->lvalue);
    free(op);
}

void ss_px_op_free(struct px_op *op)
{
    if (op->in_flight)
        atomic_fetch_sub(op->in_flight, 1);
    if (op->held)
        ss_store_value_put(op->held);
    if (op_cached >= PX_CACHE_MAX) {
        op_release(op);
        return;
    }
    size_t keep_b = keep_bytes(op_cached);
    if (op->lvalue_cap > keep_b) {
        free(op->lvalue);
        op->lvalue = NULL;
        op->lvalue_cap = 0;
    }
    buf_recycle(&op->reply, keep_b);
    /* Keep the buffers, zero the rest. */
    struct px_op keep = {.items = op->items, .items_cap = op->items_cap, .reply = op->reply,
                         .lkey = op->lkey, .lkey_cap = op->lkey_cap, .lvalue = op->lvalue,
                         .lvalue_cap = op->lvalue_cap};
    *op = keep;
    op->next = op_cache;
    op_cache = op;
    op_cached++;
}

struct px_op *ss_px_op_new(uint8_t kind)
{
    struct px_op *op = op_cache;
    if (op) {
        op_cache = op->next;
        op_cached--;
        op->next = NULL;
    } else {
        op = calloc(1, sizeof(*op));
        if (!op)
            return NULL;
    }
    op->kind = kind;
    return op;
}

int ss_px_op_items(struct px_op *op, uint32_t n)
{
    if (n > op->items_cap) {
        struct px_item *items = realloc(op->items, (size_t)n * sizeof(*items));
        if (!items)
            return -ENOMEM;
        op->items = items;
        op->items_cap = n;
    }
    return 0;
}

static int grow_copy(char **dst, size_t *cap, const char *src, size_t n)
{
    if (n > *cap || !*dst) {
        size_t want = n ? n : 1;
        char *p = realloc(*dst, want);
        if (!p)
            return -ENOMEM;
        *dst = p;
        *cap = want;
    }
    memcpy(*dst, src, n);
    return 0;
}

int ss_px_op_keep_key(struct px_op *op, const char *key, size_t nkey, const char *val,
                      size_t vlen)
{
    if (grow_copy(&op->lkey, &op->lkey_cap, key, nkey))
        return -ENOMEM;
    op->nlkey = nkey;
    op->has_key = true;
    if (val) {
        if (grow_copy(&op->lvalue, &op->lvalue_cap, val, vlen))
            return -ENOMEM;
        op->lvlen = vlen;
    }
    return 0;
}

void ss_px_cache_drain(void)
{
    while (op_cache) {
        struct px_op *op = op_cache;
        op_cache = op->next;
        op_release(op);
    }
    op_cached = 0;
    while (slot_cache) {
        struct px_slot *s = slot_cache;
        slot_cache = (struct px_slot *)s->r.next;
        for (uint32_t i = 0; i < s->frags_cap; i++)
            ss_buf_free(&s->frags[i].b);
        free(s->frags);
        ss_buf_free(&s->err);
        ss_buf_free(&s->r.after);
        free(s);
    }
    slot_cached = 0;
}

/* Absolute local exptime for a back end's remaining ttl (-1: none). */
static int64_t local_exptime(const struct px_routing *r, int64_t ttl, int64_t now)
{
    uint32_t cap = r->s.local_ttl_max_s;
    if (ttl < 0)
        return cap ? now + cap : 0;
    if (cap && ttl > (int64_t)cap)
        ttl = cap;
    return now + (ttl ? ttl : 1);
}

/* Keep a fetched value locally unless a write got in since it was asked for. */
static void fill(struct ss_worker *w, const char *key, size_t nkey, uint32_t epoch,
                 uint32_t flags, uint64_t cas, int64_t ttl, const char *val, size_t vlen)
{
    struct px_routing *r = pxw(w)->r;
    /* Admission first: under `never` it answers without hashing the key. */
    if (!r || !ss_px_admit(w->dp, r, key, nkey, vlen))
        return;
    uint32_t es = ss_px_epoch_slot(key, nkey);
    if (ss_px_stale_maybe(w->dp, es))
        return; /* a stale item's copy could not answer mg as the owner (X, W) */
    /* A write to the slot in flight decides the copy when it ends
     * (post_write), which may keep its value in DRAM only: no fill may
     * store a device copy under it meanwhile. */
    if (atomic_load_explicit(ss_px_writes_in_flight(w->dp, es), memory_order_relaxed))
        return;
    int64_t now = ss_clock_unix_seconds();
    struct ss_item it = {
        .cas = cas,
        .exptime = local_exptime(r, ttl, now),
        .flags = flags,
        .last_access = (uint32_t)now,
        .bits = cas ? 0 : PX_ITEM_CAS_UNKNOWN,
    };
    struct iovec iov = {(void *)val, vlen};
    ss_store_lock(&w->st, key, nkey);
    if (ss_px_epoch_get(w->dp, es) == epoch)
        (void)ss_store_write(&w->st, key, nkey, &it, &iov, 1, SS_WRITE_KEEP_META);
    ss_store_unlock(&w->st);
}

/* A value for one key of a batched fetch: render it, maybe keep it. */
void ss_px_item_value(struct ss_worker *w, struct px_op *op, struct px_item *it, uint32_t flags,
                      uint64_t cas, int64_t ttl, const char *val, size_t vlen, bool keep)
{
    struct px_slot *s = it->slot;
    if (s->r.c && !s->error && it->frag < s->nfrags) {
        struct ss_buf *b = &s->frags[it->frag].b;
        char hdr[SS_MC_VALUE_HDR_MAX];
        size_t len = ss_mc_value_header(hdr, it->key, it->nkey, flags, vlen,
                                        it->want_cas ? &cas : NULL);
        b->len = 0;
        if (ss_buf_append(b, hdr, len) || ss_buf_append(b, val, vlen) ||
            ss_buf_append(b, "\r\n", 2))
            slot_error(s, "SERVER_ERROR out of memory\r\n", 28);
    }
    if (!it->no_fill && keep)
        fill(w, it->key, it->nkey, it->epoch, flags, cas, ttl, val, vlen);
    (void)op;
}

/* Fill from a forwarded mg's own reply ("VA <n> ... f<flags> [c<cas>] [t<ttl>]"). */
static void fill_from_mg(struct ss_worker *w, struct px_op *op)
{
    const char *p = op->reply.data;
    size_t n = op->reply.len;
    const char *nl = memchr(p, '\n', n);
    if (!nl || n < 3 || memcmp(p, "VA ", 3) != 0 || nl == p || nl[-1] != '\r')
        return;
    size_t ll = (size_t)(nl - p) - 1;
    struct ss_mc_tok tok[SS_MC_META_MAX_TOKENS + 2];
    size_t ntok = ss_mc_tokenize(p, ll, tok, SS_MC_META_MAX_TOKENS + 2);
    uint32_t flags = 0, vlen;
    uint64_t cas = 0;
    int64_t ttl = -1;
    bool have_f = false;
    if (ntok < 3 || !ss_mc_parse_u32(tok[1].p, tok[1].len, &vlen))
        return;
    for (size_t i = 2; i + 1 < ntok; i++) {
        const char *a = tok[i].p + 1;
        size_t al = tok[i].len - 1;
        int32_t t;
        if (tok[i].p[0] == 'f')
            have_f = ss_mc_parse_u32(a, al, &flags);
        else if (tok[i].p[0] == 'c' && !ss_mc_parse_u64(a, al, &cas))
            return;
        else if (tok[i].p[0] == 't' && ss_mc_parse_i32(a, al, &t))
            ttl = t;
        else if (ss_px_owner_state_flag(tok[i].p, tok[i].len) ||
                 (tok[i].p[0] == 'b' && tok[i].len == 1))
            return; /* the copy could not show the owner's win state or binary key */
    }
    size_t off = (size_t)(nl - p) + 1;
    if (!have_f || off + vlen + 2 > n)
        return;
    fill(w, op->lkey, op->nlkey, op->lepoch, flags, cas, ttl, p + off, vlen);
}

/* After a forwarded write: the local copy is set (cas unknown) or dropped. */
static void post_write(struct ss_worker *w, struct px_op *op, bool ok)
{
    uint32_t es = ss_px_epoch_slot_hash(op->lhash);
    struct px_routing *r = pxw(w)->r;
    ss_store_lock_hash(&w->st, op->lhash);
    /* Alone: no other write to the slot began or ended since ours began,
     * and none is still in flight (ours is the 1). */
    bool alone = ss_px_epoch_get(w->dp, es) == op->lepoch && op->in_flight &&
                 atomic_load(op->in_flight) == 1;
    ss_px_epoch_bump(w->dp, es);
    /* A stored value is not stale, unless an md or ms with I pipelined
     * behind our set (so not alone) reached the owner after it. */
    if (ok && alone && op->post == PX_POST_SET)
        ss_px_stale_mark(w->dp, es, false);
    if (ok && alone && op->post == PX_POST_SET && r && r->s.admission != SS_ADMIT_NEVER &&
        (!r->s.admission_max_bytes || op->lvlen <= r->s.admission_max_bytes)) {
        int64_t now = ss_clock_unix_seconds();
        int64_t e = op->lexptime;
        uint32_t cap = r->s.local_ttl_max_s;
        if (cap && (e == 0 || e > now + cap))
            e = now + cap;
        struct ss_item it = {
            .exptime = e,
            .flags = op->lflags,
            .last_access = (uint32_t)now,
            .bits = PX_ITEM_CAS_UNKNOWN | SS_MC_ITEM_UNREAD_AT_OWNER,
        };
        struct iovec iov = {op->lvalue, op->lvlen};
        /* The owner holds the value: our copy needs no device record, index
         * entry or commit, only DRAM (the key was removed when the write
         * began, and fills skip a slot with a write in flight). A value DRAM
         * does not take gets a device copy as before. */
        int rc = ss_store_write_over(&w->st, op->held, op->lkey, op->nlkey, &it, &iov, 1,
                                     SS_WRITE_KEEP_META);
        if (rc == -ENOBUFS)
            rc = ss_store_write(&w->st, op->lkey, op->nlkey, &it, &iov, 1, SS_WRITE_KEEP_META);
        if (rc)
            ss_store_forget(&w->st, op->lkey, op->nlkey);
    } else {
        (void)ss_store_remove(&w->st, op->lkey, op->nlkey); /* an index delete only if kept */
    }
    ss_store_unlock(&w->st);
}

/*
 * An op is over: err is the error line when it failed ("SERVER_ERROR
 * backend ..."), NULL when its whole reply arrived. Frees op.
 */
void ss_px_op_done(struct ss_worker *w, struct px_op *op, const char *err)
{
    struct px_slot *s = op->slot;
    if (op->kind == PX_OP_GETS) {
        if (s) {
            if (err)
                slot_error(s, err, strlen(err));
            else if (op->reply.len)
                slot_error(s, op->reply.data, op->reply.len);
            ss_px_slot_release(w, s);
        }
        ss_px_op_free(op);
        return;
    }
    bool ok = !err;
    if (op->has_key) {
        if (op->post == PX_POST_FILL_MG) {
            if (ok)
                fill_from_mg(w, op);
        } else if (op->post != PX_POST_NONE) {
            const char *rp = op->reply.data ? op->reply.data : "";
            bool stored = op->reply.len >= 2 &&
                          (memcmp(rp, "HD", 2) == 0 ||
                           (op->reply.len >= 6 && memcmp(rp, "STORED", 6) == 0));
            post_write(w, op, ok && stored);
        }
    }
    if (s) {
        if (err) {
            slot_error(s, err, strlen(err));
        } else if (op->answer_bad_line) {
            static const char bad[] = "CLIENT_ERROR bad command line format\r\n";
            slot_error(s, bad, sizeof(bad) - 1);
        } else {
            /* The reply becomes the slot's (no copy); the op keeps the slot's old buffer. */
            struct ss_buf old = s->err;
            s->err = op->reply;
            op->reply = old;
            op->reply.len = 0;
        }
        ss_px_slot_release(w, s);
    }
    ss_px_op_free(op);
}

/*
 * Once per worker loop turn: adopt a new routing table, send queued
 * requests, enforce deadlines, deliver completed replies. Returns the most
 * the loop may sleep (ms) before calling again, or -1 for no limit.
 */
int ss_px_worker_tick(struct ss_worker *w, uint64_t now_ms)
{
    struct px_global *g = ss_dataplane_px(w->dp);
    if (!g)
        return -1;
    struct px_worker *pw = &g->workers[w->id];
    uint64_t gen = atomic_load(&g->generation);
    struct px_routing *r = atomic_load(&g->routing);
    if (r != pw->r)
        ss_px_worker_adopt(w, r);
    if (atomic_load_explicit(&g->seen[w->id], memory_order_relaxed) != gen)
        atomic_store(&g->seen[w->id], gen);
    if (!pw->all && !ss_reply_any_ready(w))
        return -1;
    ss_px_worker_check(w, now_ms);
    ss_reply_deliver(w);
    /* Sending may have been deferred by delivery (clients ran commands). */
    ss_px_worker_check(w, now_ms);
    ss_reply_deliver(w);
    return pw->outstanding ? PX_TICK_MS : -1;
}

/* epoll event on a tagged back-end connection pointer. */
void ss_px_on_event(struct ss_worker *w, void *ptr, uint32_t events)
{
    ss_px_bconn_on_event(w, (struct px_bconn *)((char *)ptr - 1), events);
}

/* Worker stopping (clients already closed): drop every back-end connection. */
void ss_px_worker_fini(struct ss_worker *w)
{
    struct px_global *g = ss_dataplane_px(w->dp);
    if (!g)
        return;
    ss_px_worker_close_all(w);
    ss_px_cache_drain();
}
