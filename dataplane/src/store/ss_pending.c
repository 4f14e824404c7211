/*
 * ss_pending.c - write-behind for the LMDB index (group commit).
 *
 * One index write transaction per set costs several microseconds and puts
 * every worker behind LMDB's single writer lock. Instead, a mutation records
 * its new index entry (or a deletion) in its stripe's `pending` map, under the
 * stripe lock it already holds, and a committer thread writes many of them in
 * one transaction. Readers look at pending, then `committing` (the batch being
 * written), then LMDB, so a reader always sees the latest entry. A key's map
 * keeps only its newest operation, so repeated writes of a hot key coalesce.
 *
 * If a batch cannot be committed (the index is full), its keys are deleted
 * instead and their DRAM copies dropped: an item may be lost, never served
 * stale. A crash loses at most the batch in flight (up to COMMIT_GATHER_NS
 * of writes), which the log's verification already tolerates.
 *
 * A store holding pinned records is the store of record for them, so its
 * index must never name a record a crash would lose: a new entry replaces
 * the old one in the index only once its record is durable (written, in a
 * segment use whose generation is persisted; ss_log_is_durable_locked).
 * Until then the commit leaves it out (`held`) and it goes back to pending
 * for a later batch; lookups see it there all along. Without pinned records
 * entries are committed as soon as they are taken, as in a cache.
 */
#define _GNU_SOURCE /* SCHED_IDLE */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ss_store_internal.h"

#define PEND_MIN_BUCKETS 16u
/*
 * The committer waits up to this long for a batch of this many operations.
 * A crash can lose the batch being gathered, which costs nothing a crash
 * did not already cost: the head segment's records are written only every
 * flush_interval (200 ms by default), and an entry whose record was not
 * written fails verification anyway. Each batch is a transaction and a pass
 * over every stripe; at 1 ms the committer took 5-8% of the appliance's CPU
 * at a few thousand sets a second.
 */
#define COMMIT_GATHER_NS 5000000L
#define COMMIT_BATCH_TARGET 1024u

/*
 * The committer gathers and writes its batches at SCHED_IDLE, so that a
 * worker with a request to answer always has the CPU before it: at normal
 * priority its batches cut into replies, and our depth-1 p99 was about 15%
 * higher (bench/run.py --pin-loadgen, 4 of 4 pairs). Idle priority alone
 * would let a busy machine starve it, and pending ops would grow without
 * bound; so once this many wait, or a thread needs commit_run_lock while it
 * holds it, the committer is raised to normal priority, and it drops back
 * once pending is below half of this. Leaving SCHED_IDLE needs CAP_SYS_NICE
 * or RLIMIT_NICE; where the process has neither, the committer stays at
 * normal priority.
 *
 * An idle thread holding a lock that a worker waits for is a priority
 * inversion: on a busy machine it gets the CPU a few milliseconds a second,
 * and the worker, with every request behind it, waited up to 100 ms (the
 * max of memaslap's depth-16 multi-gets; 10-13 ms with the committer at
 * normal priority). So the committer takes the stripe and log locks only at
 * normal priority (committer_at), and a thread about to wait for LMDB's one
 * writer while the committer writes its transaction at idle raises it
 * (index_writer_waits).
 */
#define COMMIT_URGENT_OPS 16384u

static void committer_boost(struct ss_store *st)
{
    if (!atomic_load(&st->commit_idle) || atomic_load(&st->commit_boosted) ||
        atomic_exchange(&st->commit_boosted, 1))
        return;
    struct sched_param sp = {0};
    if (pthread_setschedparam(st->committer_self, SCHED_OTHER, &sp) == 0)
        atomic_fetch_add(&st->commit_boosts, 1);
}

/* The committer puts itself at idle priority (or back there). */
static void committer_lower(struct ss_store *st)
{
    struct sched_param sp = {0};
    if (pthread_setschedparam(pthread_self(), SCHED_IDLE, &sp)) {
        atomic_store(&st->commit_idle, 0);
        return;
    }
    atomic_store(&st->commit_boosted, 0);
    atomic_store(&st->commit_idle, 1);
    /* a writer that crossed the mark meanwhile saw it boosted still */
    if (atomic_load(&st->pending_ops) >= COMMIT_URGENT_OPS)
        committer_boost(st);
}

