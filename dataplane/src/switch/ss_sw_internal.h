/*
 * ss_sw_internal.h - switch mode, private to ss_sw_*.c (not the stub).
 *
 *   ss_sw_port.c     EAL, ports, the lcore loop, counters, neighbours
 *   ss_sw_parse.c    Ethernet/IPv4/UDP checks and the memcached UDP frame
 *   ss_sw_flow.c     flow rules and function chains
 *   ss_sw_mc.c       memcached-cache: hits answered from the store
 *   ss_sw_route.c    memcached-route: the ring's owner, l2/l3 rewrite
 *   ss_sw_reply_cache.c  each lcore's cache of finished get replies
 *   ss_sw_csum.h     the Internet checksum, 32 bits at a time
 */
#ifndef SS_SW_INTERNAL_H
#define SS_SW_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <rte_ether.h>
#include <rte_ip.h>
#include <rte_mbuf.h>
#include <rte_udp.h>

#include "ss_counters.h"
#include "ss_proxy.h"
#include "ss_store.h"
#include "ss_switch.h"
#include "proxy/ss_px_routing.h"

#define SW_BURST 32
#define SW_NEIGH_MAX 64
/* 1400-byte datagrams: a reply of item_size_max 128 MiB would need ~96k;
 * larger than this many datagrams goes to the kernel's UDP listener. */
#define SW_REPLY_DATAGRAMS_MAX 1024
#define SW_RL_SLOTS 4096 /* rate-limit buckets per lcore (power of two) */
/* memcached protocol.txt, "UDP protocol": 8-byte frame header (request id,
 * sequence number, total datagrams, reserved), datagrams of at most 1400
 * bytes including it. */
#define SW_MC_HDR 8u
#define SW_MC_DATAGRAM 1400u
#define SW_MC_PAYLOAD (SW_MC_DATAGRAM - SW_MC_HDR)
#define SW_L2L4 (sizeof(struct rte_ether_hdr) + sizeof(struct rte_ipv4_hdr) + \
                 sizeof(struct rte_udp_hdr))
/* Completions an lcore takes per loop turn (its kernel queue's room). */
#define SW_PARK_REAP SW_BURST

/* Keys per get the fast path handles; longer lines go to the kernel. */
#define SW_MC_KEYS_MAX 32

enum sw_ctr {
#define SW_CTR_ENUM(n) SW_C_##n,
    SS_SW_COUNTERS(SW_CTR_ENUM)
#undef SW_CTR_ENUM
    SW_C__COUNT
};

enum sw_mc_cmd { SW_MC_NONE = 0, SW_MC_GET, SW_MC_GETS, SW_MC_WRITE, SW_MC_OTHER, SW_MC_BAD };

/* Per-packet metadata, filled by the parser and the functions. */
struct sw_pkt {
    struct rte_mbuf *m;
    struct rte_ether_hdr *eth;
    struct rte_ipv4_hdr *ip;
    struct rte_udp_hdr *udp;      /* UDP only */
    uint8_t proto;
    uint8_t verdict;              /* enum ss_sw_verdict */
    uint8_t mc_parsed;
    uint8_t mc_cmd;               /* enum sw_mc_cmd */
    uint16_t sport, dport;        /* host order; 0 for non-TCP/UDP */
    uint32_t src;                 /* host order */
    const char *payload;          /* UDP payload */
    uint16_t plen;
    uint8_t parse_res;            /* enum sw_parse_res, from the burst's first pass */
    uint8_t have_ring_hash;       /* ring_hash is keys[0]'s ring hash */
    uint32_t ring_hash;
    /* memcached (after sw_mc_parse) */
    uint64_t khash;               /* ss_hash64 of keys[0] (gets of one key), 0 = not yet */
    /* The reply cache's entry for khash (a get, the burst's second pass),
     * not yet checked against the key or the store; NULL = none. */
    const struct sw_rc_entry *rc_entry;
    uint16_t reqid;
    uint8_t nkeys;
    const char *keys[SW_MC_KEYS_MAX];
    uint8_t nkey[SW_MC_KEYS_MAX];
};

