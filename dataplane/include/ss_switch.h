/*
 * ss_switch.h - switch mode (issue 5): a DPDK fast path in front of the
 * data plane's store and ring.
 *
 * One DPDK port faces the network; a net_tap port (the exception path)
 * carries the appliance's address in the kernel. Per burst, an lcore thread
 * parses each frame (Ethernet, IPv4, UDP, memcached's 8-byte UDP frame),
 * picks the first flow rule that matches and runs the rule's chain of
 * functions; each writes its verdict into the packet's metadata (next,
 * drop, to-kernel, out on the network port, done). Built in:
 *   memcached-cache  a get/gets whose keys all hit is answered from the store
 *                    (reply cut into datagrams of at most 1400 bytes); a
 *                    write drops the local copy and passes on
 *   memcached-route  the request is rewritten to the ring owner of its key
 *                    (l2: destination MAC; l3: destination IP, port and MAC)
 *   rate-limit       a token bucket per source address (packets)
 *   count            counts and passes on
 *   to-kernel, drop
 * A chain that ends with `next` hands the packet to the kernel. Frames the
 * fast path does not parse (ARP, IPv6, fragments, IP options, other
 * addresses) go to the kernel; malformed ones are counted and dropped.
 * Everything the kernel sends on the tap goes out the network port.
 *
 * Python initialises the EAL once (ss_switch_eal_init), creates the switch
 * over a running data plane (which serves the kernel side: TCP memcached,
 * UDP commands the fast path hands over), lends one thread per lcore to
 * ss_switch_run (GIL released) and reads counters in one call. Without
 * DPDK at build time every entry point returns -ENOTSUP (ss_sw_stub.c).
 */
#ifndef SS_SWITCH_H
#define SS_SWITCH_H

#include <stddef.h>
#include <stdint.h>

/* cffi: begin */
struct ss_dataplane;
struct ss_switch;

#define SS_SW_RULES_MAX 32
#define SS_SW_CHAIN_MAX 8

/* The built-in functions, as the config names them. */
#define SS_SW_FUNCTIONS(X)                     \
    X(MEMCACHED_CACHE, "memcached-cache")      \
    X(MEMCACHED_ROUTE, "memcached-route")      \
    X(RATE_LIMIT, "rate-limit")                \
    X(COUNT, "count")                          \
    X(TO_KERNEL, "to-kernel")                  \
    X(DROP, "drop")

enum ss_sw_function {
#define SS_SW_FN_ENUM(name, str) SS_SW_FN_##name,
    SS_SW_FUNCTIONS(SS_SW_FN_ENUM)
#undef SS_SW_FN_ENUM
    SS_SW_FN__COUNT
};

enum ss_sw_rewrite { SS_SW_REWRITE_L3 = 0, SS_SW_REWRITE_L2 = 1 };
/* cffi: end */

/* A function's verdict, kept in the packet's metadata. */
#define SS_SW_VERDICTS(X) \
    X(NEXT, "next")       \
    X(DROP, "drop")       \
    X(KERNEL, "kernel")   \
    X(OUT, "out")         \
    X(DONE, "done")

enum ss_sw_verdict {
#define SS_SW_V_ENUM(name, str) SS_SW_V_##name,
    SS_SW_VERDICTS(SS_SW_V_ENUM)
#undef SS_SW_V_ENUM
    SS_SW_V__COUNT
};

/* The switch's own counters (summed over lcores), besides the ethdev stats
 * of each port and the per-rule and per-function counters. */
#define SS_SW_COUNTERS(X)                                                          \
    X(rx_packets)        /* frames received on the network port */                 \
    X(tx_packets)        /* frames sent on the network port (replies, forwards) */  \
    X(tx_dropped)        /* the port's TX queue was full */                         \
    X(to_kernel)         /* frames handed to the exception path */                 \
    X(from_kernel)       /* frames the kernel sent, out the network port */        \
    X(kernel_dropped)    /* the exception path's queue was full, or none */        \
    X(dropped)           /* frames dropped by a verdict or a check */              \
    X(not_ours)          /* unicast to another MAC, or our own frame echoed */     \
    X(bad_truncated)     /* shorter than its headers */                           \
    X(bad_length)        /* IP or UDP length disagrees with the frame */           \
    X(bad_ip_checksum)                                                             \
    X(bad_udp_checksum)                                                            \
    X(ip_fragments)      /* to the kernel, which reassembles */                    \
    X(ip_options)        /* to the kernel */                                       \
    X(mc_bad_frame)      /* memcached port, no valid 8-byte frame or command line */ \
    X(mc_multi_datagram) /* requests of more than one datagram: dropped */         \
    X(mc_other)          /* a memcached command the fast path leaves to the kernel */ \
    X(mc_hits)           /* get/gets answered from the store */                    \
    X(mc_keys_hit)                                                                 \
    X(mc_keys_missed)                                                              \
    X(mc_reply_datagrams)                                                          \
    X(mc_reply_too_large) /* more datagrams than a reply may have: to the kernel */ \
    X(mc_forwarded_gets)                                                           \
    X(mc_forwarded_writes)                                                         \
    X(mc_invalidated)    /* local copies dropped by a write passing through */     \
    X(mc_no_route)       /* no ring (standalone), a miss answered locally */       \
    X(mc_no_mac)         /* the owner's MAC is unknown yet: to the kernel */       \
    X(mc_split)          /* keys owned by different back ends: to the kernel */    \
    X(mc_reply_cache_hits)  /* gets answered from the lcore's reply cache */        \
    X(mc_reply_cache_fills)                                                        \
    X(mc_reply_cache_stale) /* an entry a write or flush made invalid */           \
    X(mc_parked)         /* gets parked while their value is read from the device */ \
    X(mc_park_full)      /* device hits handed to the kernel: the park was full */  \
    X(alloc_failed)                                                                \
    X(rate_limited)