/* The committer's own priority for what it does next: SCHED_OTHER before
 * it takes a lock a worker may want, SCHED_IDLE for the index transaction
 * and the wait for a batch. Nothing on any other thread, or while raised by
 * one (committer_boost wins until committer_lower). */
static void committer_at(struct ss_store *st, int policy)
{
    if (!pthread_equal(pthread_self(), st->committer_self) || !atomic_load(&st->commit_idle) ||
        atomic_load(&st->commit_boosted))
        return;
    struct sched_param sp = {0};
    pthread_setschedparam(pthread_self(), policy, &sp);
    /* a raise between the check and the call would be undone by it */
    if (policy == SCHED_IDLE && atomic_load(&st->commit_boosted))
        pthread_setschedparam(pthread_self(), SCHED_OTHER, &sp);
}

/* ss_index's hook before a write transaction: a thread about to wait for
 * LMDB's writer lock raises the committer if it holds it at idle. */
static void index_writer_waits(void *arg)
{
    struct ss_store *st = arg;
    if (atomic_load(&st->commit_in_txn) && !pthread_equal(pthread_self(), st->committer_self))
        committer_boost(st);
}

static uint32_t pend_bucket(const struct ss_pend_map *m, uint64_t hash)
{
    return (uint32_t)(hash >> 24) & (m->nbuckets - 1);
}

static struct ss_pend **pend_link(struct ss_pend_map *m, uint64_t hash, const void *key,
                                  size_t nkey)
{
    struct ss_pend **link = &m->buckets[pend_bucket(m, hash)];
    for (; *link; link = &(*link)->next) {
        struct ss_pend *p = *link;
        if (p->hash == hash && p->nkey == nkey && memcmp(p->key, key, nkey) == 0)
            break;
    }
    return link;
}

struct ss_pend *ss_pend_find(struct ss_pend_map *m, uint64_t hash, const void *key, size_t nkey)
{
    if (!m->count)
        return NULL;
    return *pend_link(m, hash, key, nkey);
}

static void pend_free_all(struct ss_pend_map *m)
{
    for (uint32_t i = 0; i < m->nbuckets && m->count; i++) {
        struct ss_pend *p = m->buckets[i];
        while (p) {
            struct ss_pend *next = p->next;
            free(p);
            m->count--;
            p = next;
        }
        m->buckets[i] = NULL;
    }
    m->count = 0;
}

static int pend_grow(struct ss_pend_map *m)
{
    uint32_t n = m->nbuckets ? m->nbuckets * 2u : PEND_MIN_BUCKETS;
    struct ss_pend **nb = calloc(n, sizeof(*nb));
    if (!nb)
        return -ENOMEM;
    for (uint32_t i = 0; i < m->nbuckets; i++) {
        struct ss_pend *p = m->buckets[i];
        while (p) {
            struct ss_pend *next = p->next;
            uint32_t b = (uint32_t)(p->hash >> 24) & (n - 1);
            p->next = nb[b];
            nb[b] = p;
            p = next;
        }
    }
    free(m->buckets);
    m->buckets = nb;
    m->nbuckets = n;
    return 0;
}

/*
 * Record the newest index operation for a key (stripe lock held): op is
 * SS_PEND_PUT with entry e, or SS_PEND_DEL. Returns 0 or -ENOMEM.
 */
int ss_pend_record(struct ss_store *st, struct ss_stripe *s, uint64_t hash, const void *key,
                   size_t nkey, int op, const struct ss_index_entry *e)
{
    struct ss_pend_map *m = &s->pending;
    if (!m->buckets || m->count >= m->nbuckets * 2u) {
        int rc = pend_grow(m);
        if (rc && !m->buckets)
            return rc;
    }
    struct ss_pend **link = pend_link(m, hash, key, nkey);
    struct ss_pend *p = *link;
    if (!p) {
        p = malloc(sizeof(*p) + nkey);
        if (!p)
            return -ENOMEM;
        p->next = NULL;
        p->hash = hash;
        p->nkey = (uint8_t)nkey;
        p->held = 0;
        memcpy(p->key, key, nkey);
        *link = p;
        /* the committer peeks at count without the stripe lock */
        __atomic_add_fetch(&m->count, 1, __ATOMIC_RELAXED);
        uint64_t waiting = atomic_fetch_add(&st->pending_ops, 1);
        if (waiting == 0) {
            pthread_mutex_lock(&st->commit_lock);
            pthread_cond_signal(&st->commit_cond);
            pthread_mutex_unlock(&st->commit_lock);
        } else if (waiting >= COMMIT_URGENT_OPS) {
            committer_boost(st);
        }
    }
    p->op = (uint8_t)op;
    if (e)
        p->e = *e;
    return 0;
}