struct sw_neigh {
    _Atomic uint32_t addr;        /* host order; 0 = free */
    _Atomic uint64_t mac;         /* low 48 bits, byte 0 first; 0 = unknown */
};

/* This lcore's copy of the routing table (ss_sw_route.c). */
struct sw_route {
    bool active;                  /* a ring is installed (proxy mode) */
    /* The primary ring and the back ends, copied when the proxy plane's
     * generation moves. `tab.up` is refreshed every SW_HEALTH_MS; `tab.policy`
     * says what a key whose owner is not UP does (eject walks the ring; fail
     * and failover hand the packet to the kernel path). */
    struct ss_px_route_copy tab;
    uint64_t health_ms;           /* when `tab.up` was last refreshed */
};

struct sw_rl_slot {
    uint32_t addr;
    uint32_t tokens_milli;        /* tokens * 1000 */
    uint64_t last_ns;
};

struct sw_rule {
    char name[64];
    uint32_t protocol, dst_port, src_addr, src_mask;
    uint32_t chain[SS_SW_CHAIN_MAX];
    uint32_t nchain;
};

/* One reply cached by an lcore (ss_sw_reply_cache.c): 4 cache lines. */
struct sw_rc_entry {
    uint64_t khash;               /* ss_hash64 of the key; 0 = empty */
    uint64_t token;               /* ss_store_copy_token when filled */
    int64_t exptime;              /* the item's; 0 = never */
    uint64_t psum;                /* sw_csum_add of the payload */
    uint16_t nkey, plen;
    uint32_t pad;
    char data[256 - 40];          /* the key, then the payload (VALUE .. END) */
};

struct sw_lcore {
    uint64_t ctr[SW_C__COUNT];
    uint64_t rule_hits[SS_SW_RULES_MAX];
    uint64_t fn_verdicts[SS_SW_FN__COUNT][SS_SW_V__COUNT];
    struct ss_counters store_ctr;  /* what the store adds (hits by tier...) */
    struct ss_store_thread st;
    bool st_ready;
    struct sw_route route;
    struct sw_rl_slot *rl;
    struct sw_pkt pkts[SW_BURST];
    struct rte_mbuf *tx_port[SW_BURST * 4];
    uint16_t nb_tx_port;
    struct rte_mbuf *tx_kernel[SW_BURST];
    uint16_t nb_tx_kernel;
    struct rte_mbuf *reply[SW_REPLY_DATAGRAMS_MAX];
    char scratch[SW_MC_DATAGRAM];  /* the request's payload while the reply overwrites it */
    struct sw_rc_entry *rc;        /* reply cache; NULL = off */
    uint32_t rc_mask;
    int64_t now_s;                 /* unix seconds, read once per burst */
    struct sw_parked *parked;      /* park_max slots (ss_sw_mc.c) */
    uint32_t park_max;
    struct sw_parked *park_free;
    uint32_t nparked;
    int id;
    _Atomic int running;
} __attribute__((aligned(64)));

struct ss_switch {
    struct ss_dataplane *dp;
    struct ss_switch_settings s;     /* rules copied into rules[] */
    uint16_t port_id, tap_id;
    bool has_tap;
    bool ports_started;
    struct rte_ether_addr mac;
    uint32_t service_be;             /* service address, network order */
    struct rte_mempool *pool;
    struct sw_rule rules[SS_SW_RULES_MAX];
    uint32_t nrules;
    struct sw_neigh neigh[SW_NEIGH_MAX];
    struct sw_lcore *lcores;         /* s.lcores of them */
    atomic_int stopping;
};

