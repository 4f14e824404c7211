/*
 * ss_counters.h - the one list of data-plane counters.
 *
 * Every counter an operator sees (memcached `stats`, the console, /metrics) is
 * declared here once. Names follow memcached's own stat names where memcached
 * has one, so dashboards built for memcached keep working.
 *
 * X(name, kind): kind is COUNTER (monotonic) or GAUGE (goes up and down).
 * Each worker owns one struct ss_counters; readers sum over workers.
 */
#ifndef SS_COUNTERS_H
#define SS_COUNTERS_H

#include <stdint.h>

#define SS_COUNTERS(X)                                                         \
    /* commands */                                                             \
    X(cmd_get, COUNTER)           /* keys requested by get-like commands */    \
    X(cmd_set, COUNTER)           /* storage commands of every kind */        \
    X(cmd_flush, COUNTER)                                                      \
    X(cmd_touch, COUNTER)                                                      \
    X(cmd_meta, COUNTER)          /* meta commands (mg ms md ma mn me) */      \
    X(get_hits, COUNTER)                                                       \
    X(get_misses, COUNTER)                                                     \
    X(get_expired, COUNTER)       /* miss because the item had expired */     \
    X(get_flushed, COUNTER)       /* miss because of flush_all */              \
    X(hits_dram, COUNTER)         /* hits answered from the DRAM hot tier */   \
    X(hits_device, COUNTER)       /* hits read from the device */              \
    X(delete_hits, COUNTER)                                                    \
    X(delete_misses, COUNTER)                                                  \
    X(incr_hits, COUNTER)                                                      \
    X(incr_misses, COUNTER)                                                    \
    X(decr_hits, COUNTER)                                                      \
    X(decr_misses, COUNTER)                                                    \
    X(cas_hits, COUNTER)                                                       \
    X(cas_misses, COUNTER)                                                     \
    X(cas_badval, COUNTER)                                                     \
    X(touch_hits, COUNTER)                                                     \
    X(touch_misses, COUNTER)                                                   \
    /* traffic */                                                              \
    X(bytes_read, COUNTER)        /* bytes received from clients */            \
    X(bytes_written, COUNTER)     /* bytes sent to clients */                  \
    X(curr_connections, GAUGE)                                                 \
    X(total_connections, COUNTER)                                              \
    X(rejected_connections, COUNTER)                                           \
    X(idle_kicks, COUNTER)        /* connections closed for idling */          \
    X(udp_requests, COUNTER)                                                   \
    X(udp_dropped_multi, COUNTER) /* multi-datagram requests, dropped */       \
    X(udp_dropped_budget, COUNTER) /* replies over a source's byte budget */   \
    X(udp_dropped_malformed, COUNTER)                                          \
    /* store */                                                                \
    X(total_items, COUNTER)       /* items stored */                           \
    X(evictions, COUNTER)         /* live items lost to segment reclaim */     \
    X(expired_unfetched, COUNTER)                                              \
    X(evicted_unfetched, COUNTER)                                              \
    X(reclaimed, COUNTER)         /* expired items removed */                  \
    X(segments_reclaimed, COUNTER)                                             \
    X(segments_flushed, COUNTER)                                               \
    X(device_reads, COUNTER)                                                   \
    X(device_read_bytes, COUNTER)                                              \
    X(device_writes, COUNTER)                                                  \
    X(device_write_bytes, COUNTER)                                             \
    X(hot_evictions, COUNTER)     /* items pushed out of the DRAM tier */      \
    X(filter_negatives, COUNTER)  /* misses decided by the DRAM filter alone */ \
    X(filter_false_positives, COUNTER) /* filter said maybe, the index no */   \
    /* errors by kind */                                                       \
    X(errors_protocol, COUNTER)   /* ERROR / CLIENT_ERROR replies */           \
    X(errors_too_large, COUNTER)  /* values over item_size_max */              \
    X(errors_out_of_memory, COUNTER)                                           \
    X(errors_device, COUNTER)     /* device I/O failures */                    \
    X(errors_checksum, COUNTER)   /* torn or stale records detected, dropped */\
    X(errors_index, COUNTER)      /* LMDB failures */

struct ss_counters {
#define SS_COUNTER_FIELD(name, kind) uint64_t name;
    SS_COUNTERS(SS_COUNTER_FIELD)
#undef SS_COUNTER_FIELD
};

enum ss_counter_id {
#define SS_COUNTER_ENUM(name, kind) SS_CTR_##name,
    SS_COUNTERS(SS_COUNTER_ENUM)
#undef SS_COUNTER_ENUM
    SS_CTR__COUNT
};

#endif
