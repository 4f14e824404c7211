/*
 * ss_sw_parse.c - the checks every frame passes before a flow rule sees it,
 * and the memcached UDP frame.
 *
 * Nothing malformed is ever forwarded: a frame shorter than its headers,
 * an IP or UDP length that disagrees with the frame, a bad IPv4 header
 * checksum or a bad UDP checksum is counted and dropped. Frames the fast
 * path does not take (not IPv4, not for the service address, IP options,
 * fragments, multi-segment mbufs) go to the kernel, which has the full
 * stack. The memcached command line is looked at lazily, only when a
 * memcached function asks.
 */
#include <string.h>

#include <rte_byteorder.h>

#include "common/ss_hash.h"
#include "ss_sw_csum.h"
#include "ss_sw_internal.h"

static inline bool is_our_mac(const struct ss_switch *sw, const struct rte_ether_addr *a)
{
    return rte_is_same_ether_addr(a, &sw->mac);
}

/*
 * Classify frame p->m: SW_PARSE_OK (an IPv4 packet for the service address,
 * headers checked, p filled), SW_PARSE_KERNEL or SW_PARSE_DROP (counted).
 */
enum sw_parse_res sw_parse(struct ss_switch *sw, struct sw_lcore *lc, struct sw_pkt *p)
{
    struct rte_mbuf *m = p->m;
    uint32_t len = rte_pktmbuf_data_len(m);

    p->mc_parsed = 0;
    p->mc_cmd = SW_MC_NONE;
    p->khash = 0;
    p->rc_entry = NULL;
    p->have_ring_hash = 0;
    p->udp = NULL;
    p->sport = p->dport = 0;
    p->verdict = SS_SW_V_NEXT;
    if (len < sizeof(struct rte_ether_hdr)) {
        lc->ctr[SW_C_bad_truncated]++;
        return SW_PARSE_DROP;
    }
    p->eth = rte_pktmbuf_mtod(m, struct rte_ether_hdr *);
    /* Our own transmissions seen again (a packet socket can see them). */
    if (is_our_mac(sw, &p->eth->src_addr)) {
        lc->ctr[SW_C_not_ours]++;
        return SW_PARSE_DROP;
    }
    if (!is_our_mac(sw, &p->eth->dst_addr)) {
        if (rte_is_multicast_ether_addr(&p->eth->dst_addr))
            return SW_PARSE_KERNEL; /* ARP requests, IPv6 neighbour discovery */
        lc->ctr[SW_C_not_ours]++;
        return SW_PARSE_DROP;
    }
    if (p->eth->ether_type != rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4))
        return SW_PARSE_KERNEL;
    if (m->nb_segs != 1)
        return SW_PARSE_KERNEL;
    if (len < sizeof(struct rte_ether_hdr) + sizeof(struct rte_ipv4_hdr)) {
        lc->ctr[SW_C_bad_truncated]++;
        return SW_PARSE_DROP;
    }
    struct rte_ipv4_hdr *ip = (struct rte_ipv4_hdr *)(p->eth + 1);
    p->ip = ip;
    uint32_t ihl = (uint32_t)(ip->version_ihl & 0x0f) * 4;
    uint32_t tot = rte_be_to_cpu_16(ip->total_length);
    if ((ip->version_ihl >> 4) != 4 || ihl < sizeof(struct rte_ipv4_hdr) ||
        tot < ihl || tot > len - sizeof(struct rte_ether_hdr)) {
        lc->ctr[SW_C_bad_length]++;
        return SW_PARSE_DROP;
    }
    /* A NIC that checked the header says so (GOOD, or NONE: verified but
     * not written back); net_pcap and af_packet say UNKNOWN. */
    uint64_t ipck = m->ol_flags & RTE_MBUF_F_RX_IP_CKSUM_MASK;
    if (ipck == RTE_MBUF_F_RX_IP_CKSUM_BAD ||
        (ipck == RTE_MBUF_F_RX_IP_CKSUM_UNKNOWN &&
         (ihl == sizeof(*ip) ? sw_ipv4_cksum(ip) : rte_ipv4_cksum(ip)) != 0)) {
        /* rte_ipv4_cksum over a header with a correct checksum gives 0
         * (the sum of all words including the checksum is 0xffff). */
        lc->ctr[SW_C_bad_ip_checksum]++;
        return SW_PARSE_DROP;
    }
    if (ip->dst_addr != sw->service_be)
        return SW_PARSE_KERNEL;
    if (ihl != sizeof(struct rte_ipv4_hdr)) {
        lc->ctr[SW_C_ip_options]++;
        return SW_PARSE_KERNEL;
    }
    if (ip->fragment_offset &
        rte_cpu_to_be_16(RTE_IPV4_HDR_MF_FLAG | RTE_IPV4_HDR_OFFSET_MASK)) {
        lc->ctr[SW_C_ip_fragments]++;
        return SW_PARSE_KERNEL;
    }
    p->proto = ip->next_proto_id;
    p->src = rte_be_to_cpu_32(ip->src_addr);
    if (p->proto == IPPROTO_TCP && tot >= ihl + 4) {
        const uint16_t *ports = (const uint16_t *)((const char *)ip + ihl);
        p->sport = rte_be_to_cpu_16(ports[0]);
        p->dport = rte_be_to_cpu_16(ports[1]);
        return SW_PARSE_OK;
    }
    if (p->proto != IPPROTO_UDP)
        return SW_PARSE_OK;
    if (tot < ihl + sizeof(struct rte_udp_hdr)) {
        lc->ctr[SW_C_bad_truncated]++;
        return SW_PARSE_DROP;
    }
    struct rte_udp_hdr *udp = (struct rte_udp_hdr *)((char *)ip + ihl);
    if (rte_be_to_cpu_16(udp->dgram_len) != tot - ihl) {
        lc->ctr[SW_C_bad_length]++;
        return SW_PARSE_DROP;
    }
    /* 0 = the sender computed none (RFC 768). */
    uint64_t l4ck = m->ol_flags & RTE_MBUF_F_RX_L4_CKSUM_MASK;
    if (udp->dgram_cksum != 0 &&
        (l4ck == RTE_MBUF_F_RX_L4_CKSUM_BAD ||
         (l4ck == RTE_MBUF_F_RX_L4_CKSUM_UNKNOWN && sw_udp_check(ip, udp) != 0))) {
        lc->ctr[SW_C_bad_udp_checksum]++;
        return SW_PARSE_DROP;
    }
    /* The frame may carry Ethernet padding past the IP datagram. */
    rte_pktmbuf_trim(m, (uint16_t)(len - sizeof(struct rte_ether_hdr) - tot));
    p->udp = udp;
    p->sport = rte_be_to_cpu_16(udp->src_port);
    p->dport = rte_be_to_cpu_16(udp->dst_port);
    p->payload = (const char *)(udp + 1);
    p->plen = (uint16_t)(tot - ihl - sizeof(struct rte_udp_hdr));
    return SW_PARSE_OK;
}

