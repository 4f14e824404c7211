/*
 * ss_counters.h - the one list of data-plane counters.
 *
 * Every counter an operator sees (memcached `stats`, the console, /metrics) is
 * declared here once. Names follow memcached's own stat names where memcached
 * has one, so dashboards built for memcached keep working.
 *
 * X(name, kind, stat):
 *   kind  COUNTER (monotonic) or GAUGE (goes up and down).
 *   stat  how general `stats` shows it (ss_mc_stats.c iterates this list):
 *         MC(group)           where memcached shows it, under the same name;
 *         MC_AS(group, name)  where memcached shows it, under memcached's
 *                             name; and again under its own name after the
 *                             store's figures, with SmartSwitch's own;
 *         OWN                 memcached has none: after the store's figures.
 *         Within a group, and among SmartSwitch's own, the order is this
 *         list's, which is why some entries follow memcached's order.
 * Each worker owns one struct ss_counters; readers sum over workers.
 */
#ifndef SS_COUNTERS_H
#define SS_COUNTERS_H

#include <stddef.h>
#include <stdint.h>

#define SS_COUNTERS(X)                                                              \
    /* commands; misses before hits, in the order memcached lists them */          \
    X(cmd_get, COUNTER, MC(COMMANDS))      /* keys requested by get-like commands */\
    X(cmd_set, COUNTER, MC(COMMANDS))      /* storage commands of every kind */     \
    X(cmd_flush, COUNTER, MC(COMMANDS))                                            \
    X(cmd_touch, COUNTER, MC(COMMANDS))                                            \
    X(cmd_meta, COUNTER, MC(COMMANDS))     /* meta commands (mg ms md ma mn me) */  \
    X(get_hits, COUNTER, MC(COMMANDS))                                             \
    X(get_misses, COUNTER, MC(COMMANDS))                                           \
    X(get_expired, COUNTER, MC(COMMANDS))  /* miss because the item had expired */  \
    X(get_flushed, COUNTER, MC(COMMANDS))  /* miss because of flush_all */          \
    X(hits_dram, COUNTER, OWN)             /* hits answered from the DRAM hot tier */ \
    X(hits_device, COUNTER, OWN)           /* hits read from the device */          \
    X(delete_misses, COUNTER, MC(COMMANDS))                                        \
    X(delete_hits, COUNTER, MC(COMMANDS))                                          \
    X(incr_misses, COUNTER, MC(COMMANDS))                                          \
    X(incr_hits, COUNTER, MC(COMMANDS))                                            \
    X(decr_misses, COUNTER, MC(COMMANDS))                                          \
    X(decr_hits, COUNTER, MC(COMMANDS))                                            \
    X(cas_misses, COUNTER, MC(COMMANDS))                                           \
    X(cas_hits, COUNTER, MC(COMMANDS))                                             \
    X(cas_badval, COUNTER, MC(COMMANDS))                                           \
    X(touch_hits, COUNTER, MC(COMMANDS))                                           \
    X(touch_misses, COUNTER, MC(COMMANDS))                                         \
    /* traffic */                                                                  \
    X(bytes_read, COUNTER, MC(TRAFFIC))    /* bytes received from clients */        \
    X(bytes_written, COUNTER, MC(TRAFFIC)) /* bytes sent to clients */             \
    X(bytes_written_by_ref, COUNTER, OWN)  /* of those, sent from a value's own     \
                                            * buffer without a copy */            \
    X(curr_connections, GAUGE, MC(CONNECTIONS))                                    \
    X(total_connections, COUNTER, MC(CONNECTIONS))                                 \
    X(rejected_connections, COUNTER, MC(CONNECTIONS))                              \
    X(idle_kicks, COUNTER, OWN)            /* connections closed for idling */      \
    X(worker_yields, COUNTER, OWN)         /* a worker busy past its turn quota     \
                                            * handed its CPU on */                \
    X(worker_short_turns, COUNTER, OWN)    /* turns that took fewer events, their   \
                                            * replies being large */              \
    X(udp_requests, COUNTER, OWN)                                                  \
    X(udp_dropped_multi, COUNTER, OWN)     /* multi-datagram requests, dropped */   \
    X(udp_dropped_budget, COUNTER, OWN)    /* replies over a source's byte budget */ \
    X(udp_dropped_malformed, COUNTER, OWN)                                         \
    /* store; memcached's item figures in its order */                             \
    X(total_items, COUNTER, MC(ITEMS))     /* items stored */                       \
    X(expired_unfetched, COUNTER, MC(ITEMS))                                       \
    X(evicted_unfetched, COUNTER, MC(ITEMS))                                       \
    X(evictions, COUNTER, MC(ITEMS))       /* live items lost to segment reclaim */ \
    X(reclaimed, COUNTER, MC(ITEMS))       /* expired items removed */              \
    X(segments_reclaimed, COUNTER, OWN)                                            \
    X(segments_flushed, COUNTER, OWN)                                              \
    X(log_roll_waits, COUNTER, OWN)   /* a full segment waited for the segment writer */ \
    X(device_reads, COUNTER, OWN)                                                  \
    X(device_read_bytes, COUNTER, OWN)                                             \
    X(device_reads_async, COUNTER, OWN)    /* of device_reads: through io_uring */   \
    X(device_reads_in_flight, GAUGE, OWN)  /* asynchronous reads not yet completed */ \
    X(device_reads_sync_fallback, COUNTER, OWN) /* could have waited, ring full or off */ \
    X(device_reads_forwarded, COUNTER, OWN) /* proxy: a read that would wait, forwarded */ \
    X(udp_parked, COUNTER, OWN)        /* datagrams that waited for device reads */ \
    /* asynchronous reads by completion time (submit to reap) */                  \
    X(device_read_us_le_50, COUNTER, OWN)                                          \
    X(device_read_us_le_200, COUNTER, OWN)                                         \
    X(device_read_us_le_1000, COUNTER, OWN)                                        \
    X(device_read_us_le_5000, COUNTER, OWN)                                        \
    X(device_read_us_gt_5000, COUNTER, OWN)                                        \
    /* asynchronous reads by the thread's reads in flight when each started */     \
    X(device_read_depth_le_1, COUNTER, OWN)                                        \
    X(device_read_depth_le_8, COUNTER, OWN)                                        \
    X(device_read_depth_le_32, COUNTER, OWN)                                       \
    X(device_read_depth_gt_32, COUNTER, OWN)                                       \
    X(device_writes, COUNTER, OWN)                                                 \
    X(device_write_bytes, COUNTER, OWN)                                            \
    X(hot_evictions, COUNTER, OWN)         /* items pushed out of the DRAM tier */  \
    X(filter_negatives, COUNTER, OWN)      /* misses decided by the DRAM filter alone */ \
    X(filter_false_positives, COUNTER, OWN) /* filter said maybe, the index no */   \
    X(pinned_copied, COUNTER, OWN)         /* pinned records copied forward */      \
    X(pinned_copy_bytes, COUNTER, OWN)                                             \
    X(pinned_refused, COUNTER, OWN)        /* pinned writes refused: ring too full */ \
    /* errors by kind */                                                           \
    X(errors_protocol, COUNTER, OWN)       /* ERROR / CLIENT_ERROR replies */       \
    X(errors_too_large, COUNTER, MC_AS(COMMANDS, store_too_large)) /* over item_size_max */ \
    X(errors_out_of_memory, COUNTER, MC_AS(COMMANDS, store_no_memory))             \
    X(errors_device, COUNTER, OWN)         /* device I/O failures */                \
    X(errors_checksum, COUNTER, OWN)       /* torn or stale records detected, dropped */ \
    X(errors_index, COUNTER, OWN)          /* LMDB failures */

