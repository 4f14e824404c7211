/*
 * ss_balance.c - keep TCP connections even across workers.
 *
 * The kernel spreads connections over the workers' SO_REUSEPORT sockets by
 * flow hash, so 50 connections on 2 workers typically split 28/22 and
 * sometimes 32/18; the busier worker then sets the tail latency. memcached
 * deals connections round-robin. Here a worker that accepts a connection
 * while it holds more than the least loaded running worker (plus one) hands
 * the socket over: a small queue per worker, and a write to its eventfd.
 * Memcached and HTTP connections alike: the objects plane's 1 MiB hits set
 * their tail by the busier worker just as gets do (bench/objects.py).
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ss_server_internal.h"

#define SS_HANDOFF_MAX 256

struct ss_handoff {
    pthread_mutex_t lock;
    unsigned n;
    int fds[SS_HANDOFF_MAX];
    int protos[SS_HANDOFF_MAX]; /* enum ss_proto of each: memcached or HTTP */
} __attribute__((aligned(64)));

int ss_balance_init(struct ss_dataplane *dp)
{
    dp->handoffs = calloc((size_t)dp->nworkers, sizeof(struct ss_handoff));
    if (!dp->handoffs)
        return -ENOMEM;
    for (int i = 0; i < dp->nworkers; i++)
        pthread_mutex_init(&dp->handoffs[i].lock, NULL);
    return 0;
}

/* Close what was handed over but never picked up (at destroy). */
void ss_balance_free(struct ss_dataplane *dp)
{
    if (!dp->handoffs)
        return;
    for (int i = 0; i < dp->nworkers; i++) {
        struct ss_handoff *h = &dp->handoffs[i];
        for (unsigned k = 0; k < h->n; k++) {
            close(h->fds[k]);
            atomic_fetch_sub_explicit(&dp->nconns, 1, memory_order_relaxed);
        }
        pthread_mutex_destroy(&h->lock);
    }
    free(dp->handoffs);
    dp->handoffs = NULL;
}

static unsigned load_of(struct ss_dataplane *dp, int i)
{
    return __atomic_load_n(&dp->workers[i].nconns, __ATOMIC_RELAXED) +
           __atomic_load_n(&dp->handoffs[i].n, __ATOMIC_RELAXED);
}

/*
 * Called by worker w for a freshly accepted fd (already counted in
 * dp->nconns). Returns 1 if another worker now owns fd, 0 to keep it.
 */
int ss_balance_maybe_hand_off(struct ss_worker *w, int fd, int proto)
{
    struct ss_dataplane *dp = w->dp;
    if (dp->nworkers < 2 || !dp->handoffs)
        return 0;
    int best = -1;
    unsigned best_load = 0;
    for (int i = 0; i < dp->nworkers; i++) {
        if (i == w->id || !atomic_load_explicit(&dp->running[i], memory_order_relaxed))
            continue;
        unsigned l = load_of(dp, i);
        if (best < 0 || l < best_load) {
            best = i;
            best_load = l;
        }
    }
    if (best < 0 || load_of(dp, w->id) <= best_load + 1)
        return 0;
    struct ss_handoff *h = &dp->handoffs[best];
    pthread_mutex_lock(&h->lock);
    int queued = h->n < SS_HANDOFF_MAX;
    if (queued) {
        h->fds[h->n] = fd;
        h->protos[h->n] = proto;
        __atomic_store_n(&h->n, h->n + 1, __ATOMIC_RELAXED);
    }
    pthread_mutex_unlock(&h->lock);
    if (!queued)
        return 0;
    uint64_t one = 1;
    if (write(dp->workers[best].wakefd, &one, sizeof(one)) < 0) {
        /* the eventfd counter cannot overflow in practice; the worker also
         * drains its queue on every wake-up, so nothing is lost */
    }
    return 1;
}

unsigned ss_dataplane_worker_connections(struct ss_dataplane *dp, int worker_id)
{
    if (worker_id < 0 || worker_id >= dp->nworkers)
        return 0;
    return __atomic_load_n(&dp->workers[worker_id].nconns, __ATOMIC_RELAXED);
}

/* Open the connections handed to w (on its wake-up). */
void ss_balance_drain(struct ss_worker *w)
{
    struct ss_dataplane *dp = w->dp;
    if (!dp->handoffs)
        return;
    struct ss_handoff *h = &dp->handoffs[w->id];
    int fds[SS_HANDOFF_MAX], protos[SS_HANDOFF_MAX];
    pthread_mutex_lock(&h->lock);
    unsigned n = h->n;
    for (unsigned k = 0; k < n; k++) {
        fds[k] = h->fds[k];
        protos[k] = h->protos[k];
    }
    __atomic_store_n(&h->n, 0, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&h->lock);
    for (unsigned k = 0; k < n; k++) {
        struct sockaddr_storage peer;
        socklen_t len = sizeof(peer);
        if (getpeername(fds[k], (struct sockaddr *)&peer, &len) < 0)
            len = 0;
        if (ss_conn_open(w, fds[k], len ? &peer : NULL, len, protos[k]) < 0) {
            close(fds[k]);
            atomic_fetch_sub_explicit(&dp->nconns, 1, memory_order_relaxed);
        }
    }
}
