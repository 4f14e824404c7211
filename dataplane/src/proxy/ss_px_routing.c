/*
 * ss_px_routing.c - proxy mode's routing table: install and swap
 * (ss_dataplane_set_routing), per-key routing with the failure policies,
 * back-end state and counters, the write epochs that guard fills, and the
 * second-hit admission sketch.
 *
 * A table is immutable once published. Workers load the pointer at each loop
 * turn and record the generation they adopted (seen[]); a table that has
 * been replaced is freed once every running worker has moved past it, from
 * the control plane (the next set_routing or housekeeping call), so a worker
 * never waits on the control plane nor the other way round.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/ss_clock.h"
#include "common/ss_hash.h"
#include "ss_px_internal.h"
#include "server/ss_server.h"

static void px_err(char *err, size_t errlen, const char *msg, const char *name)
{
    if (err && errlen)
        snprintf(err, errlen, "%s%s%s", msg, name ? ": " : "", name ? name : "");
}

/* Proxy state of dp (created with the data plane). */
struct px_global *ss_px_global(struct ss_dataplane *dp)
{
    return (struct px_global *)ss_dataplane_px(dp);
}

/* Allocate the process-wide proxy state. Returns 0 or -ENOMEM. */
int ss_px_init(struct ss_dataplane *dp)
{
    struct px_global *g = calloc(1, sizeof(*g));
    if (!g)
        return -ENOMEM;
    g->nworkers = ss_dataplane_nworkers(dp);
    g->seen = calloc((size_t)ss_dataplane_nworkers(dp), sizeof(*g->seen));
    g->workers = calloc((size_t)ss_dataplane_nworkers(dp), sizeof(*g->workers));
    g->key_slots = calloc(PX_EPOCH_SLOTS, sizeof(*g->key_slots));
    g->stale_maybe = calloc(PX_EPOCH_SLOTS, sizeof(*g->stale_maybe));
    g->sketch[0] = calloc(PX_SKETCH_BITS / 64, sizeof(uint64_t));
    g->sketch[1] = calloc(PX_SKETCH_BITS / 64, sizeof(uint64_t));
    ss_dataplane_set_px(dp, g);
    for (int i = 0; g->workers && i < g->nworkers; i++)
        ss_dataplane_worker(dp, i)->px = &g->workers[i];
    if (!g->seen || !g->workers || !g->key_slots || !g->stale_maybe || !g->sketch[0] ||
        !g->sketch[1])
        return -ENOMEM;
    return 0;
}

static void routing_free(struct px_routing *r)
{
    if (!r)
        return;
    for (uint32_t i = 0; i < r->nbackends; i++) {
        free(r->backends[i].name);
        free(r->backends[i].host);
    }
    for (uint32_t i = 0; i < r->nrings; i++) {
        free(r->rings[i].name);
        free(r->rings[i].points);
        free(r->rings[i].members);
        free(r->rings[i].index);
    }
    free(r->backends);
    free(r->rings);
    free(r->stats);
    free(r);
}

/* After every worker has returned (ss_dataplane_destroy). */
void ss_px_free(struct ss_dataplane *dp)
{
    struct px_global *g = ss_dataplane_px(dp);
    if (!g)
        return;
    routing_free(atomic_load(&g->routing));
    while (g->retired) {
        struct px_routing *n = g->retired->retired_next;
        routing_free(g->retired);
        g->retired = n;
    }
    free(g->seen);
    free(g->workers);
    free(g->key_slots);
    free(g->stale_maybe);
    free(g->sketch[0]);
    free(g->sketch[1]);
    for (int i = 0; i < g->nworkers; i++)
        ss_dataplane_worker(dp, i)->px = NULL;
    free(g);
    ss_dataplane_set_px(dp, NULL);
}

/* Free retired tables no running worker can still hold (control thread). */
int ss_px_backend_index(const struct px_routing *r, const char *host, int port)
{
    for (uint32_t j = 0; r && j < r->nbackends; j++)
        if (r->backends[j].port == port && strcmp(r->backends[j].host, host) == 0)
            return (int)j;
    return -1;
}

/* Add retired table old's totals (and what it carried) to the same host:port
 * of the current table; ctl_lock held, old no longer written by any worker. */