/* cffi: begin */
struct ss_sw_rule {
    const char *name;
    uint32_t protocol;       /* IP protocol number; 0 = any */
    uint32_t dst_port;       /* 0 = any (TCP/UDP only) */
    uint32_t src_addr;       /* IPv4, host byte order */
    uint32_t src_prefix_len; /* 0 = any source */
    const uint32_t *chain;   /* enum ss_sw_function, in order */
    uint32_t nchain;
};

struct ss_switch_settings {
    const char *port;            /* ethdev name of the port facing the network */
    const char *exception_port;  /* ethdev name of the net_tap; NULL = none */
    uint32_t lcores;             /* fast-path threads: one RX/TX queue pair each */
    uint32_t service_addr;       /* IPv4, host byte order */
    const uint8_t *service_mac;  /* 6 bytes; NULL = the port's own MAC */
    uint32_t udp_port;           /* memcached over UDP on the service address */
    uint32_t rewrite;            /* enum ss_sw_rewrite */
    uint32_t mbufs;              /* packet buffers in the pool */
    uint32_t rate_limit_pps;     /* rate-limit: packets per second per source */
    uint32_t rate_limit_burst;
    uint64_t reply_cache_bytes;  /* per lcore; 0 = no reply cache */
    const struct ss_sw_rule *rules; /* first match wins; none matching: kernel */
    uint32_t nrules;
    /* Appended (asynchronous reads): gets one lcore keeps parked while their
     * values are read from the device; 0 = SS_SW_PARK_DEFAULT. */
    uint32_t park_max;
};

#define SS_SW_PARK_DEFAULT 256u

/* 1 when built with DPDK, 0 when every entry point below is a stub. */
int ss_switch_available(void);
/* Initialise DPDK's EAL once per process. Returns 0 or -errno with err set. */
int ss_switch_eal_init(int argc, char **argv, char *err, size_t errlen);
/* 1 once ss_switch_eal_init succeeded in this process: SPDK then attaches to
 * this EAL (ss_spdk_env_start) instead of starting its own. */
int ss_switch_eal_ready(void);
/*
 * Configure and start the ports and build the fast path over dp (its store
 * and its routing table). Returns NULL with err set.
 */
struct ss_switch *ss_switch_create(struct ss_dataplane *dp, const struct ss_switch_settings *s,
                                   char *err, size_t errlen);
/* The MAC the switch answers to (for the exception path's interface). */
int ss_switch_mac(struct ss_switch *sw, uint8_t *mac_out);
/* Serve queue pair `lcore` on this thread until ss_switch_stop(). Returns 0 or -errno. */
int ss_switch_run(struct ss_switch *sw, int lcore);
void ss_switch_stop(struct ss_switch *sw);
/* After every ss_switch_run has returned: stop the ports, free everything. */
void ss_switch_destroy(struct ss_switch *sw);
/* A back end's MAC (static config or the kernel's neighbour table); IPv4 in
 * host byte order. Returns 0, -ENOSPC (table full). */
int ss_switch_set_neighbour(struct ss_switch *sw, uint32_t addr, const uint8_t *mac);
/* Counters in one call: names of the flat list (switch counters, then per
 * port, per rule, per function), and their summed values. */
int ss_switch_counter_count(struct ss_switch *sw);
int ss_switch_counter_name(struct ss_switch *sw, int i, char *out, size_t outlen);
int ss_switch_read_counters(struct ss_switch *sw, uint64_t *out, int n);
/* cffi: end */

#endif