/* Mark the committing entries whose records are not durable yet (one pass
 * under the log lock, before the index transaction: log, then index). */
static void mark_held(struct ss_store *st)
{
    struct ss_log *log = &st->log;
    pthread_mutex_lock(&log->lock);
    for (unsigned i = 0; i < SS_STRIPES; i++) {
        struct ss_pend_map *m = &st->stripes[i].committing;
        for (uint32_t b = 0; b < m->nbuckets && m->count; b++)
            for (struct ss_pend *p = m->buckets[b]; p; p = p->next)
                p->held = p->op == SS_PEND_PUT && !ss_log_is_durable_locked(log, &p->e, p->nkey);
    }
    pthread_mutex_unlock(&log->lock);
}

/* LMDB's default key order: the bytes, then the length. */
static int pend_key_order(const void *a, const void *b)
{
    const struct ss_pend *x = *(struct ss_pend *const *)a, *y = *(struct ss_pend *const *)b;
    int c = memcmp(x->key, y->key, x->nkey < y->nkey ? x->nkey : y->nkey);
    return c ? c : (int)x->nkey - (int)y->nkey;
}

/* Visit every committing entry that is not held, until a visit fails. */
static int batch_walk(struct ss_store *st, int (*visit)(void *, struct ss_pend *), void *arg)
{
    int rc = 0;
    for (unsigned i = 0; i < SS_STRIPES && !rc; i++) {
        struct ss_pend_map *m = &st->stripes[i].committing;
        for (uint32_t b = 0; b < m->nbuckets && m->count && !rc; b++)
            for (struct ss_pend *p = m->buckets[b]; p && !rc; p = p->next)
                if (!p->held)
                    rc = visit(arg, p);
    }
    return rc;
}

struct batch_order {
    struct ss_pend **p;
    size_t n, cap;
};

static int order_add(void *arg, struct ss_pend *p)
{
    struct batch_order *o = arg;
    if (o->n < o->cap)
        o->p[o->n++] = p;
    return 0;
}

struct batch_commit {
    struct ss_index_txn *txn;
    unsigned ops;
};

/* One entry into the transaction: its put, or its delete (of a key the
 * index may not have). */
static int commit_visit(void *arg, struct ss_pend *p)
{
    struct batch_commit *bc = arg;
    bc->ops++;
    if (p->op == SS_PEND_PUT)
        return ss_index_txn_put(bc->txn, p->key, p->nkey, &p->e);
    int rc = ss_index_txn_del(bc->txn, p->key, p->nkey);
    return rc == -ENOENT ? 0 : rc;
}

/* Write every committing map in one transaction. Returns 0 or -errno. Each
 * put or delete goes in key order, landing near the last one in the B-tree:
 * that cost 15% less of the committer's LMDB time than hash order (3.5
 * against 4.1 us of CPU per op at 55k sets/s over 171k keys). Without the
 * memory to sort, hash order it is: a failed batch would drop its keys. */
static int commit_batch_txn(struct ss_store *st, unsigned *ops)
{
    struct ss_index_txn *txn;
    int rc = ss_index_begin(st->index, true, &txn);
    if (rc)
        return rc;
    struct batch_commit bc = {txn, 0};
    struct batch_order o = {NULL, 0, 0};
    for (unsigned i = 0; i < SS_STRIPES; i++)
        o.cap += st->stripes[i].committing.count;
    o.p = malloc((o.cap ? o.cap : 1) * sizeof(*o.p));
    if (o.p) {
        batch_walk(st, order_add, &o);
        qsort(o.p, o.n, sizeof(*o.p), pend_key_order);
        for (size_t k = 0; k < o.n && !rc; k++)
            rc = commit_visit(&bc, o.p[k]);
        free(o.p);
    } else {
        rc = batch_walk(st, commit_visit, &bc);
    }
    *ops = bc.ops;
    if (rc) {
        ss_index_abort(txn);
        return rc;
    }
    return ss_index_commit(txn);
}