/* ss_sw_parse.c */
enum sw_parse_res { SW_PARSE_OK = 0, SW_PARSE_KERNEL, SW_PARSE_DROP };
enum sw_parse_res sw_parse(struct ss_switch *sw, struct sw_lcore *lc, struct sw_pkt *p);
/* Parse the memcached UDP frame and command line (once). Sets p->mc_cmd. */
void sw_mc_parse(struct sw_lcore *lc, struct sw_pkt *p);
/* First pass over a burst: for a get of one key to the memcached port, hash
 * the key and prefetch what its lookup touches. */
void sw_mc_prefetch(struct ss_switch *sw, struct sw_lcore *lc, struct sw_pkt *p);

/* ss_sw_flow.c */
void sw_flow_run(struct ss_switch *sw, struct sw_lcore *lc, struct sw_pkt *p);
int sw_rules_install(struct ss_switch *sw, const struct ss_switch_settings *s, char *err,
                     size_t errlen);

/* ss_sw_mc.c: memcached-cache */
enum ss_sw_verdict sw_fn_mc_cache(struct ss_switch *sw, struct sw_lcore *lc, struct sw_pkt *p);
/* Device hits: the lcore's io_uring and its park of gets waiting for reads.
 * init: 0 (or no ring: device hits are read at once); poll once per loop
 * turn; fini after the loop (reads still in flight complete, their packets
 * are freed). */
int sw_park_init(struct ss_switch *sw, struct sw_lcore *lc);
void sw_park_poll(struct ss_switch *sw, struct sw_lcore *lc);
void sw_park_fini(struct sw_lcore *lc);
/* ss_sw_route.c: memcached-route */
enum ss_sw_verdict sw_fn_mc_route(struct ss_switch *sw, struct sw_lcore *lc, struct sw_pkt *p);
void sw_route_adopt(struct ss_switch *sw, struct sw_lcore *lc);
void sw_route_free(struct sw_route *r);
/* Ring hashes of the burst's likely forwards, computed together. */
void sw_route_hash_burst(struct sw_lcore *lc, struct sw_pkt *pkts, uint16_t n);
/* The owner back end of every key of p, or -1 (none, or -2: keys split). */
int sw_route_owner(struct sw_lcore *lc, const struct sw_pkt *p);

/* ss_sw_reply_cache.c */
int sw_rc_init(struct sw_lcore *lc, uint64_t bytes);
void sw_rc_free(struct sw_lcore *lc);
/* The key's set: two neighbouring entries (two-way associative, so two hot
 * keys whose hashes meet do not keep evicting each other). */
static inline struct sw_rc_entry *sw_rc_set(struct sw_lcore *lc, uint64_t khash)
{
    /* The stripe takes the hash's low bits, the DRAM buckets the next ones. */
    return &lc->rc[(khash >> 40) & lc->rc_mask & ~1u];
}
/* The entry of the set holding khash, or NULL. */
static inline const struct sw_rc_entry *sw_rc_probe(struct sw_lcore *lc, uint64_t khash)
{
    const struct sw_rc_entry *set = sw_rc_set(lc, khash);
    return set[0].khash == khash ? &set[0] : set[1].khash == khash ? &set[1] : NULL;
}
/* Whether entry e (sw_rc_probe's for khash) holds this key, still valid. */
bool sw_rc_valid(struct sw_lcore *lc, struct ss_store *st, const struct sw_rc_entry *e,
                 uint64_t khash, const char *key, size_t nkey);
/* Keep a reply payload (the key's stripe locked, t->locked_hash its hash). */
void sw_rc_fill(struct sw_lcore *lc, const struct ss_store_thread *t, const char *key,
                size_t nkey, int64_t exptime, const char *payload, size_t plen);

/* ss_sw_port.c */
/* Queue m for the network port (flushing when the queue is full). */
void sw_tx_port(struct ss_switch *sw, struct sw_lcore *lc, struct rte_mbuf *m);
uint64_t sw_neigh_mac(struct ss_switch *sw, uint32_t addr);
static inline void sw_mac_from_u64(struct rte_ether_addr *a, uint64_t v)
{
    for (int i = 0; i < 6; i++)
        a->addr_bytes[i] = (uint8_t)(v >> (8 * i));
}

#endif
