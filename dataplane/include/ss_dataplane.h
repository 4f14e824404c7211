/*
 * ss_dataplane.h - the data plane as a whole: listeners, workers, the store.
 *
 * Python creates it from settings, runs ss_dataplane_run_worker() on one
 * thread per worker (cffi releases the GIL for the call), calls
 * ss_dataplane_housekeep() every ~100 ms from a control thread, reads summed
 * counters, and stops it. Nothing here is called per request from Python.
 */
#ifndef SS_DATAPLANE_H
#define SS_DATAPLANE_H

#include <stdint.h>

#include "ss_counters.h"
#include "ss_objects.h"
#include "ss_store.h"

/* cffi: begin */
struct ss_dataplane_settings {
    const char *listen_host;          /* numeric IPv4 or IPv6 address */
    int tcp_port;                     /* -1 = no TCP listener, 0 = any free port */
    int udp_port;                     /* -1 = no UDP, 0 = any free port */
    int workers;                      /* worker threads (>= 1) */
    uint32_t max_connections;         /* further connections are refused */
    uint32_t idle_timeout_s;          /* close idle clients after this; 0 = never */
    uint32_t tcp_backlog;
    uint32_t udp_reply_bytes_per_sec; /* per source address; anti-amplification */
    uint32_t udp_reply_burst_bytes;
    const char *version;              /* answered to `version` */
    struct ss_store_settings store;
    /* Appended (object requests): the HTTP listener and objects pool; NULL = off. */
    const struct ss_objects_settings *objects;
};

struct ss_dataplane;

struct ss_dataplane *ss_dataplane_create(const struct ss_dataplane_settings *s,
                                         char *err, size_t errlen);
/* Serve on this thread until ss_dataplane_stop(). Returns 0 or -errno. */
int ss_dataplane_run_worker(struct ss_dataplane *dp, int worker_id);
int ss_dataplane_housekeep(struct ss_dataplane *dp);
/* Ask every worker to return. Safe from any thread. */
void ss_dataplane_stop(struct ss_dataplane *dp);
/* After every worker has returned: close listeners, close the store. */
void ss_dataplane_destroy(struct ss_dataplane *dp);

int ss_dataplane_bound_port(struct ss_dataplane *dp, int udp);

/* The HTTP listener's bound port, or -1 when object requests are off. */
int ss_dataplane_objects_port(struct ss_dataplane *dp);
/* Bucket i's figures (i < objects->nbuckets). Returns 0 or -EINVAL. */
int ss_dataplane_bucket_stats(struct ss_dataplane *dp, uint32_t i, struct ss_bucket_stats *out);
/* The objects store's figures, as ss_dataplane_store_stats gives the items
 * store's. Returns 0, or -EINVAL when object requests are off. */
int ss_dataplane_objects_store_stats(struct ss_dataplane *dp, struct ss_store_stats *out);
/* Drop bucket's objects whose keys start with prefix (nprefix 0: all) from
 * the store. Returns how many were dropped, or -errno (-ENOENT: no such
 * bucket). The control thread's call; it walks the objects' index. */
long ss_dataplane_objects_purge(struct ss_dataplane *dp, const char *bucket, const char *prefix,
                                size_t nprefix);

/* Grow the memcached pool while serving (ss_store_grow). Returns 0 or -errno. */
int ss_dataplane_grow_pool(struct ss_dataplane *dp, uint64_t new_bytes);
/* Shrink it, evicting what no longer fits (ss_store_shrink); only when no
 * worker is running (tcp_port -1 maintenance mode). Returns 0 or -errno. */
int ss_dataplane_shrink_pool(struct ss_dataplane *dp, uint64_t new_bytes);
/* cffi: end */

/* C only (the other planes read the data plane through these). */
/* Sum of every worker's counters. */
void ss_dataplane_sum_counters(struct ss_dataplane *dp, struct ss_counters *out);
const struct ss_dataplane_settings *ss_dataplane_settings(struct ss_dataplane *dp);
struct ss_store *ss_dataplane_store(struct ss_dataplane *dp);
int64_t ss_dataplane_started_at(struct ss_dataplane *dp); /* unix seconds */
/* TCP connections a worker serves now (for `stats`; see ss_balance.c). */
unsigned ss_dataplane_worker_connections(struct ss_dataplane *dp, int worker_id);

#endif