static void carry_counters(struct px_routing *cur, const struct px_routing *old)
{
    if (!cur)
        return;
    for (uint32_t b = 0; b < old->nbackends; b++) {
        const struct px_backend *ob = &old->backends[b];
        int j = ss_px_backend_index(cur, ob->host, ob->port);
        if (j < 0)
            continue;
        struct px_backend *nb = &cur->backends[j];
        struct px_bcarried *c = &nb->carried;
        c->requests += ob->carried.requests;
        c->errors += ob->carried.errors;
        c->timeouts += ob->carried.timeouts;
        for (int i = 0; i < SS_BACKEND_LATENCY_BUCKETS; i++)
            c->latency_us[i] += ob->carried.latency_us[i];
        for (int w = 0; w < old->nworkers; w++) {
            const struct px_bstat *s = &old->stats[(size_t)b * (size_t)old->nworkers + (size_t)w];
            c->requests += s->requests;
            c->errors += s->errors;
            c->timeouts += s->timeouts;
            for (int i = 0; i < SS_BACKEND_LATENCY_BUCKETS; i++)
                c->latency_us[i] += s->latency_us[i];
        }
        atomic_fetch_add(&nb->state_changes, atomic_load(&ob->state_changes));
    }
}

static void reap_retired(struct ss_dataplane *dp)
{
    struct px_global *g = ss_dataplane_px(dp);
    uint64_t low = atomic_load(&g->generation);
    for (int i = 0; i < ss_dataplane_nworkers(dp); i++) {
        if (!ss_dataplane_worker_running(dp, i))
            continue;
        uint64_t s = atomic_load(&g->seen[i]);
        if (s < low)
            low = s;
    }
    struct px_routing **pp = &g->retired;
    while (*pp) {
        struct px_routing *r = *pp;
        if (r->generation < low) {
            *pp = r->retired_next;
            carry_counters(atomic_load(&g->routing), r);
            routing_free(r);
        } else {
            pp = &r->retired_next;
        }
    }
}

/* Control plane, every ~100 ms: reap tables, rotate the admission sketch. */
void ss_px_housekeep(struct ss_dataplane *dp)
{
    struct px_global *g = ss_dataplane_px(dp);
    if (!g)
        return;
    pthread_mutex_lock(ss_dataplane_ctl_lock(dp));
    reap_retired(dp);
    pthread_mutex_unlock(ss_dataplane_ctl_lock(dp));
    struct px_routing *r = atomic_load(&g->routing);
    uint64_t now = ss_clock_mono_ms();
    uint64_t window = r && r->s.admission_window_ms ? r->s.admission_window_ms : 10000;
    if (now - atomic_load(&g->sketch_rotated_ms) >= window) {
        uint32_t old = atomic_load(&g->sketch_cur) ^ 1u;
        /* The previous window's bits are dropped; the current becomes previous. */
        memset((void *)g->sketch[old], 0, PX_SKETCH_BITS / 8);
        atomic_store(&g->sketch_cur, old);
        atomic_store(&g->sketch_rotated_ms, now);
    }
}

static int copy_ring(struct px_ring *d, const struct ss_ring_settings *s, uint32_t nbackends)
{
    d->name = strdup(s->name ? s->name : "");
    d->distribution = s->distribution;
    d->npoints = s->npoints;
    d->nmembers = s->nmembers;
    d->points = calloc(s->npoints ? s->npoints : 1, sizeof(*d->points));
    d->members = calloc(s->nmembers ? s->nmembers : 1, sizeof(*d->members));
    if (!d->name || !d->points || !d->members)
        return -ENOMEM;
    for (uint32_t i = 0; i < s->npoints; i++) {
        if (s->points[i].backend >= nbackends)
            return -EINVAL;
        d->points[i] = s->points[i];
    }
    for (uint32_t i = 0; i < s->nmembers; i++) {
        if (s->members[i] >= nbackends)
            return -EINVAL;
        d->members[i] = s->members[i];
    }
    if ((d->distribution == SS_DIST_KETAMA && d->npoints == 0) ||
        (d->distribution == SS_DIST_MODULA && d->nmembers == 0) || d->distribution > 1)
        return -EINVAL;
    d->view.name = d->name;
    d->view.distribution = d->distribution;
    d->view.points = d->points;
    d->view.npoints = d->npoints;
    d->view.members = d->members;
    d->view.nmembers = d->nmembers;
    if (d->distribution == SS_DIST_KETAMA) {
        /* Every forwarded key looks its owner up: through one slice of the
         * ring rather than a binary search over all of it. */
        uint32_t bits = ss_ring_index_bits(d->npoints);
        d->index = malloc(((size_t)(1u << bits) + 1) * sizeof(*d->index));
        if (!d->index)
            return -ENOMEM;
        ss_ring_index_build(&d->view, bits, d->index);
        d->view.index = d->index;
        d->view.index_bits = bits;
    }
    return 0;
}