/* The batch, with the committer at idle priority for its transaction. */
static int commit_batch(struct ss_store *st, unsigned *ops)
{
    if (ss_pinned_any(st))
        mark_held(st);
    /* From here to the commit only LMDB's writer lock is held, and every
     * other writer raises the committer before it waits for that. */
    bool by_committer = pthread_equal(pthread_self(), st->committer_self);
    if (by_committer) {
        atomic_store(&st->commit_in_txn, 1);
        committer_at(st, SCHED_IDLE);
    }
    int rc = commit_batch_txn(st, ops);
    if (by_committer) {
        committer_at(st, SCHED_OTHER); /* stripe and log locks next */
        atomic_store(&st->commit_in_txn, 0);
    }
    return rc;
}

/*
 * A put whose segment use was reopened while it waited for its batch names a
 * record that is gone, and the reclaim of that use (ss_log_writer.c:
 * delete_reclaimed) could not delete it, since it was not in the index yet:
 * it would stay there for good, read as a miss each time and counted by
 * verify-index. So once a batch is in, look under the log lock for its puts
 * of uses reopened (or segments shrunk away) since, and delete each where
 * the index still names that very record. A use reopened after this look is
 * reclaimed from an index that has the put already, so none is missed. Pinned records are copied
 * forward, and their pending entries moved, before their use is reopened
 * (ss_copy_forward.c), and the reclaim leaves pinned entries alone too.
 */
static void drop_overtaken(struct ss_store *st)
{
    struct ss_log *log = &st->log;
    unsigned overtaken = 0;
    pthread_mutex_lock(&log->lock);
    for (unsigned i = 0; i < SS_STRIPES; i++) {
        struct ss_pend_map *m = &st->stripes[i].committing;
        for (uint32_t b = 0; b < m->nbuckets && m->count; b++)
            for (struct ss_pend *p = m->buckets[b]; p; p = p->next) {
                p->overtaken = !p->held && p->op == SS_PEND_PUT &&
                               !(p->e.bits & SS_ITEM_PINNED) &&
                               (p->e.segment >= log->nsegments || /* shrunk away */
                                p->e.seg_gen != log->gens[p->e.segment]);
                overtaken += p->overtaken;
            }
    }
    pthread_mutex_unlock(&log->lock);
    if (!overtaken)
        return;
    struct ss_index_txn *txn;
    if (ss_index_begin(st->index, true, &txn)) {
        st->commit_errors++; /* a lookup drops them instead, one by one */
        return;
    }
    for (unsigned i = 0; i < SS_STRIPES; i++) {
        struct ss_pend_map *m = &st->stripes[i].committing;
        for (uint32_t b = 0; b < m->nbuckets && m->count; b++)
            for (struct ss_pend *p = m->buckets[b]; p; p = p->next) {
                struct ss_index_entry now;
                if (p->overtaken && ss_index_txn_get(txn, p->key, p->nkey, &now) == 0 &&
                    now.segment == p->e.segment && now.seg_gen == p->e.seg_gen &&
                    now.offset == p->e.offset)
                    ss_index_txn_del(txn, p->key, p->nkey);
            }
    }
    if (ss_index_commit(txn))
        st->commit_errors++;
}

/* The batch could not be written: forget its keys everywhere rather than
 * leave an older index entry visible once the batch is dropped. A pinned
 * entry is kept for another batch instead: the store is its record. */
static void commit_failed(struct ss_store *st)
{
    struct ss_index_txn *txn;
    int have_txn = ss_index_begin(st->index, true, &txn) == 0;
    for (unsigned i = 0; i < SS_STRIPES; i++) {
        struct ss_stripe *s = &st->stripes[i];
        pthread_mutex_lock(&s->lock);
        atomic_fetch_add(&st->copies.stripe_gen[i], 1); /* copies outside the store too */
        struct ss_pend_map *m = &s->committing;
        for (uint32_t b = 0; b < m->nbuckets; b++) {
            for (struct ss_pend *p = m->buckets[b]; p; p = p->next) {
                if (p->held)
                    continue; /* not in the batch: it goes back to pending */
                if (p->op == SS_PEND_PUT && (p->e.bits & SS_ITEM_PINNED)) {
                    /* Never dropped: it goes back to pending (its older
                     * entry stays valid in the index meanwhile). */
                    p->held = 1;
                    continue;
                }
                if (have_txn)
                    ss_index_txn_del(txn, p->key, p->nkey);
                /* a newer pending op for the key still stands */
                if (!ss_pend_find(&s->pending, p->hash, p->key, p->nkey))
                    ss_hot_remove(st, s, p->hash, p->key, p->nkey);
            }
        }
        pthread_mutex_unlock(&s->lock);
    }
    if (have_txn && ss_index_commit(txn))
        st->commit_errors++;
}

