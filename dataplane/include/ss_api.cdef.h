/*
 * ss_api.cdef.h - the declarations cffi sees (dataplane/_build.py).
 * Declarations only: cffi parses this, the C compiler sees ss_api.h.
 * Keep in step with ss_dataplane.h and ss_store.h.
 */
struct ss_store_settings {
    const char *index_dir;
    const char *device_path;
    uint64_t device_bytes;
    uint32_t segment_bytes;
    uint64_t hot_bytes;
    uint32_t item_size_max;
    uint64_t index_map_bytes;
    uint32_t flush_interval_ms;
    uint64_t device_offset;
    const char *pool_name;
    int direct_io;
    void *device;
};

struct ss_dataplane_settings {
    const char *listen_host;
    int tcp_port;
    int udp_port;
    int workers;
    uint32_t max_connections;
    uint32_t idle_timeout_s;
    uint32_t tcp_backlog;
    uint32_t udp_reply_bytes_per_sec;
    uint32_t udp_reply_burst_bytes;
    const char *version;
    struct ss_store_settings store;
};

struct ss_store_stats {
    uint64_t curr_items;
    uint64_t device_bytes;
    uint64_t device_used_bytes;
    uint64_t segment_bytes;
    uint64_t segments;
    uint64_t hot_bytes_limit;
    uint64_t hot_bytes_used;
    uint64_t hot_items;
    uint64_t index_bytes;
    uint32_t item_size_max;
    uint64_t device_offset;
    uint64_t segments_used;
    uint64_t grows;
    uint64_t filter_bytes;
    uint64_t filter_capacity;
    uint64_t filter_inserts;
    uint64_t filter_rebuilds;
};

struct ss_dataplane;

uint32_t ss_abi_version(void);
struct ss_dataplane *ss_dataplane_create(const struct ss_dataplane_settings *s,
                                         char *err, size_t errlen);
int ss_dataplane_run_worker(struct ss_dataplane *dp, int worker_id);
int ss_dataplane_housekeep(struct ss_dataplane *dp);
void ss_dataplane_stop(struct ss_dataplane *dp);
void ss_dataplane_destroy(struct ss_dataplane *dp);
int ss_dataplane_bound_port(struct ss_dataplane *dp, int udp);

int ss_counter_count(void);
const char *ss_counter_name(int i);
int ss_counter_is_gauge(int i);
/* Fill out[0..n) with the summed counters, in ss_counter_name order. */
int ss_dataplane_read_counters(struct ss_dataplane *dp, uint64_t *out, int n);
void ss_dataplane_store_stats(struct ss_dataplane *dp, struct ss_store_stats *out);
/* Verify every index entry against the device; returns failures or -errno. */
long ss_dataplane_verify_index(struct ss_dataplane *dp, uint64_t *checked);
/* Pool capacity (issue 4): grow while serving; shrink only with no worker running. */
int ss_dataplane_grow_pool(struct ss_dataplane *dp, uint64_t new_bytes);
int ss_dataplane_shrink_pool(struct ss_dataplane *dp, uint64_t new_bytes);

/* ---- SPDK data path (ss_device.h; implemented in ss_device_spdk.c) ---- */
struct ss_device;
struct ss_spdk_entry_points {
    uint32_t env_so_major;
    const char *version;
    void (*env_opts_init)(void *opts);
    int (*env_init)(const void *opts);
    int (*transport_id_parse)(void *trid, const char *str);
    void *(*connect)(const void *trid, const void *opts, size_t opts_size);
    int (*detach)(void *ctrlr);
    int32_t (*ctrlr_process_admin_completions)(void *ctrlr);
    void *(*ctrlr_get_ns)(void *ctrlr, uint32_t nsid);
    _Bool (*ns_is_active)(void *ns);
    uint32_t (*ns_get_sector_size)(void *ns);
    uint64_t (*ns_get_num_sectors)(void *ns);
    uint32_t (*ns_get_max_io_xfer_size)(void *ns);
    void *(*ctrlr_alloc_io_qpair)(void *ctrlr, const void *opts, size_t opts_size);
    int (*ctrlr_free_io_qpair)(void *qpair);
    int (*ns_cmd_read)(void *ns, void *qpair, void *buf, uint64_t lba, uint32_t lba_count,
                       void (*cb)(void *arg, const void *cpl), void *arg, uint32_t io_flags);
    int (*ns_cmd_write)(void *ns, void *qpair, void *buf, uint64_t lba, uint32_t lba_count,
                        void (*cb)(void *arg, const void *cpl), void *arg, uint32_t io_flags);
    int (*ns_cmd_flush)(void *ns, void *qpair, void (*cb)(void *arg, const void *cpl),
                        void *arg);
    int32_t (*qpair_process_completions)(void *qpair, uint32_t max_completions);
};
int ss_spdk_env_start(const struct ss_spdk_entry_points *ep, const char *app_name,
                      uint32_t mem_mb, int no_huge, char *err, size_t errlen);