/*
 * Install or replace the routing table (ss_proxy.h). The table is copied and
 * published with one atomic store; workers adopt it at their next loop turn
 * (they are woken so an idle one does not wait for its sweep).
 */
int ss_dataplane_set_routing(struct ss_dataplane *dp, const struct ss_routing_settings *rs,
                             char *err, size_t errlen)
{
    if (!dp || !ss_dataplane_px(dp))
        return -EINVAL;
    struct px_global *g = ss_dataplane_px(dp);
    struct px_routing *r = NULL;
    int rc = 0;

    if (rs && rs->nbackends) {
        if (rs->hash >= SS_HASH__COUNT || rs->nrings == 0 || !rs->rings || !rs->backends) {
            px_err(err, errlen, "routing: bad hash kind or no ring", NULL);
            return -EINVAL;
        }
        r = calloc(1, sizeof(*r));
        if (!r)
            goto nomem;
        r->s = *rs;
        r->s.backends = NULL;
        r->s.rings = NULL;
        if (r->s.connections_per_backend == 0)
            r->s.connections_per_backend = 1;
        if (r->s.connections_per_backend > 64)
            r->s.connections_per_backend = 64;
        r->nworkers = ss_dataplane_nworkers(dp);
        r->nbackends = rs->nbackends;
        r->nrings = rs->nrings;
        r->backends = calloc(rs->nbackends, sizeof(*r->backends));
        r->rings = calloc(rs->nrings, sizeof(*r->rings));
        r->stats = aligned_alloc(64, sizeof(struct px_bstat) * rs->nbackends *
                                         (size_t)ss_dataplane_nworkers(dp));
        if (!r->backends || !r->rings || !r->stats)
            goto nomem;
        memset(r->stats, 0, sizeof(struct px_bstat) * rs->nbackends * (size_t)ss_dataplane_nworkers(dp));
        for (uint32_t i = 0; i < rs->nbackends; i++) {
            const struct ss_backend_settings *b = &rs->backends[i];
            struct px_backend *d = &r->backends[i];
            struct sockaddr_storage ss;
            socklen_t sl;
            d->s = *b;
            d->name = strdup(b->name ? b->name : "");
            d->host = strdup(b->host ? b->host : "");
            if (!d->name || !d->host)
                goto nomem;
            d->s.name = d->name;
            d->s.host = d->host;
            d->port = b->port;
            if (b->port <= 0 || b->port > 65535 || ss_px_parse_addr(d->host, d->port, &ss, &sl)) {
                px_err(err, errlen, "backends: host must be a numeric address with a port",
                       d->name);
                rc = -EINVAL;
                goto fail;
            }
            if (b->policy == SS_POLICY_FAILOVER &&
                (b->failover_ring < 1 || (uint32_t)b->failover_ring >= rs->nrings)) {
                px_err(err, errlen, "backends: failover_ring names no spare ring", d->name);
                rc = -EINVAL;
                goto fail;
            }
            if (d->s.failure_limit == 0)
                d->s.failure_limit = 1;
            if (d->s.request_timeout_ms == 0)
                d->s.request_timeout_ms = 500;
            if (d->s.connect_timeout_ms == 0)
                d->s.connect_timeout_ms = 200;
            atomic_store(&d->state, b->initial_state <= SS_BACKEND_EJECTED ? b->initial_state
                                                                            : SS_BACKEND_UP);
        }
        for (uint32_t i = 0; i < rs->nrings; i++) {
            rc = copy_ring(&r->rings[i], &rs->rings[i], rs->nbackends);
            if (rc == -EINVAL) {
                px_err(err, errlen, "routing: ring is empty or names an unknown back end",
                       rs->rings[i].name);
                goto fail;
            }
            if (rc)
                goto nomem;
        }
    }

    pthread_mutex_lock(ss_dataplane_ctl_lock(dp));
    r ? (r->generation = atomic_load(&g->generation) + 1) : 0;
    struct px_routing *old = atomic_exchange(&g->routing, r);
    atomic_fetch_add(&g->generation, 1);
    if (old) {
        old->retired_next = g->retired;
        g->retired = old;
    }
    reap_retired(dp);
    pthread_mutex_unlock(ss_dataplane_ctl_lock(dp));
    for (int i = 0; i < ss_dataplane_nworkers(dp); i++)
        ss_worker_wake(ss_dataplane_worker(dp, i));
    return 0;

nomem:
    px_err(err, errlen, "out of memory installing the routing table", NULL);
    rc = -ENOMEM;
fail:
    routing_free(r);
    return rc;
}

