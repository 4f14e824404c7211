/*
 * ss_mc_stats.c - `stats`, `stats settings`, `stats items`, `stats slabs`.
 *
 * General stats use memcached's names and order for what memcached also has,
 * then SmartSwitch's own figures; the counters among them come from the
 * SS_COUNTERS list (its `stat` column says where each goes), so one list
 * drives `stats`, the console and /metrics. The store is one log rather than slab classes, so
 * `stats items` and `stats slabs` report a single class 1. Stats are not a
 * hot path, but still build into the connection's buffer without malloc.
 */
#include <stdio.h>
#include <sys/resource.h>
#include <unistd.h>

#include "common/ss_clock.h"
#include "ss_dataplane.h"
#include "ss_mc_internal.h"
#include "proxy/ss_px.h"
#include "server/ss_worker.h"

static void stat_u64(struct ss_conn *c, const char *name, uint64_t v)
{
    char line[160];
    int n = snprintf(line, sizeof(line), "STAT %s %llu\r\n", name, (unsigned long long)v);
    ss_mc_out(c, line, (size_t)n);
}

static void stat_str(struct ss_conn *c, const char *name, const char *v)
{
    char line[320];
    int n = snprintf(line, sizeof(line), "STAT %s %s\r\n", name, v);
    ss_mc_out(c, line, (size_t)n);
}

/* How `stats` shows each counter: SS_COUNTERS' `stat` column, in its order. */
struct counter_stat {
    const char *name;
    enum ss_counter_stat_group group;
    const char *mc_name; /* memcached's name when it differs from ours, else NULL */
};

static const struct counter_stat counter_stats[SS_CTR__COUNT] = {
#define SS_COUNTER_STAT(name, kind, stat) {#name, SS_COUNTER_STAT_##stat},
    SS_COUNTERS(SS_COUNTER_STAT)
#undef SS_COUNTER_STAT
};

/* The counters memcached lists in `group`, under memcached's names. */
static void stat_counter_group(struct ss_conn *c, const uint64_t *v,
                               enum ss_counter_stat_group group)
{
    for (int i = 0; i < SS_CTR__COUNT; i++) {
        const struct counter_stat *cs = &counter_stats[i];
        if (cs->group == group)
            stat_u64(c, cs->mc_name ? cs->mc_name : cs->name, v[i]);
    }
}

/* Every counter not already shown under its own name: memcached has none
 * like it, or shows it under another name. */
static void stat_counters_own(struct ss_conn *c, const uint64_t *v)
{
    for (int i = 0; i < SS_CTR__COUNT; i++) {
        const struct counter_stat *cs = &counter_stats[i];
        if (cs->group == SS_STAT_GROUP_NONE || cs->mc_name)
            stat_u64(c, cs->name, v[i]);
    }
}

/* The served pool (issue 4); the control plane reports every pool. */
static void stat_pool(struct ss_conn *c, const char *pool, const struct ss_store_stats *ss)
{
    static const char *const fields[] = {"offset", "size", "segment_size", "segments",
                                         "segments_used", "used", "grows"};
    const uint64_t values[] = {ss->device_offset, ss->device_bytes, ss->segment_bytes,
                               ss->segments, ss->segments_used, ss->device_used_bytes,
                               ss->grows};
    char name[128];
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        snprintf(name, sizeof(name), "pool:%.63s:%s", pool, fields[i]);
        stat_u64(c, name, values[i]);
    }
}

/*
 * memcached's general stats first, in memcached's order (the counters by
 * group from SS_COUNTERS, the rest computed here), then SmartSwitch's own
 * figures: the store's, the pool's, the counters memcached lacks, the
 * workers' connections and, in proxy mode, the back ends'.
 */