struct ss_device *ss_device_spdk_open(const char *trid, uint32_t nsid, char *err,
                                      size_t errlen);
/* ss_device_close: close a device that was never handed to a store. */
void ss_device_close(struct ss_device *dev);
uint64_t ss_device_size(struct ss_device *dev);
uint32_t ss_device_block_size(struct ss_device *dev);
/* ---- end SPDK data path ---- */

/* ---- proxy mode, ring (ss_proxy.h; implemented in ss_ring.c, ss_hashkit*.c) ---- */
enum ss_hash_kind { SS_HASH_MD5, SS_HASH_CRC32, SS_HASH_CRC32A, SS_HASH_FNV1_64, SS_HASH_FNV1A_64,
                    SS_HASH_FNV1_32, SS_HASH_FNV1A_32, SS_HASH_ONE_AT_A_TIME, SS_HASH_MURMUR,
                    SS_HASH_JENKINS, SS_HASH_HSIEH, SS_HASH__COUNT };
enum ss_distribution { SS_DIST_KETAMA = 0, SS_DIST_MODULA = 1 };
struct ss_ring_point { uint32_t point; uint32_t backend; };
struct ss_ring_settings {
    const char *name;
    uint32_t distribution;
    const struct ss_ring_point *points;
    uint32_t npoints;
    const uint32_t *members;
    uint32_t nmembers;
    const uint32_t *index;
    uint32_t index_bits;
};
uint32_t ss_hash_key(uint32_t kind, const void *key, size_t len);
enum ss_hash_isa { SS_HASH_ISA_BEST = -1, SS_HASH_ISA_SCALAR = 0, SS_HASH_ISA_AVX2 = 1,
                   SS_HASH_ISA_AVX512F = 2 };
int ss_hash_md5_batch(const char *const *keys, const uint32_t *lens, uint32_t n,
                      uint32_t *out, int isa);
uint32_t ss_ring_lookup(const struct ss_ring_settings *ring, uint32_t hash);
uint32_t ss_ring_index_bits(uint32_t npoints);
void ss_ring_index_build(const struct ss_ring_settings *ring, uint32_t bits, uint32_t *index);
/* ---- end proxy mode, ring ---- */
/* ---- proxy mode, data path (ss_proxy.h; implemented in ss_px_*.c) ---- */
enum ss_failure_policy { SS_POLICY_EJECT = 0, SS_POLICY_FAIL = 1, SS_POLICY_FAILOVER = 2 };
enum ss_backend_state { SS_BACKEND_UP = 0, SS_BACKEND_DOWN = 1, SS_BACKEND_DRAINING = 2,
                        SS_BACKEND_EJECTED = 3 };
enum ss_admission { SS_ADMIT_ALWAYS = 0, SS_ADMIT_SECOND_HIT = 1, SS_ADMIT_NEVER = 2 };