int ss_dataplane_backend_count(struct ss_dataplane *dp)
{
    if (!dp || !ss_dataplane_px(dp))
        return 0;
    struct px_routing *r = atomic_load(&((struct px_global *)ss_dataplane_px(dp))->routing);
    return r ? (int)r->nbackends : 0;
}

/* Sum one back end's counters over workers. Returns 0 or -ENOENT. */
int ss_dataplane_backend_stats(struct ss_dataplane *dp, uint32_t idx, struct ss_backend_stats *out)
{
    if (!dp || !ss_dataplane_px(dp) || !out)
        return -EINVAL;
    pthread_mutex_lock(ss_dataplane_ctl_lock(dp)); /* keeps the table from being reaped */
    struct px_routing *r = atomic_load(&((struct px_global *)ss_dataplane_px(dp))->routing);
    if (!r || idx >= r->nbackends) {
        pthread_mutex_unlock(ss_dataplane_ctl_lock(dp));
        return -ENOENT;
    }
    memset(out, 0, sizeof(*out));
    const struct px_bcarried *c = &r->backends[idx].carried;
    out->requests = c->requests;
    out->errors = c->errors;
    out->timeouts = c->timeouts;
    for (int i = 0; i < SS_BACKEND_LATENCY_BUCKETS; i++)
        out->latency_us[i] = c->latency_us[i];
    for (int w = 0; w < r->nworkers; w++) {
        const volatile struct px_bstat *s = ss_px_bstat(r, idx, w);
        out->requests += s->requests;
        out->errors += s->errors;
        out->timeouts += s->timeouts;
        out->in_flight += s->in_flight;
        for (int i = 0; i < SS_BACKEND_LATENCY_BUCKETS; i++)
            out->latency_us[i] += s->latency_us[i];
    }
    out->state = atomic_load(&r->backends[idx].state);
    out->consecutive_failures = atomic_load(&r->backends[idx].consecutive_failures);
    out->state_changes = atomic_load(&r->backends[idx].state_changes);
    pthread_mutex_unlock(ss_dataplane_ctl_lock(dp));
    return 0;
}

/* Operator or prober: set a back end's state. Returns 0, -ENOENT, -EINVAL. */
int ss_dataplane_backend_set_state(struct ss_dataplane *dp, uint32_t idx, uint32_t state)
{
    if (!dp || !ss_dataplane_px(dp) || state > SS_BACKEND_EJECTED)
        return -EINVAL;
    pthread_mutex_lock(ss_dataplane_ctl_lock(dp));
    struct px_routing *r = atomic_load(&((struct px_global *)ss_dataplane_px(dp))->routing);
    int rc = -ENOENT;
    if (r && idx < r->nbackends) {
        struct px_backend *b = &r->backends[idx];
        if (atomic_exchange(&b->state, state) != state)
            atomic_fetch_add(&b->state_changes, 1);
        if (state == SS_BACKEND_UP)
            atomic_store(&b->consecutive_failures, 0);
        rc = 0;
    }
    pthread_mutex_unlock(ss_dataplane_ctl_lock(dp));
    return rc;
}

/* A failure on back end b (connection, timeout, garbage): failure_limit in
 * a row marks it DOWN. */
void ss_px_backend_failed(struct px_routing *r, uint32_t b)
{
    struct px_backend *be = &r->backends[b];
    uint32_t n = atomic_fetch_add(&be->consecutive_failures, 1) + 1;
    if (n >= be->s.failure_limit) {
        uint32_t up = SS_BACKEND_UP;
        if (atomic_compare_exchange_strong(&be->state, &up, SS_BACKEND_DOWN))
            atomic_fetch_add(&be->state_changes, 1);
    }
}