static void stats_general(struct ss_conn *c)
{
    struct ss_dataplane *dp = c->w->dp;
    const struct ss_dataplane_settings *s = ss_dataplane_settings(dp);
    struct ss_counters sum;
    struct ss_store_stats ss;
    struct rusage ru;
    char buf[64];
    int64_t now = ss_clock_unix_seconds();

    ss_dataplane_sum_counters(dp, &sum);
    const uint64_t v[SS_CTR__COUNT] = {
#define SS_COUNTER_VALUE(name, kind, stat) sum.name,
        SS_COUNTERS(SS_COUNTER_VALUE)
#undef SS_COUNTER_VALUE
    };
    ss_store_get_stats(ss_dataplane_store(dp), &ss);
    getrusage(RUSAGE_SELF, &ru);

    stat_u64(c, "pid", (uint64_t)getpid());
    stat_u64(c, "uptime", (uint64_t)(now - ss_dataplane_started_at(dp)));
    stat_u64(c, "time", (uint64_t)now);
    stat_str(c, "version", s->version ? s->version : "");
    stat_u64(c, "pointer_size", sizeof(void *) * 8);
    snprintf(buf, sizeof(buf), "%ld.%06ld", (long)ru.ru_utime.tv_sec, (long)ru.ru_utime.tv_usec);
    stat_str(c, "rusage_user", buf);
    snprintf(buf, sizeof(buf), "%ld.%06ld", (long)ru.ru_stime.tv_sec, (long)ru.ru_stime.tv_usec);
    stat_str(c, "rusage_system", buf);
    stat_u64(c, "max_connections", s->max_connections);
    stat_counter_group(c, v, SS_STAT_GROUP_CONNECTIONS);
    stat_counter_group(c, v, SS_STAT_GROUP_COMMANDS);
    stat_counter_group(c, v, SS_STAT_GROUP_TRAFFIC);
    stat_u64(c, "limit_maxbytes", ss.device_bytes);
    stat_u64(c, "threads", (uint64_t)s->workers);
    stat_u64(c, "bytes", ss.device_used_bytes);
    stat_u64(c, "curr_items", ss.curr_items);
    stat_counter_group(c, v, SS_STAT_GROUP_ITEMS);
    /* SmartSwitch's own figures, named as in ss_store.h and ss_counters.h. */
    stat_u64(c, "device_bytes", ss.device_bytes);
    stat_u64(c, "device_used_bytes", ss.device_used_bytes);
    stat_u64(c, "segment_bytes", ss.segment_bytes);
    stat_u64(c, "segments", ss.segments);
    stat_u64(c, "hot_bytes_limit", ss.hot_bytes_limit);
    stat_u64(c, "hot_bytes_used", ss.hot_bytes_used);
    stat_u64(c, "hot_items", ss.hot_items);
    stat_u64(c, "index_bytes", ss.index_bytes);
    stat_u64(c, "index_commits", ss.index_commits);
    stat_u64(c, "index_committed_ops", ss.index_committed_ops);
    stat_u64(c, "index_commit_boosts", ss.index_commit_boosts);
    stat_u64(c, "filter_bytes", ss.filter_bytes);
    stat_u64(c, "filter_capacity", ss.filter_capacity);
    stat_u64(c, "filter_inserts", ss.filter_inserts);
    stat_u64(c, "filter_rebuilds", ss.filter_rebuilds);
    stat_pool(c, s->store.pool_name ? s->store.pool_name : "items", &ss);
    stat_counters_own(c, v);
    /* How evenly connections sit on the workers (ss_balance.c). */
    for (int i = 0; i < s->workers; i++) {
        char name[64];
        snprintf(name, sizeof(name), "worker:%d:curr_connections", i);
        stat_u64(c, name, ss_dataplane_worker_connections(dp, i));
    }
    ss_px_stats(c); /* proxy mode: STAT backend:<name>:<field> lines */
}

static void stats_settings(struct ss_conn *c)
{
    const struct ss_dataplane_settings *s = ss_dataplane_settings(c->w->dp);
    stat_u64(c, "maxbytes", s->store.device_bytes);
    stat_u64(c, "maxconns", s->max_connections);
    stat_u64(c, "tcpport", (uint64_t)(s->tcp_port < 0 ? 0 : s->tcp_port));
    stat_u64(c, "udpport", (uint64_t)(s->udp_port < 0 ? 0 : s->udp_port));
    stat_u64(c, "verbosity", 0);
    stat_str(c, "evictions", "on");
    stat_u64(c, "num_threads", (uint64_t)s->workers);
    stat_str(c, "cas_enabled", "yes");
    stat_u64(c, "tcp_backlog", s->tcp_backlog);
    stat_str(c, "binding_protocol", "ascii");
    stat_u64(c, "item_size_max", s->store.item_size_max);
    stat_str(c, "flush_enabled", "yes");
    stat_u64(c, "idle_timeout", s->idle_timeout_s);
    stat_u64(c, "hot_bytes", s->store.hot_bytes);
    stat_u64(c, "segment_bytes", s->store.segment_bytes);
    stat_u64(c, "flush_interval_ms", s->store.flush_interval_ms);
    stat_u64(c, "udp_reply_bytes_per_sec", s->udp_reply_bytes_per_sec);
    stat_u64(c, "udp_reply_burst_bytes", s->udp_reply_burst_bytes);
}