struct ss_backend_settings {
    const char *name;
    const char *host;
    int port;
    uint32_t weight;
    uint32_t connect_timeout_ms;
    uint32_t request_timeout_ms;
    uint32_t failure_limit;
    uint32_t policy;
    int32_t failover_ring;
    uint32_t initial_state;
};
struct ss_routing_settings {
    uint32_t hash;
    const struct ss_backend_settings *backends;
    uint32_t nbackends;
    const struct ss_ring_settings *rings;
    uint32_t nrings;
    uint32_t connections_per_backend;
    uint32_t admission;
    uint32_t admission_window_ms;
    uint32_t admission_max_bytes;
    uint32_t local_ttl_max_s;
    int allow_flush_all;
};
#define SS_BACKEND_LATENCY_BUCKETS 32
struct ss_backend_stats {
    uint64_t requests;
    uint64_t errors;
    uint64_t timeouts;
    uint64_t in_flight;
    uint64_t state_changes;
    uint32_t state;
    uint32_t consecutive_failures;
    uint64_t latency_us[32];
};
int ss_dataplane_set_routing(struct ss_dataplane *dp, const struct ss_routing_settings *r,
                             char *err, size_t errlen);
int ss_dataplane_backend_count(struct ss_dataplane *dp);
int ss_dataplane_backend_stats(struct ss_dataplane *dp, uint32_t idx, struct ss_backend_stats *out);
int ss_dataplane_backend_set_state(struct ss_dataplane *dp, uint32_t idx, uint32_t state);
/* ---- end proxy mode, data path ---- */
/* ---- switch mode (ss_switch.h; ss_sw_*.c, or ss_sw_stub.c without DPDK) ---- */
enum ss_sw_rewrite { SS_SW_REWRITE_L3 = 0, SS_SW_REWRITE_L2 = 1 };
enum ss_sw_function { SS_SW_FN_MEMCACHED_CACHE, SS_SW_FN_MEMCACHED_ROUTE, SS_SW_FN_RATE_LIMIT,
                      SS_SW_FN_COUNT, SS_SW_FN_TO_KERNEL, SS_SW_FN_DROP, SS_SW_FN__COUNT };
#define SS_SW_RULES_MAX 32
#define SS_SW_CHAIN_MAX 8
struct ss_sw_rule {
    const char *name;
    uint32_t protocol;
    uint32_t dst_port;
    uint32_t src_addr;
    uint32_t src_prefix_len;
    const uint32_t *chain;
    uint32_t nchain;
};
struct ss_switch_settings {
    const char *port;
    const char *exception_port;
    uint32_t lcores;
    uint32_t service_addr;
    const uint8_t *service_mac;
    uint32_t udp_port;
    uint32_t rewrite;
    uint32_t mbufs;
    uint32_t rate_limit_pps;
    uint32_t rate_limit_burst;
    uint64_t reply_cache_bytes;
    const struct ss_sw_rule *rules;
    uint32_t nrules;
};
struct ss_switch;
int ss_switch_available(void);
int ss_switch_eal_init(int argc, char **argv, char *err, size_t errlen);
struct ss_switch *ss_switch_create(struct ss_dataplane *dp, const struct ss_switch_settings *s,
                                   char *err, size_t errlen);
int ss_switch_mac(struct ss_switch *sw, uint8_t *mac_out);
int ss_switch_run(struct ss_switch *sw, int lcore);
void ss_switch_stop(struct ss_switch *sw);
void ss_switch_destroy(struct ss_switch *sw);
int ss_switch_set_neighbour(struct ss_switch *sw, uint32_t addr, const uint8_t *mac);
int ss_switch_counter_count(struct ss_switch *sw);
int ss_switch_counter_name(struct ss_switch *sw, int i, char *out, size_t outlen);
int ss_switch_read_counters(struct ss_switch *sw, uint64_t *out, int n);
/* ---- end switch mode ---- */
/* ---- console (ss_inspect.h; implemented in ss_inspect.c) ---- */
#define SS_LATENCY_BUCKETS 32
struct ss_key_info {
    uint32_t tier;
    uint32_t flags;
    uint32_t nbytes;
    uint32_t last_access;
    int64_t exptime;
    uint64_t cas;
    uint32_t fetched;
};
int ss_dataplane_read_latency(struct ss_dataplane *dp, uint64_t *out, int n, uint64_t *sum_ns);
int ss_dataplane_key_info(struct ss_dataplane *dp, const void *key, size_t nkey,
                          struct ss_key_info *out);
int ss_dataplane_flush(struct ss_dataplane *dp);
/* ---- end console ---- */