void ss_px_backend_ok(struct px_routing *r, uint32_t b)
{
    struct px_backend *be = &r->backends[b];
    if (atomic_load_explicit(&be->consecutive_failures, memory_order_relaxed))
        atomic_store(&be->consecutive_failures, 0);
}

static inline bool usable(const struct px_routing *r, uint32_t b)
{
    return atomic_load_explicit(&r->backends[b].state, memory_order_relaxed) == SS_BACKEND_UP;
}

static int usable_cb(const void *ctx, uint32_t b)
{
    return usable((const struct px_routing *)ctx, b);
}

/* The first UP back end at or after the key's place on ring ri (eject). */
static int ring_walk(const struct px_routing *r, uint32_t ri, uint32_t h)
{
    uint32_t b = ss_ring_walk(&r->rings[ri].view, h, usable_cb, r);
    return b == UINT32_MAX ? -1 : (int)b;
}

/*
 * The back end that serves key now: its owner on the primary ring when UP;
 * otherwise per the owner's policy. Returns -1 with *why ("down",
 * "unavailable") when the request must be refused.
 */
int ss_px_route(const struct px_routing *r, const char *key, size_t nkey, const char **why)
{
    uint32_t h = ss_hash_key(r->s.hash, key, nkey);
    uint32_t b = ss_ring_lookup(&r->rings[0].view, h);
    if (b >= r->nbackends) {
        *why = "unavailable";
        return -1;
    }
    if (usable(r, b))
        return (int)b;
    const struct px_backend *be = &r->backends[b];
    int alt = -1;
    uint32_t st = atomic_load_explicit(&be->state, memory_order_relaxed);
    /* DRAINING and EJECTED are operator decisions: always remap. */
    if (be->s.policy == SS_POLICY_FAIL && st == SS_BACKEND_DOWN) {
        *why = "down";
        return -1;
    }
    if (be->s.policy == SS_POLICY_FAILOVER) {
        uint32_t ri = (uint32_t)be->s.failover_ring;
        uint32_t fb = ss_ring_lookup(&r->rings[ri].view, h);
        alt = fb < r->nbackends && usable(r, fb) ? (int)fb : ring_walk(r, ri, h);
    } else {
        alt = ring_walk(r, 0, h);
    }
    if (alt < 0)
        *why = "unavailable";
    return alt;
}

/* "SERVER_ERROR backend <owner> <why>" (no CRLF) for an unroutable key. */
void ss_px_route_error(const struct px_routing *r, const char *key, size_t nkey,
                       const char *why, char *line, size_t n)
{
    uint32_t o = ss_ring_lookup(&r->rings[0].view, ss_hash_key(r->s.hash, key, nkey));
    snprintf(line, n, "SERVER_ERROR backend %s %s", o < r->nbackends ? r->backends[o].name : "?",
             why ? why : "down");
}

uint32_t ss_px_epoch_slot_hash(uint64_t hash)
{
    return (uint32_t)(hash >> 20) & (PX_EPOCH_SLOTS - 1);
}

uint32_t ss_px_epoch_slot(const char *key, size_t nkey)
{
    return ss_px_epoch_slot_hash(ss_hash64(key, nkey));
}

void ss_px_prefetch_key(struct ss_dataplane *dp, uint64_t hash)
{
    struct px_global *g = ss_dataplane_px(dp);
    if (!g || !g->key_slots)
        return;
    uint32_t slot = ss_px_epoch_slot_hash(hash);
    __builtin_prefetch(&g->key_slots[slot], 1);
    __builtin_prefetch(&g->stale_maybe[slot]); /* a get of the key reads it */
}

/* A slot's epoch moves with its writes and with every flush_all (the sum of
 * two counters that only grow changes when either does). */
uint32_t ss_px_epoch_get(struct ss_dataplane *dp, uint32_t slot)
{
    struct px_global *g = ss_dataplane_px(dp);
    return atomic_load(&g->key_slots[slot].epoch) + atomic_load(&g->flushes);
}

void ss_px_epoch_bump_all(struct ss_dataplane *dp)
{
    atomic_fetch_add(&((struct px_global *)ss_dataplane_px(dp))->flushes, 1);
}

void ss_px_epoch_bump(struct ss_dataplane *dp, uint32_t slot)
{
    atomic_fetch_add(&((struct px_global *)ss_dataplane_px(dp))->key_slots[slot].epoch, 1);
}

