/*
 * ss_counters.c - counter names and kinds from the SS_COUNTERS list, sums
 * over workers, and the read-only accessors the protocol and Python use.
 */
#include <errno.h>
#include <string.h>

#include "ss_api.h"
#include "ss_server_internal.h"

#define SS_KIND_COUNTER 0
#define SS_KIND_GAUGE 1

static const char *const ss_counter_names[SS_CTR__COUNT] = {
#define SS_COUNTER_NAME(name, kind, stat) #name,
    SS_COUNTERS(SS_COUNTER_NAME)
#undef SS_COUNTER_NAME
};

static const unsigned char ss_counter_kinds[SS_CTR__COUNT] = {
#define SS_COUNTER_KIND(name, kind, stat) SS_KIND_##kind,
    SS_COUNTERS(SS_COUNTER_KIND)
#undef SS_COUNTER_KIND
};

/* dataplane/_build.py passes the digest of the cffi declarations it built
 * from; there is no number to bump by hand. */
#ifndef SS_ABI_STAMP
#error "SS_ABI_STAMP comes from dataplane/_build.py (build with pip, not by hand)"
#endif

/* The ABI this build speaks; Python refuses a module that disagrees. */
uint32_t ss_abi_version(void)
{
    return SS_ABI_STAMP;
}

int ss_counter_count(void)
{
    return SS_CTR__COUNT;
}

/* The counter's name (as in `stats` and /metrics), or NULL out of range. */
const char *ss_counter_name(int i)
{
    return i >= 0 && i < SS_CTR__COUNT ? ss_counter_names[i] : NULL;
}

/* 1 for a gauge, 0 for a monotonic counter, -1 out of range. */
int ss_counter_is_gauge(int i)
{
    if (i < 0 || i >= SS_CTR__COUNT)
        return -1;
    return ss_counter_kinds[i] == SS_KIND_GAUGE;
}

static void counters_add(struct ss_counters *out, const struct ss_counters *in)
{
    /*
     * Other threads write these as we read; each 64-bit load is whole on
     * our targets, and a sum a few increments stale is fine for stats.
     */
    const volatile struct ss_counters *v = in;
#define SS_COUNTER_ADD(name, kind, stat) out->name += v->name;
    SS_COUNTERS(SS_COUNTER_ADD)
#undef SS_COUNTER_ADD
}

/* Sum of every worker's counters and the control thread's. */
void ss_dataplane_sum_counters(struct ss_dataplane *dp, struct ss_counters *out)
{
    memset(out, 0, sizeof(*out));
    if (!dp)
        return;
    for (int i = 0; i < dp->nworkers; i++)
        counters_add(out, &dp->workers[i].ctr);
    counters_add(out, &dp->ctl_ctr);
    if (dp->store)
        counters_add(out, ss_store_writer_counters(dp->store));
}

/*
 * Fill out[0..n) with the summed counters in ss_counter_name() order.
 * Returns how many were written (min(n, ss_counter_count())), or -EINVAL.
 */
int ss_dataplane_read_counters(struct ss_dataplane *dp, uint64_t *out, int n)
{
    if (!dp || !out || n < 0)
        return -EINVAL;
    struct ss_counters sum;
    ss_dataplane_sum_counters(dp, &sum);
#define SS_COUNTER_PUT(name, kind, stat)                                             \
    if (SS_CTR_##name < n)                                                     \
        out[SS_CTR_##name] = sum.name;
    SS_COUNTERS(SS_COUNTER_PUT)
#undef SS_COUNTER_PUT
    return n < SS_CTR__COUNT ? n : SS_CTR__COUNT;
}

void ss_dataplane_store_stats(struct ss_dataplane *dp, struct ss_store_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (dp && dp->store)
        ss_store_get_stats(dp->store, out);
}

/*
 * Verify every index entry against the device, on the control thread's
 * store handle. Returns the number of failures (0 = consistent) or -errno.
 */
long ss_dataplane_verify_index(struct ss_dataplane *dp, uint64_t *checked)
{
    uint64_t dummy;
    if (!checked)
        checked = &dummy;
    *checked = 0;
    if (!dp)
        return -EINVAL;
    pthread_mutex_lock(&dp->ctl_lock);
    long rc = ss_store_verify(&dp->ctl_st, checked);
    pthread_mutex_unlock(&dp->ctl_lock);
    return rc;
}

const struct ss_dataplane_settings *ss_dataplane_settings(struct ss_dataplane *dp)
{
    return &dp->s;
}

struct ss_store *ss_dataplane_store(struct ss_dataplane *dp)
{
    return dp->store;
}

int64_t ss_dataplane_started_at(struct ss_dataplane *dp)
{
    return dp->started_at;
}