/* Move every stripe's pending map to committing; returns how many ops. */
static uint64_t take_pending(struct ss_store *st)
{
    uint64_t n = 0;
    for (unsigned i = 0; i < SS_STRIPES; i++) {
        struct ss_stripe *s = &st->stripes[i];
        if (!__atomic_load_n(&s->pending.count, __ATOMIC_RELAXED))
            continue;
        pthread_mutex_lock(&s->lock);
        struct ss_pend_map tmp = s->committing; /* empty, keeps its buckets */
        s->committing = s->pending;
        s->pending = tmp;
        n += s->committing.count;
        pthread_mutex_unlock(&s->lock);
    }
    if (n)
        atomic_fetch_sub(&st->pending_ops, n);
    return n;
}

/* A held entry goes back to pending, unless a newer operation for its key
 * is there already (stripe lock held). The filter hears of it again: a
 * rebuild begun meanwhile must not lose the key (ss_filter.c). */
static void requeue_held(struct ss_store *st, struct ss_stripe *s, struct ss_pend *p)
{
    struct ss_pend_map *m = &s->pending;
    if (ss_pend_find(m, p->hash, p->key, p->nkey)) {
        free(p);
        return;
    }
    if (!m->buckets || m->count >= m->nbuckets * 2u)
        pend_grow(m); /* on failure the chains only get longer */
    if (!m->buckets) {
        /* No table at all: the entry is dropped and the index keeps the old
         * one, so the DRAM copy of the new one must go too. */
        ss_hot_remove(st, s, p->hash, p->key, p->nkey);
        ss_pinned_release(st, &p->e, p->nkey);
        free(p);
        return;
    }
    p->held = 0;
    struct ss_pend **link = &m->buckets[pend_bucket(m, p->hash)];
    p->next = *link;
    *link = p;
    __atomic_add_fetch(&m->count, 1, __ATOMIC_RELAXED);
    atomic_fetch_add(&st->pending_ops, 1);
    ss_filter_note(st, p->hash);
}

/* Empty every committing map. The entries are unlinked under the stripe
 * lock and freed after it: the committer may run at idle priority, and a
 * worker waiting for that lock should not wait on free() too. */
static void release_committing(struct ss_store *st)
{
    for (unsigned i = 0; i < SS_STRIPES; i++) {
        struct ss_stripe *s = &st->stripes[i];
        struct ss_pend_map *m = &s->committing;
        if (!m->count)
            continue;
        struct ss_pend *done = NULL;
        pthread_mutex_lock(&s->lock);
        for (uint32_t b = 0; b < m->nbuckets; b++) {
            struct ss_pend *p = m->buckets[b];
            while (p) {
                struct ss_pend *next = p->next;
                if (p->held) {
                    requeue_held(st, s, p);
                } else {
                    p->next = done;
                    done = p;
                }
                p = next;
            }
            m->buckets[b] = NULL;
        }
        m->count = 0;
        pthread_mutex_unlock(&s->lock);
        while (done) {
            struct ss_pend *next = done->next;
            free(done);
            done = next;
        }
    }
}

uint64_t ss_pend_commit_now(struct ss_store *st, bool *failed)
{
    committer_at(st, SCHED_OTHER); /* the stripe locks first */
    if (pthread_mutex_trylock(&st->commit_run_lock)) {
        /* the committer holds it, and must not finish at idle priority
         * while we wait (the segment writer, a sync, a sweep) */
        if (!pthread_equal(pthread_self(), st->committer_self))
            committer_boost(st);
        pthread_mutex_lock(&st->commit_run_lock);
    }
    uint64_t n = take_pending(st);
    if (failed)
        *failed = false;
    if (n) {
        unsigned ops = 0;
        int rc = commit_batch(st, &ops);
        if (rc) {
            st->commit_errors++;
            commit_failed(st);
            if (failed)
                *failed = true;
        } else {
            drop_overtaken(st);
        }
        release_committing(st);
        atomic_fetch_add(&st->commits, 1);
        atomic_fetch_add(&st->committed_ops, n);
    }
    pthread_mutex_unlock(&st->commit_run_lock);
    committer_at(st, SCHED_IDLE);
    return n;
}

