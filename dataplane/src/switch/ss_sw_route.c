/*
 * ss_sw_route.c - memcached-route: send a request to the ring owner of its
 * key by rewriting the packet, so the owner answers the client directly.
 *
 *   l3  destination IP and UDP port become the owner's, the destination MAC
 *       its MAC (the kernel's neighbour table or static config); TTL down by
 *       one; IPv4 and UDP checksums recomputed.
 *   l2  only the destination MAC changes (direct server return, as LVS-DR):
 *       back ends hold the service address on a loopback alias and answer
 *       from it.
 *
 * The ring is proxy mode's. Each lcore keeps its own copy of the primary
 * ring and the back ends' addresses (ss_px_route_copy, proxy/ss_px_routing.h),
 * taken when the table's generation changes, so the fast path never holds a
 * pointer into a table the control plane may free. Back-end states (DOWN
 * after failures on the socket path, or an operator's drain/eject) are
 * refreshed the same way every SW_HEALTH_MS: a key whose owner is not UP goes,
 * under `eject`, to the next UP back end on the ring (as proxy mode does);
 * under `fail` or `failover` it is handed to the kernel path. The proxy plane
 * takes its control lock for both; per burst there is one atomic load (the
 * generation) and a clock read.
 */
#include <string.h>

#include <rte_byteorder.h>

#include "common/ss_clock.h"
#include "ss_sw_internal.h"

#define SW_HEALTH_MS 10

void sw_route_free(struct sw_route *r)
{
    ss_px_route_copy_free(&r->tab);
    memset(r, 0, sizeof(*r));
}

/* Take the data plane's routing table when it has changed (once per burst). */
void sw_route_adopt(struct ss_switch *sw, struct sw_lcore *lc)
{
    struct sw_route *r = &lc->route;
    uint64_t gen = ss_px_routing_generation(sw->dp);
    if (gen == r->tab.generation) {
        if (!r->active || ss_clock_mono_ms() - r->health_ms < SW_HEALTH_MS)
            return;
        /* -ESTALE: a new table; the next burst sees its generation. */
        if (ss_px_route_refresh_health(sw->dp, &r->tab) == 0)
            r->health_ms = ss_clock_mono_ms();
        return;
    }
    sw_route_free(r);
    /* -ENOENT (no ring) or -ENOMEM: standalone until the next table; the copy
     * still records the generation it saw, so this is not retried per burst. */
    r->active = ss_px_route_copy(sw->dp, &r->tab) == 0;
    r->health_ms = ss_clock_mono_ms();
}

/*
 * The burst's ring hashes at once, for the packets likely to be forwarded:
 * a get of one key that the reply cache will not answer, or a write. With
 * md5 (ketama's usual hash) the keys go through SIMD lanes together
 * (ss_hash_md5_batch); a key whose get turns out to be a store hit has cost
 * one lane. Other hashes are left to sw_route_owner, one key at a time.
 */
void sw_route_hash_burst(struct sw_lcore *lc, struct sw_pkt *pkts, uint16_t n)
{
    if (!lc->route.active || lc->route.tab.hash != SS_HASH_MD5)
        return;
    const char *keys[SW_BURST];
    uint32_t lens[SW_BURST], out[SW_BURST];
    struct sw_pkt *which[SW_BURST];
    uint32_t nk = 0;
    for (uint16_t i = 0; i < n; i++) {
        struct sw_pkt *p = &pkts[i];
        if (!p->mc_parsed || p->nkeys != 1 || p->rc_entry ||
            (p->mc_cmd != SW_MC_GET && p->mc_cmd != SW_MC_GETS && p->mc_cmd != SW_MC_WRITE))
            continue;
        keys[nk] = p->keys[0];
        lens[nk] = p->nkey[0];
        which[nk++] = p;
    }
    if (nk == 0 || ss_hash_md5_batch(keys, lens, nk, out, SS_HASH_ISA_BEST) != 0)
        return;
    for (uint32_t i = 0; i < nk; i++) {
        which[i]->ring_hash = out[i];
        which[i]->have_ring_hash = 1;
    }
}

static int route_up(const void *ctx, uint32_t b)
{
    const struct sw_route *r = ctx;
    return b < r->tab.nbackends && r->tab.up[b];
}

int sw_route_owner(struct sw_lcore *lc, const struct sw_pkt *p)
{
    const struct sw_route *r = &lc->route;
    int owner = -1;
    for (uint32_t k = 0; k < p->nkeys; k++) {
        uint32_t h = k == 0 && p->have_ring_hash
                         ? p->ring_hash
                         : ss_hash_key(r->tab.hash, p->keys[k], p->nkey[k]);
        uint32_t b = ss_ring_lookup(&r->tab.ring, h);
        if (b >= r->tab.nbackends)
            return -1;
        if (!r->tab.up[b]) {
            if (r->tab.policy[b] != SS_POLICY_EJECT)
                return -1;
            b = ss_ring_walk(&r->tab.ring, h, route_up, r);
            if (b >= r->tab.nbackends)
                return -1;
        }
        if (owner >= 0 && (uint32_t)owner != b)
            return -2;
        owner = (int)b;
    }
    return owner;
}