/* One class: the whole log. */
static void stats_items(struct ss_conn *c)
{
    struct ss_store_stats ss;
    struct ss_counters sum;
    ss_store_get_stats(ss_dataplane_store(c->w->dp), &ss);
    ss_dataplane_sum_counters(c->w->dp, &sum);
    if (ss.curr_items == 0)
        return;
    stat_u64(c, "items:1:number", ss.curr_items);
    stat_u64(c, "items:1:mem_requested", ss.device_used_bytes);
    stat_u64(c, "items:1:evicted", sum.evictions);
    stat_u64(c, "items:1:reclaimed", sum.reclaimed);
    stat_u64(c, "items:1:expired_unfetched", sum.expired_unfetched);
    stat_u64(c, "items:1:evicted_unfetched", sum.evicted_unfetched);
}

static void stats_slabs(struct ss_conn *c)
{
    struct ss_store_stats ss;
    struct ss_counters sum;
    ss_store_get_stats(ss_dataplane_store(c->w->dp), &ss);
    ss_dataplane_sum_counters(c->w->dp, &sum);
    if (ss.segments) {
        stat_u64(c, "1:chunk_size", ss.segment_bytes);
        stat_u64(c, "1:total_pages", ss.segments);
        stat_u64(c, "1:used_chunks", ss.curr_items);
        stat_u64(c, "1:get_hits", sum.get_hits);
        stat_u64(c, "1:cmd_set", sum.cmd_set);
        stat_u64(c, "1:delete_hits", sum.delete_hits);
        stat_u64(c, "1:incr_hits", sum.incr_hits);
        stat_u64(c, "1:decr_hits", sum.decr_hits);
        stat_u64(c, "1:cas_hits", sum.cas_hits);
        stat_u64(c, "1:cas_badval", sum.cas_badval);
        stat_u64(c, "1:touch_hits", sum.touch_hits);
    }
    stat_u64(c, "active_slabs", ss.segments ? 1 : 0);
    stat_u64(c, "total_malloced", ss.device_used_bytes);
}

/* stats [settings|items|slabs|reset|detail ...]; anything else is ERROR,
 * as memcached answers for a sub-stat it does not know. */
void ss_mc_stats(struct ss_conn *c, struct ss_mc_tok *tok, size_t ntok)
{
    if (ntok == 2) {
        stats_general(c);
    } else if (ss_mc_tok_is(&tok[1], "settings")) {
        stats_settings(c);
    } else if (ss_mc_tok_is(&tok[1], "items")) {
        stats_items(c);
    } else if (ss_mc_tok_is(&tok[1], "slabs")) {
        stats_slabs(c);
    } else if (ss_mc_tok_is(&tok[1], "sizes")) {
        ss_mc_out_str(c, "STAT sizes_status disabled\r\n");
    } else if (ss_mc_tok_is(&tok[1], "conns")) {
        /* per-connection detail is not kept */
    } else if (ss_mc_tok_is(&tok[1], "reset")) {
        /* Counters belong to the workers and are monotonic for /metrics. */
        ss_mc_out_str(c, "RESET\r\n");
        return;
    } else if (ss_mc_tok_is(&tok[1], "detail")) {
        if (ntok >= 4 && (ss_mc_tok_is(&tok[2], "on") || ss_mc_tok_is(&tok[2], "off")))
            ss_mc_out_str(c, "OK\r\n");
        else if (ntok >= 4 && ss_mc_tok_is(&tok[2], "dump"))
            ss_mc_out_str(c, "END\r\n");
        else
            ss_mc_reply(c, "CLIENT_ERROR usage: stats detail on|off|dump", false);
        return;
    } else {
        ss_mc_reply(c, "ERROR", false);
        return;
    }
    ss_mc_out(c, "END\r\n", 5);
}
