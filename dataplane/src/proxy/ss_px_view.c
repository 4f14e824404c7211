/*
 * ss_px_view.c - copies of the routing table for other planes
 * (ss_px_routing.h): the generation to watch, a copy of the primary ring and
 * the back ends, and a refresh of their health.
 *
 * The control lock is what keeps a table from being reaped while it is read
 * (ss_px_routing.c frees retired tables under it), so both copies are taken
 * with it held, and the generation read under it is exactly the copied
 * table's: set_routing publishes a table and bumps the generation inside the
 * same critical section.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "server/ss_server.h"
#include "ss_px_internal.h"

uint64_t ss_px_routing_generation(struct ss_dataplane *dp)
{
    const struct px_global *g = ss_dataplane_px(dp);
    return g ? atomic_load_explicit(&g->generation, memory_order_acquire) : 0;
}

void ss_px_route_copy_free(struct ss_px_route_copy *copy)
{
    free((void *)copy->ring.points);
    free((void *)copy->ring.members);
    free((void *)copy->ring.index);
    free(copy->be_addr);
    free(copy->be_port);
    free(copy->policy);
    free(copy->up);
    memset(copy, 0, sizeof(*copy));
}

/* Back-end states of t into copy->up (ctl_lock held, same table). */
static void copy_health(struct ss_px_route_copy *copy, const struct px_routing *t)
{
    for (uint32_t i = 0; i < copy->nbackends; i++)
        copy->up[i] = atomic_load_explicit(&t->backends[i].state, memory_order_relaxed) ==
                      SS_BACKEND_UP;
}

/* Fill d from table t (ctl_lock held). Returns 0 or -ENOMEM (d half filled). */
static int copy_table(struct ss_px_route_copy *d, const struct px_routing *t)
{
    const struct px_ring *ring = &t->rings[0];
    size_t nindex = ((size_t)1 << ring->view.index_bits) + 1;
    size_t nb = t->nbackends ? t->nbackends : 1;
    /* Assigned to d as soon as allocated, so a failure frees them with d. */
    struct ss_ring_point *points = calloc(ring->npoints ? ring->npoints : 1, sizeof(*points));
    uint32_t *members = calloc(ring->nmembers ? ring->nmembers : 1, sizeof(*members));
    uint32_t *index = ring->view.index ? calloc(nindex, sizeof(*index)) : NULL;
    d->ring.points = points;
    d->ring.members = members;
    d->ring.index = index;
    d->be_addr = calloc(nb, sizeof(*d->be_addr));
    d->be_port = calloc(nb, sizeof(*d->be_port));
    d->policy = calloc(nb, sizeof(*d->policy));
    d->up = calloc(nb, sizeof(*d->up));
    if (!points || !members || (ring->view.index && !index) || !d->be_addr || !d->be_port ||
        !d->policy || !d->up)
        return -ENOMEM;
    memcpy(points, ring->points, ring->npoints * sizeof(*points));
    memcpy(members, ring->members, ring->nmembers * sizeof(*members));
    if (index)
        memcpy(index, ring->view.index, nindex * sizeof(*index));
    d->ring.distribution = ring->view.distribution;
    d->ring.npoints = ring->view.npoints;
    d->ring.nmembers = ring->view.nmembers;
    d->ring.index_bits = ring->view.index_bits;
    d->hash = t->s.hash;
    d->nbackends = t->nbackends;
    for (uint32_t i = 0; i < t->nbackends; i++) {
        struct in_addr a;
        d->be_addr[i] = inet_pton(AF_INET, t->backends[i].host, &a) == 1 ? ntohl(a.s_addr) : 0;
        d->be_port[i] = (uint16_t)t->backends[i].port;
        d->policy[i] = (uint8_t)t->backends[i].s.policy;
    }
    copy_health(d, t);
    return 0;
}

int ss_px_route_copy(struct ss_dataplane *dp, struct ss_px_route_copy *out)
{
    memset(out, 0, sizeof(*out));
    struct px_global *g = ss_dataplane_px(dp);
    if (!g)
        return -ENOENT;
    int rc = -ENOENT;
    pthread_mutex_lock(ss_dataplane_ctl_lock(dp));
    const struct px_routing *t = atomic_load(&g->routing);
    uint64_t generation = atomic_load(&g->generation);
    if (t && t->nrings)
        rc = copy_table(out, t);
    pthread_mutex_unlock(ss_dataplane_ctl_lock(dp));
    if (rc == -ENOMEM)
        ss_px_route_copy_free(out);
    out->generation = generation;
    return rc;
}

int ss_px_route_refresh_health(struct ss_dataplane *dp, struct ss_px_route_copy *copy)
{
    struct px_global *g = ss_dataplane_px(dp);
    if (!g)
        return -ESTALE;
    int rc = -ESTALE;
    pthread_mutex_lock(ss_dataplane_ctl_lock(dp));
    const struct px_routing *t = atomic_load(&g->routing);
    if (t && t->generation == copy->generation && t->nbackends == copy->nbackends) {
        copy_health(copy, t);
        rc = 0;
    }
    pthread_mutex_unlock(ss_dataplane_ctl_lock(dp));
    return rc;
}
