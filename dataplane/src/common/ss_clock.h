/*
 * ss_clock.h - cheap wall and monotonic clocks.
 *
 * Expiry times in memcached are whole unix seconds; the coarse clocks are
 * read through the vDSO without a system call, so they are fine per request.
 */
#ifndef SS_CLOCK_H
#define SS_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline int64_t ss_clock_unix_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME_COARSE, &ts);
    return (int64_t)ts.tv_sec;
}

static inline uint64_t ss_clock_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static inline uint64_t ss_clock_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

#endif