bool ss_px_stale_maybe(struct ss_dataplane *dp, uint32_t slot)
{
    return atomic_load_explicit(&((struct px_global *)ss_dataplane_px(dp))->stale_maybe[slot],
                                memory_order_relaxed);
}

void ss_px_stale_mark(struct ss_dataplane *dp, uint32_t slot, bool maybe)
{
    atomic_store_explicit(&((struct px_global *)ss_dataplane_px(dp))->stale_maybe[slot], maybe,
                          memory_order_relaxed);
}

_Atomic uint32_t *ss_px_writes_in_flight(struct ss_dataplane *dp, uint32_t slot)
{
    return &((struct px_global *)ss_dataplane_px(dp))->key_slots[slot].writes_in_flight;
}

/* May a fetched value of vlen bytes be kept locally? (admission policy) */
bool ss_px_admit(struct ss_dataplane *dp, const struct px_routing *r, const char *key,
                 size_t nkey, size_t vlen)
{
    if (r->s.admission == SS_ADMIT_NEVER)
        return false;
    if (r->s.admission_max_bytes && vlen > r->s.admission_max_bytes)
        return false;
    if (r->s.admission == SS_ADMIT_ALWAYS)
        return true;
    struct px_global *g = ss_dataplane_px(dp);
    uint64_t h = ss_hash64(key, nkey);
    uint32_t bit = (uint32_t)h & (PX_SKETCH_BITS - 1);
    uint64_t mask = 1ull << (bit & 63);
    uint32_t cur = atomic_load_explicit(&g->sketch_cur, memory_order_relaxed);
    uint64_t before = atomic_fetch_or(&g->sketch[cur][bit / 64], mask);
    uint64_t prev = atomic_load_explicit(&g->sketch[cur ^ 1u][bit / 64], memory_order_relaxed);
    return (before & mask) || (prev & mask);
}

static uint64_t percentile_us(const struct ss_backend_stats *s, double q)
{
    uint64_t total = 0, seen = 0;
    for (int i = 0; i < SS_BACKEND_LATENCY_BUCKETS; i++)
        total += s->latency_us[i];
    if (!total)
        return 0;
    uint64_t want = (uint64_t)(q * (double)total);
    for (int i = 0; i < SS_BACKEND_LATENCY_BUCKETS; i++) {
        seen += s->latency_us[i];
        if (seen > want)
            return 1ull << i; /* the bucket's upper bound */
    }
    return 1ull << (SS_BACKEND_LATENCY_BUCKETS - 1);
}

/* `stats`: per back end, STAT backend:<name>:<field> <value>. */
void ss_px_stats(struct ss_conn *c)
{
    struct ss_dataplane *dp = c->w->dp;
    struct px_global *g = ss_dataplane_px(dp);
    static const char *const states[] = {"up", "down", "draining", "ejected"};
    if (!g)
        return;
    int n = ss_dataplane_backend_count(dp);
    for (int i = 0; i < n; i++) {
        struct ss_backend_stats s;
        char name[128];
        pthread_mutex_lock(ss_dataplane_ctl_lock(dp));
        struct px_routing *r = atomic_load(&g->routing);
        int ok = r && (uint32_t)i < r->nbackends;
        if (ok)
            snprintf(name, sizeof(name), "%s", r->backends[i].name);
        pthread_mutex_unlock(ss_dataplane_ctl_lock(dp));
        if (!ok || ss_dataplane_backend_stats(dp, (uint32_t)i, &s))
            continue;
        char line[320];
        int len;
#define PX_STAT(field, fmt, val)                                                         \
        len = snprintf(line, sizeof(line), "STAT backend:%s:" field " " fmt "\r\n", name, val); \
        ss_mc_out(c, line, (size_t)len);
        PX_STAT("state", "%s", s.state <= SS_BACKEND_EJECTED ? states[s.state] : "?");
        PX_STAT("requests", "%llu", (unsigned long long)s.requests);
        PX_STAT("errors", "%llu", (unsigned long long)s.errors);
        PX_STAT("timeouts", "%llu", (unsigned long long)s.timeouts);
        PX_STAT("in_flight", "%llu", (unsigned long long)s.in_flight);
        PX_STAT("state_changes", "%llu", (unsigned long long)s.state_changes);
        PX_STAT("p50_us", "%llu", (unsigned long long)percentile_us(&s, 0.50));
        PX_STAT("p99_us", "%llu", (unsigned long long)percentile_us(&s, 0.99));
#undef PX_STAT
    }
}