/*
 * Where memcached's own `stats` lists a figure (the `stat` column), so that
 * ours lists it at the same place: connections, then commands, then
 * traffic, then (after the store's computed figures) items.
 */
enum ss_counter_stat_group {
    SS_STAT_GROUP_NONE = 0, /* memcached has no such stat */
    SS_STAT_GROUP_CONNECTIONS,
    SS_STAT_GROUP_COMMANDS,
    SS_STAT_GROUP_TRAFFIC,
    SS_STAT_GROUP_ITEMS,
};

/*
 * The `stat` column as two initialisers, (group, memcached's name or NULL
 * when it is the counter's own): a consumer writes SS_COUNTER_STAT_##stat.
 */
#define SS_COUNTER_STAT_MC(group) SS_STAT_GROUP_##group, NULL
#define SS_COUNTER_STAT_MC_AS(group, mc_name) SS_STAT_GROUP_##group, #mc_name
#define SS_COUNTER_STAT_OWN SS_STAT_GROUP_NONE, NULL

struct ss_counters {
#define SS_COUNTER_FIELD(name, kind, stat) uint64_t name;
    SS_COUNTERS(SS_COUNTER_FIELD)
#undef SS_COUNTER_FIELD
};

enum ss_counter_id {
#define SS_COUNTER_ENUM(name, kind, stat) SS_CTR_##name,
    SS_COUNTERS(SS_COUNTER_ENUM)
#undef SS_COUNTER_ENUM
    SS_CTR__COUNT
};

#endif