static inline uint16_t be16_at(const char *s)
{
    const uint8_t *u = (const uint8_t *)s;
    return (uint16_t)((u[0] << 8) | u[1]);
}

static bool word_is(const char *w, size_t n, const char *lit)
{
    size_t l = strlen(lit);
    return n == l && memcmp(w, lit, l) == 0;
}

/* Single-key commands that change an item: forwarded, local copy dropped. */
static bool is_write(const char *w, size_t n)
{
    static const char *const writes[] = {"set",    "add",  "replace", "append", "prepend",
                                         "cas",    "delete", "incr",  "decr",   "touch"};
    for (size_t i = 0; i < sizeof(writes) / sizeof(writes[0]); i++)
        if (word_is(w, n, writes[i]))
            return true;
    return false;
}

/*
 * The memcached UDP frame and the first command line of p (a UDP packet to
 * the memcached port). Sets p->mc_cmd: GET/GETS with keys[], WRITE with the
 * key in keys[0], OTHER (left to the kernel), or BAD (counted).
 */
void sw_mc_parse(struct sw_lcore *lc, struct sw_pkt *p)
{
    if (p->mc_parsed)
        return;
    p->mc_parsed = 1;
    p->mc_cmd = SW_MC_BAD;
    p->nkeys = 0;
    if (!p->udp || p->plen < SW_MC_HDR) {
        lc->ctr[SW_C_mc_bad_frame]++;
        return;
    }
    const char *h = p->payload;
    if (be16_at(h + 2) != 0 || be16_at(h + 4) != 1) {
        /* protocol.txt: requests of more than one datagram are not answered. */
        lc->ctr[SW_C_mc_multi_datagram]++;
        return;
    }
    p->reqid = be16_at(h);
    const char *pos = h + SW_MC_HDR, *end = p->payload + p->plen;
    const char *eol = memchr(pos, '\n', (size_t)(end - pos));
    if (!eol || eol == pos) {
        lc->ctr[SW_C_mc_bad_frame]++;
        return;
    }
    const char *last = eol[-1] == '\r' ? eol - 1 : eol;
    const char *w = pos;
    while (w < last && *w != ' ')
        w++;
    size_t nw = (size_t)(w - pos);
    bool get = word_is(pos, nw, "get"), gets = word_is(pos, nw, "gets");
    if (!get && !gets && !is_write(pos, nw)) {
        p->mc_cmd = SW_MC_OTHER;
        lc->ctr[SW_C_mc_other]++;
        return;
    }
    /* Keys: the words after the command (a write's key is its first). */
    const char *q = w;
    for (;;) {
        while (q < last && *q == ' ')
            q++;
        if (q == last)
            break;
        const char *k = q;
        while (q < last && *q != ' ')
            q++;
        size_t nk = (size_t)(q - k);
        if (nk > SS_KEY_MAX_LENGTH || p->nkeys == SW_MC_KEYS_MAX) {
            /* The kernel's listener answers CLIENT_ERROR or serves long lines. */
            p->mc_cmd = SW_MC_OTHER;
            lc->ctr[SW_C_mc_other]++;
            return;
        }
        p->keys[p->nkeys] = k;
        p->nkey[p->nkeys] = (uint8_t)nk;
        p->nkeys++;
        if (!get && !gets)
            break;
    }
    if (p->nkeys == 0) {
        p->mc_cmd = SW_MC_OTHER; /* the kernel answers the error */
        lc->ctr[SW_C_mc_other]++;
        return;
    }
    p->mc_cmd = get ? SW_MC_GET : gets ? SW_MC_GETS : SW_MC_WRITE;
}

void sw_mc_prefetch(struct ss_switch *sw, struct sw_lcore *lc, struct sw_pkt *p)
{
    if (!p->udp || p->dport != sw->s.udp_port)
        return;
    sw_mc_parse(lc, p);
    if ((p->mc_cmd != SW_MC_GET && p->mc_cmd != SW_MC_GETS) || p->nkeys != 1)
        return;
    p->khash = ss_hash64(p->keys[0], p->nkey[0]);
    if (lc->rc && p->mc_cmd == SW_MC_GET) {
        const struct sw_rc_entry *set = sw_rc_set(lc, p->khash);
        rte_prefetch0(&set[0]);
        rte_prefetch0(&set[1]);
    }
    ss_store_prefetch(lc->st.store, p->khash);
}