static void *probe_idle_return(void *arg)
{
    struct sched_param sp = {0};
    *(int *)arg = pthread_setschedparam(pthread_self(), SCHED_IDLE, &sp) == 0 &&
                  pthread_setschedparam(pthread_self(), SCHED_OTHER, &sp) == 0;
    return NULL;
}

/* Whether a thread of this process can leave SCHED_IDLE again: tried on a
 * thread of its own, which would otherwise be stuck there. */
static int idle_is_reversible(void)
{
    pthread_t probe;
    int ok = 0;
    if (pthread_create(&probe, NULL, probe_idle_return, &ok))
        return 0;
    pthread_join(probe, NULL);
    return ok;
}

static void *committer_main(void *arg)
{
    struct ss_store *st = arg;
    unsigned turns_stopping = 0;
    st->committer_self = pthread_self();
    pthread_setname_np(pthread_self(), "ss-committer"); /* for top, perf and tests */
    if (idle_is_reversible())
        committer_lower(st);
    for (;;) {
        pthread_mutex_lock(&st->commit_lock);
        while (!st->commit_stop && atomic_load(&st->pending_ops) == 0)
            pthread_cond_wait(&st->commit_cond, &st->commit_lock);
        int stop = st->commit_stop;
        pthread_mutex_unlock(&st->commit_lock);
        /* Let a batch gather: pending entries are already visible to
         * readers, so waiting costs no reply any latency, while committing
         * each write alone would spend a transaction (and a core) per set. */
        if (!stop && atomic_load(&st->pending_ops) < COMMIT_BATCH_TARGET) {
            struct timespec gather = {0, COMMIT_GATHER_NS};
            nanosleep(&gather, NULL);
        }
        ss_pend_commit_now(st, NULL);
        if (!stop && atomic_load(&st->commit_idle) && atomic_load(&st->commit_boosted) &&
            atomic_load(&st->pending_ops) < COMMIT_URGENT_OPS / 2)
            committer_lower(st);
        /* Entries held for their records keep pending_ops up; ss_pend_stop
         * commits once more after the join in any case. */
        if (stop && (atomic_load(&st->pending_ops) == 0 || ++turns_stopping > 3))
            return NULL;
    }
}

int ss_pend_start(struct ss_store *st)
{
    pthread_mutex_init(&st->commit_lock, NULL);
    pthread_mutex_init(&st->commit_run_lock, NULL);
    pthread_cond_init(&st->commit_cond, NULL);
    st->commit_stop = 0;
    atomic_store(&st->commit_idle, 0);
    atomic_store(&st->commit_boosted, 0);
    atomic_store(&st->commit_in_txn, 0);
    ss_index_on_write(st->index, index_writer_waits, st);
    int rc = pthread_create(&st->committer, NULL, committer_main, st);
    if (rc)
        return -rc;
    st->committer_running = 1;
    return 0;
}

/* Commit everything still pending and stop the committer. */
void ss_pend_stop(struct ss_store *st)
{
    if (!st->committer_running)
        return;
    pthread_mutex_lock(&st->commit_lock);
    st->commit_stop = 1;
    pthread_cond_signal(&st->commit_cond);
    pthread_mutex_unlock(&st->commit_lock);
    committer_boost(st); /* its last batches must not wait for an idle CPU */
    pthread_join(st->committer, NULL);
    st->committer_running = 0;
    ss_pend_commit_now(st, NULL);
}

void ss_pend_fini(struct ss_stripe *s)
{
    pend_free_all(&s->pending);
    pend_free_all(&s->committing);
    free(s->pending.buckets);
    free(s->committing.buckets);
    s->pending.buckets = s->committing.buckets = NULL;
    s->pending.nbuckets = s->committing.nbuckets = 0;
}
