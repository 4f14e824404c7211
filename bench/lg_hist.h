/*
 * lg_hist.h - the load generator's latency histogram (bench/loadgen.c).
 *
 * Log-bucketed like HdrHistogram: exact below 128 ns, then 128 sub-buckets
 * per power of two, so a recorded value is off by less than 0.8%. One per
 * thread, merged by adding counts; included once, by loadgen.c.
 */
#ifndef LG_HIST_H
#define LG_HIST_H

#include <math.h>
#include <stdint.h>

/* Histogram: values in ns; below 128 one bucket per ns, above that the top
 * 8 significant bits (leading 1 + 7 bits) pick the bucket. 2^41 ns (~36 min)
 * is far beyond any bounded run, so larger values are clamped. */
#define LG_SUB_BITS 7
#define LG_SUB (1u << LG_SUB_BITS)
#define LG_MAX_EXP 41
#define LG_BUCKETS (LG_SUB + (LG_MAX_EXP - LG_SUB_BITS) * LG_SUB)

struct lg_hist {
    uint64_t count[LG_BUCKETS];
    uint64_t total;
    uint64_t max_ns;
    double sum_ns;
};

/* lg_hist_index: bucket of a latency in ns. */
static unsigned lg_hist_index(uint64_t v)
{
    if (v < LG_SUB)
        return (unsigned)v;
    unsigned e = 63u - (unsigned)__builtin_clzll(v);
    if (e >= LG_MAX_EXP)
        return LG_BUCKETS - 1;
    unsigned shift = e - LG_SUB_BITS;
    return LG_SUB + shift * LG_SUB + (unsigned)((v >> shift) - LG_SUB);
}

/* lg_hist_value: midpoint of a bucket in ns (inverse of lg_hist_index). */
static double lg_hist_value(unsigned i)
{
    if (i < LG_SUB)
        return (double)i;
    unsigned shift = (i - LG_SUB) / LG_SUB;
    uint64_t mant = LG_SUB + (i - LG_SUB) % LG_SUB;
    return (double)(mant << shift) + (double)(1ull << shift) / 2.0;
}

/* lg_hist_add: record one latency. */
static void lg_hist_add(struct lg_hist *h, uint64_t ns)
{
    h->count[lg_hist_index(ns)]++;
    h->total++;
    h->sum_ns += (double)ns;
    if (ns > h->max_ns)
        h->max_ns = ns;
}

/* lg_hist_quantile: latency in us at quantile q (0 < q <= 1); 0 if empty. */
static double lg_hist_quantile(const struct lg_hist *h, double q)
{
    if (h->total == 0)
        return 0.0;
    uint64_t rank = (uint64_t)ceil(q * (double)h->total);
    if (rank == 0)
        rank = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < LG_BUCKETS; i++) {
        seen += h->count[i];
        if (seen >= rank)
            return lg_hist_value(i) / 1000.0;
    }
    return (double)h->max_ns / 1000.0;
}

#endif
