/*
 * ss_inspect.c - the console's reads and actions on the data plane
 * (ss_inspect.h): latency histogram sums, key metadata, local flush.
 */
#include <errno.h>
#include <string.h>

#include "ss_inspect.h"
#include "ss_server_internal.h"

int ss_dataplane_read_latency(struct ss_dataplane *dp, uint64_t *out, int n, uint64_t *sum_ns)
{
    if (!dp || !out || n < 0)
        return -EINVAL;
    int m = n < SS_LATENCY_BUCKETS ? n : SS_LATENCY_BUCKETS;
    uint64_t sum = 0;
    memset(out, 0, (size_t)m * sizeof(*out));
    for (int i = 0; i < dp->nworkers; i++) {
        /* Written by the worker as we read: a sum a few counts stale is fine. */
        const volatile uint64_t *h = dp->workers[i].latency_ns;
        for (int b = 0; b < m; b++)
            out[b] += h[b];
        sum += *(const volatile uint64_t *)&dp->workers[i].latency_ns_sum;
    }
    if (sum_ns)
        *sum_ns = sum;
    return m;
}

int ss_dataplane_key_info(struct ss_dataplane *dp, const void *key, size_t nkey,
                          struct ss_key_info *out)
{
    if (!dp || !out || !key || nkey == 0 || nkey > SS_KEY_MAX_LENGTH)
        return -EINVAL;
    memset(out, 0, sizeof(*out));
    struct ss_item it;
    pthread_mutex_lock(&dp->ctl_lock);
    ss_store_lock(&dp->ctl_st, key, nkey);
    int rc = ss_store_find(&dp->ctl_st, key, nkey, &it, SS_FIND_NO_BUMP);
    ss_store_unlock(&dp->ctl_st);
    pthread_mutex_unlock(&dp->ctl_lock);
    if (rc != 0)
        return rc == -EIO ? -EIO : -ENOENT;
    out->tier = it.tier;
    out->flags = it.flags;
    out->nbytes = it.nbytes;
    out->last_access = it.last_access;
    out->exptime = it.exptime;
    out->cas = it.cas;
    out->fetched = (it.bits & SS_ITEM_FETCHED) ? 1u : 0u;
    return 0;
}

int ss_dataplane_flush(struct ss_dataplane *dp)
{
    if (!dp)
        return -EINVAL;
    pthread_mutex_lock(&dp->ctl_lock);
    int rc = ss_store_flush_all(&dp->ctl_st, 0);
    pthread_mutex_unlock(&dp->ctl_lock);
    return rc;
}
