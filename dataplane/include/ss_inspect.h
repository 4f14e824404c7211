/*
 * ss_inspect.h - what the console and /metrics read from the data plane
 * beyond the counters, and the operator actions it takes on the store:
 * the request latency histogram, one key's metadata, a local flush.
 *
 * All of these run on the control thread's store handle (under ctl_lock),
 * once per operator action or metrics scrape, never per request.
 */
#ifndef SS_INSPECT_H
#define SS_INSPECT_H

#include <stddef.h>
#include <stdint.h>

#include "ss_dataplane.h"

/*
 * Request service time, per worker, in log2 buckets: bucket i counts
 * commands that took less than 2^i nanoseconds (and at least 2^(i-1)); the
 * last bucket also takes everything slower. Measured from a complete
 * command line to its reply (or its forward to a back end) being queued:
 * socket I/O is outside it, and so is a back end's own time (that is in
 * struct ss_backend_stats.latency_us).
 */
/* cffi: begin */
#define SS_LATENCY_BUCKETS 32
/* cffi: end */

static inline unsigned ss_latency_bucket(uint64_t ns)
{
    unsigned b = ns ? 64u - (unsigned)__builtin_clzll(ns) : 0u;
    return b < SS_LATENCY_BUCKETS ? b : SS_LATENCY_BUCKETS - 1;
}

/* cffi: begin */
/* One key as the store holds it (ss_dataplane_key_info). */
struct ss_key_info {
    uint32_t tier;        /* enum ss_tier: SS_TIER_DRAM or SS_TIER_DEVICE */
    uint32_t flags;       /* client flags */
    uint32_t nbytes;      /* value length */
    uint32_t last_access; /* unix seconds */
    int64_t exptime;      /* absolute unix seconds; 0 = never */
    uint64_t cas;
    uint32_t fetched;     /* 1 when read since it was stored */
};

/*
 * Fill out[0..n) with the request latency buckets summed over workers, and
 * *sum_ns (when not NULL) with the total of every measured time.
 * Returns how many were written (min(n, SS_LATENCY_BUCKETS)) or -EINVAL.
 */
int ss_dataplane_read_latency(struct ss_dataplane *dp, uint64_t *out, int n, uint64_t *sum_ns);
/*
 * Look one key up without marking it fetched. Returns 0 (*out filled),
 * -ENOENT (absent, expired or flushed), -EINVAL (bad key length).
 */
int ss_dataplane_key_info(struct ss_dataplane *dp, const void *key, size_t nkey,
                          struct ss_key_info *out);
/* flush_all now, on this appliance's store only (back ends are not told). */
int ss_dataplane_flush(struct ss_dataplane *dp);
/* cffi: end */

#endif