/*
 * A stored Internet checksum after n 16-bit words (as stored) change from
 * old[] to new[]: HC' = ~(~HC + ~m + m'), RFC 1624 equation 3. The sum is
 * byte-order independent, so words are taken as they lie in the packet.
 */
static uint16_t csum_replace(uint16_t ck, const uint16_t *old, const uint16_t *new, int n)
{
    uint32_t sum = (uint16_t)~ck;
    for (int i = 0; i < n; i++)
        sum += (uint16_t)~old[i] + (uint32_t)new[i];
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)~sum;
}

/*
 * memcached-route. Returns OUT (rewritten for the network port), KERNEL
 * (standalone, keys owned by several back ends, owner's MAC unknown), DROP
 * (malformed) or NEXT (not memcached).
 */
enum ss_sw_verdict sw_fn_mc_route(struct ss_switch *sw, struct sw_lcore *lc, struct sw_pkt *p)
{
    if (!p->udp)
        return SS_SW_V_NEXT;
    sw_mc_parse(lc, p);
    if (p->mc_cmd == SW_MC_BAD)
        return SS_SW_V_DROP;
    if (p->mc_cmd == SW_MC_OTHER)
        return SS_SW_V_KERNEL;
    if (!lc->route.active) {
        lc->ctr[SW_C_mc_no_route]++;
        return SS_SW_V_KERNEL;
    }
    int b = sw_route_owner(lc, p);
    if (b < 0) {
        lc->ctr[b == -2 ? SW_C_mc_split : SW_C_mc_no_route]++;
        return SS_SW_V_KERNEL;
    }
    uint32_t addr = lc->route.tab.be_addr[b];
    uint64_t mac = addr ? sw_neigh_mac(sw, addr) : 0;
    if (!mac) {
        lc->ctr[SW_C_mc_no_mac]++;
        return SS_SW_V_KERNEL;
    }
    struct rte_ipv4_hdr *ip = p->ip;
    if (sw->s.rewrite == SS_SW_REWRITE_L3) {
        if (ip->time_to_live <= 1)
            return SS_SW_V_DROP;
        /* The checksums are adjusted for the words that change (RFC 1624)
         * rather than recomputed: the headers were verified on the way in.
         * The new words are built in registers, not read back from the
         * header just written (a wide load over narrow stores stalls). */
        uint16_t old[4], new[4];
        memcpy(old, &ip->time_to_live, 2);
        memcpy(old + 1, &ip->dst_addr, 4);
        old[3] = p->udp->dst_port;
        const uint8_t ttl_proto[2] = {(uint8_t)(ip->time_to_live - 1), ip->next_proto_id};
        uint32_t dst_be = rte_cpu_to_be_32(addr);
        memcpy(new, ttl_proto, 2);
        memcpy(new + 1, &dst_be, 4);
        new[3] = rte_cpu_to_be_16(lc->route.tab.be_port[b]);
        ip->time_to_live = ttl_proto[0];
        ip->dst_addr = dst_be;
        p->udp->dst_port = new[3];
        ip->hdr_checksum = csum_replace(ip->hdr_checksum, old, new, 3);
        if (p->udp->dgram_cksum == 0) {
            /* "no checksum", as the client sent it */
        } else if ((p->m->ol_flags & RTE_MBUF_F_RX_L4_CKSUM_MASK) ==
                   RTE_MBUF_F_RX_L4_CKSUM_NONE) {
            /* verified by the NIC but not correct in the data: recompute */
            p->udp->dgram_cksum = 0;
            p->udp->dgram_cksum = rte_ipv4_udptcp_cksum(ip, p->udp);
        } else {
            uint16_t c = csum_replace(p->udp->dgram_cksum, old + 1, new + 1, 3);
            p->udp->dgram_cksum = c ? c : 0xffff; /* 0 would mean none (RFC 768) */
        }
    }
    sw_mac_from_u64(&p->eth->dst_addr, mac);
    rte_ether_addr_copy(&sw->mac, &p->eth->src_addr);
    if (p->mc_cmd == SW_MC_WRITE) {
        lc->ctr[SW_C_mc_forwarded_writes]++;
    } else {
        lc->ctr[SW_C_mc_forwarded_gets]++;
        lc->ctr[SW_C_mc_keys_missed] += p->nkeys;
    }
    return SS_SW_V_OUT;
}
