/*
 * ss_sw_mc.c - memcached-cache: answer a UDP get/gets from the store when
 * every key hits, and drop the local copy of a key a write passes through.
 *
 * The reply is written into the request's own mbuf (datagram 0) and into
 * freshly allocated ones for datagrams 1..n-1, each at most 1400 bytes with
 * memcached's frame header; the VALUE lines come from ss_mc_value_header,
 * the same formatting the socket path uses. The request's command line is
 * copied aside first, since the reply overwrites it; a miss (in proxy mode)
 * puts it back and passes the packet on to memcached-route.
 *
 * A one-key get whose value is on the device does not stall the lcore: the
 * read is started through the lcore's io_uring and the packet is parked
 * with its parse state (dpdk.park at most; beyond that the packet goes to
 * the kernel path, counted in mc_park_full, so a device read never stalls
 * the lcore). The lcore goes on polling its port; when
 * the read completes the get runs again with the read in hand and the reply
 * is built into the parked mbuf and sent, or, if it no longer hits, the
 * packet goes to the kernel path, which answers it as a socket request.
 */
#include <errno.h>
#include <string.h>

#include <rte_byteorder.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>

#include "common/ss_hash.h"
#include "mc/ss_mc.h"
#include "ss_sw_csum.h"
#include "ss_sw_internal.h"

struct sw_writer {
    struct sw_lcore *lc;
    struct rte_mempool *pool;
    uint32_t n;      /* datagrams started */
    char *pos;       /* next byte of the current datagram's payload */
    uint32_t room;   /* bytes left in it */
    bool failed;     /* too many datagrams, or no mbuf */
    bool too_large;
};

static inline char *payload_of(struct rte_mbuf *m)
{
    return rte_pktmbuf_mtod_offset(m, char *, SW_L2L4 + SW_MC_HDR);
}

static bool writer_next(struct sw_writer *w)
{
    struct sw_lcore *lc = w->lc;
    if (w->n == SW_REPLY_DATAGRAMS_MAX) {
        w->failed = w->too_large = true;
        return false;
    }
    struct rte_mbuf *m = rte_pktmbuf_alloc(w->pool);
    if (!m) {
        lc->ctr[SW_C_alloc_failed]++;
        w->failed = true;
        return false;
    }
    m->data_len = m->pkt_len = SW_L2L4 + SW_MC_HDR;
    lc->reply[w->n++] = m;
    w->pos = payload_of(m);
    w->room = SW_MC_PAYLOAD;
    return true;
}

static void writer_put(struct sw_writer *w, const void *data, size_t n)
{
    const char *s = data;
    while (n && !w->failed) {
        if (w->room == 0 && !writer_next(w))
            return;
        size_t k = n < w->room ? n : w->room;
        memcpy(w->pos, s, k);
        w->pos += k;
        w->room -= (uint32_t)k;
        struct rte_mbuf *m = w->lc->reply[w->n - 1];
        m->data_len = (uint16_t)(m->data_len + k);
        m->pkt_len = m->data_len;
        s += k;
        n -= k;
    }
}

/* Fill datagram i's Ethernet/IPv4/UDP/frame headers from the request's. */
static void finish_datagram(struct rte_mbuf *m, const struct rte_ether_hdr *eth,
                            const struct rte_ipv4_hdr *ip, const struct rte_udp_hdr *udp,
                            uint16_t reqid, uint16_t seq, uint16_t total)
{
    struct rte_ether_hdr *e = rte_pktmbuf_mtod(m, struct rte_ether_hdr *);
    struct rte_ipv4_hdr *i = (struct rte_ipv4_hdr *)(e + 1);
    struct rte_udp_hdr *u = (struct rte_udp_hdr *)(i + 1);
    uint8_t *h = (uint8_t *)(u + 1);
    uint16_t l4 = (uint16_t)(m->data_len - sizeof(*e) - sizeof(*i));

    rte_ether_addr_copy(&eth->src_addr, &e->dst_addr);
    rte_ether_addr_copy(&eth->dst_addr, &e->src_addr);
    e->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4);
    *i = (struct rte_ipv4_hdr){
        .version_ihl = RTE_IPV4_VHL_DEF,
        .total_length = rte_cpu_to_be_16((uint16_t)(l4 + sizeof(*i))),
        .fragment_offset = rte_cpu_to_be_16(RTE_IPV4_HDR_DF_FLAG),
        .time_to_live = 64,
        .next_proto_id = IPPROTO_UDP,
        .src_addr = ip->dst_addr,
        .dst_addr = ip->src_addr,
    };
    i->hdr_checksum = sw_ipv4_cksum(i);
    u->src_port = udp->dst_port;
    u->dst_port = udp->src_port;
    u->dgram_len = rte_cpu_to_be_16(l4);
    h[0] = (uint8_t)(reqid >> 8);
    h[1] = (uint8_t)reqid;
    h[2] = (uint8_t)(seq >> 8);
    h[3] = (uint8_t)seq;
    h[4] = (uint8_t)(total >> 8);
    h[5] = (uint8_t)total;
    h[6] = h[7] = 0;
    u->dgram_cksum = 0;
    u->dgram_cksum = sw_udp_cksum(i, u);
    m->l2_len = sizeof(*e);
    m->l3_len = sizeof(*i);
}

/* Drop the local copy of a key a write is about to change at its owner. */
static void invalidate(struct ss_switch *sw, struct sw_lcore *lc, const struct sw_pkt *p)
{
    struct ss_dataplane *dp = sw->dp;
    const char *key = p->keys[0];
    size_t nkey = p->nkey[0];
    /* A fill the socket path has in flight for this key must not land. */
    ss_px_epoch_bump(dp, ss_px_epoch_slot(key, nkey));
    ss_store_lock(&lc->st, key, nkey);
    ss_store_forget(&lc->st, key, nkey);
    ss_store_unlock(&lc->st);
    lc->ctr[SW_C_mc_invalidated]++;
}

/*
 * Turn request p into its one-datagram reply in place: the payload (plen
 * bytes) is already written after the frame header. Addresses and ports are
 * swapped and lengths and checksums set; `psum`, when `have_sum`, is the
 * payload's precomputed sum. Both checksums are summed from the fields'
 * values rather than by reading the headers back: a wide load over the
 * narrow stores just made stalls on store forwarding. Swapping addresses or
 * ports does not change a sum.
 */
static void reply_in_place(struct ss_switch *sw, struct sw_pkt *p, size_t plen, bool have_sum,
                           uint64_t psum)
{
    struct rte_mbuf *m = p->m;
    struct rte_ether_hdr *eth = p->eth;
    struct rte_ipv4_hdr *ip = p->ip;
    struct rte_udp_hdr *udp = p->udp;
    uint16_t l4 = (uint16_t)(sizeof(*udp) + SW_MC_HDR + plen);
    uint16_t l4_be = rte_cpu_to_be_16(l4);
    uint16_t tot_be = rte_cpu_to_be_16((uint16_t)(l4 + sizeof(*ip)));
    uint16_t df_be = rte_cpu_to_be_16(RTE_IPV4_HDR_DF_FLAG);
    uint16_t reqid_word;
    memcpy(&reqid_word, udp + 1, 2);
    if (!have_sum)
        psum = sw_csum_add(0, (const char *)(udp + 1) + SW_MC_HDR, plen);
    uint32_t saddr = ip->src_addr, daddr = ip->dst_addr;
    uint16_t sport = udp->src_port, dport = udp->dst_port;
    uint16_t vhl_tos, ttl_proto;
    memcpy(&vhl_tos, ip, 2);
    const uint8_t ttl_proto_bytes[2] = {64, IPPROTO_UDP};
    memcpy(&ttl_proto, ttl_proto_bytes, 2);
    uint64_t addrs = (uint64_t)saddr + daddr;

    uint64_t ipsum = addrs + vhl_tos + tot_be + ip->packet_id + df_be + ttl_proto;
    /* UDP: pseudo-header (addresses, protocol, length), the header (ports,
     * length), the frame header (request id, then 0, 1, 0) and the payload. */
    uint64_t usum = addrs + rte_cpu_to_be_16(IPPROTO_UDP) + l4_be + sport + dport + l4_be +
                    reqid_word + rte_cpu_to_be_16(1) + psum;

    rte_ether_addr_copy(&eth->src_addr, &eth->dst_addr);
    rte_ether_addr_copy(&sw->mac, &eth->src_addr);
    ip->src_addr = daddr;
    ip->dst_addr = saddr;
    ip->total_length = tot_be;
    ip->fragment_offset = df_be;
    ip->time_to_live = 64;
    ip->hdr_checksum = (uint16_t)~sw_csum_fold(ipsum);
    udp->src_port = dport;
    udp->dst_port = sport;
    udp->dgram_len = l4_be;
    udp->dgram_cksum = sw_udp_cksum_of_sum(usum);
    /* Frame header: the request id stays; datagram 0 of 1, reserved 0. */
    static const uint8_t one_of_one[6] = {0, 0, 0, 1, 0, 0};
    memcpy((uint8_t *)(udp + 1) + 2, one_of_one, sizeof(one_of_one));
    m->data_len = m->pkt_len = (uint16_t)(SW_L2L4 + SW_MC_HDR + plen);
}

static void count_one_hit(struct sw_lcore *lc)
{
    lc->ctr[SW_C_mc_keys_hit]++;
    lc->ctr[SW_C_mc_hits]++;
    lc->ctr[SW_C_mc_reply_datagrams]++;
}

struct sw_parked {
    struct sw_parked *next;   /* free list */
    struct ss_switch *sw;
    struct sw_lcore *lc;
    struct sw_pkt p;          /* the packet, its headers and parsed command */
};

static void sw_park(struct ss_switch *sw, struct sw_lcore *lc, struct sw_pkt *p,
                    struct ss_read *rd);

/*
 * A get or gets of one key, the common case, without the general writer:
 * first the lcore's reply cache (get only, no lock); then the store, where
 * the key is looked up before anything is copied, so a miss in proxy mode
 * leaves the packet untouched for memcached-route; a hit whose reply fits
 * one datagram is written straight into the request's mbuf (and kept in the
 * reply cache). Returns DONE, NEXT (a miss with a ring), or SS_SW_V__COUNT:
 * use the general path (standalone misses, replies of more than one datagram).
 */
static enum ss_sw_verdict mc_cache_one(struct ss_switch *sw, struct sw_lcore *lc,
                                       struct sw_pkt *p)
{
    struct rte_mbuf *m = p->m;
    struct ss_store_thread *t = &lc->st;
    const char *key = p->keys[0];
    size_t nkey = p->nkey[0];
    bool with_cas = p->mc_cmd == SW_MC_GETS;
    uint64_t khash = p->khash ? p->khash : ss_hash64(key, nkey);
    size_t room = rte_pktmbuf_tailroom(m) + m->data_len - SW_L2L4 - SW_MC_HDR;
    if (room > SW_MC_PAYLOAD)
        room = SW_MC_PAYLOAD;

    if (lc->rc && !with_cas) {
        /* Probed in the burst's second pass when the key was hashed there. */
        const struct sw_rc_entry *e = p->khash ? p->rc_entry : sw_rc_probe(lc, khash);
        if (e && e->plen <= room && sw_rc_valid(lc, t->store, e, khash, key, nkey)) {
            memcpy(payload_of(m), e->data + e->nkey, e->plen);
            reply_in_place(sw, p, e->plen, true, e->psum);
            count_one_hit(lc);
            lc->ctr[SW_C_mc_reply_cache_hits]++;
            sw_tx_port(sw, lc, m);
            return SS_SW_V_DONE;
        }
    }

    struct ss_item it;
    char hdr[SS_MC_VALUE_HDR_MAX];
    /* Parked when the value must come from the device; with the park full,
     * or no ring, never read the device here (the lcore must not wait). A
     * completion runs with its read in hand and needs neither. */
    unsigned mode = 0;
    if (!t->use_read)
        mode = t->io && lc->nparked < lc->park_max ? SS_FIND_ASYNC : SS_FIND_NO_WAIT;
    ss_store_lock_hash(t, khash);
    int rc = ss_store_find(t, key, nkey, &it, SS_FIND_VALUE | mode);
    if (rc == -EINPROGRESS) {
        ss_store_unlock(t);
        sw_park(sw, lc, p, t->started);
        return SS_SW_V_DONE; /* the lcore's until the read completes */
    }
    if (rc == -EAGAIN) {
        ss_store_unlock(t);
        lc->ctr[SW_C_mc_park_full]++;
        return SS_SW_V_KERNEL; /* the socket path answers it, reading as it may */
    }
    if (rc != 0 || !ss_mc_local_answers(it.bits, with_cas)) {
        ss_store_unlock(t);
        return lc->route.active ? SS_SW_V_NEXT : SS_SW_V__COUNT;
    }
    /* The VALUE line names the key, so it is formatted before the reply
     * overwrites the request's bytes. */
    size_t hlen = ss_mc_value_header(hdr, key, nkey, it.flags, t->value_len,
                                     with_cas ? &it.cas : NULL);
    size_t plen = hlen + t->value_len + sizeof("\r\nEND\r\n") - 1;
    if (plen > room) {
        ss_store_unlock(t);
        return SS_SW_V__COUNT;
    }
    char *pos = payload_of(m);
    memcpy(pos, hdr, hlen);
    memcpy(pos + hlen, t->value, t->value_len);
    memcpy(pos + hlen + t->value_len, "\r\nEND\r\n", 7);
    if (lc->rc && !with_cas)
        /* The request's key is overwritten by now; the VALUE line has it. */
        sw_rc_fill(lc, t, hdr + sizeof("VALUE ") - 1, nkey, it.exptime, pos, plen);
    ss_store_unlock(t);
    reply_in_place(sw, p, plen, false, 0);
    count_one_hit(lc);
    sw_tx_port(sw, lc, m);
    return SS_SW_V_DONE;
}

/* A parked get's read completed: answer it from the read, or hand it on. */
static void park_done(void *arg, struct ss_read *rd)
{
    struct sw_parked *pk = arg;
    struct sw_lcore *lc = pk->lc;
    struct ss_store_thread *t = &lc->st;
    struct rte_mbuf *m = pk->p.m;
    enum ss_sw_verdict v = SS_SW_V_DROP;
    if (!atomic_load_explicit(&pk->sw->stopping, memory_order_relaxed)) {
        ss_store_read_use(t, rd);
        v = mc_cache_one(pk->sw, lc, &pk->p);
        ss_store_read_use(t, NULL);
    }
    ss_store_read_release(t, rd);
    if (v != SS_SW_V_DONE) {
        /* No longer a hit of one datagram (or stopping): the kernel path
         * answers it as a socket request would be answered. */
        if (v != SS_SW_V_DROP && lc->nb_tx_kernel < SW_BURST) {
            lc->tx_kernel[lc->nb_tx_kernel++] = m;
        } else {
            lc->ctr[SW_C_kernel_dropped]++;
            rte_pktmbuf_free(m);
        }
    }
    pk->next = lc->park_free;
    lc->park_free = pk;
    lc->nparked--;
}

static void sw_park(struct ss_switch *sw, struct sw_lcore *lc, struct sw_pkt *p,
                    struct ss_read *rd)
{
    struct sw_parked *pk = lc->park_free; /* one per ring entry: never NULL here */
    lc->park_free = pk->next;
    lc->nparked++;
    pk->sw = sw;
    pk->lc = lc;
    pk->p = *p;
    pk->p.rc_entry = NULL; /* probed for this burst only */
    lc->ctr[SW_C_mc_parked]++;
    ss_store_read_on_done(rd, park_done, pk);
}

int sw_park_init(struct ss_switch *sw, struct sw_lcore *lc)
{
    (void)sw;
    lc->park_max = sw->s.park_max ? sw->s.park_max : SS_SW_PARK_DEFAULT;
    lc->parked = rte_zmalloc("ss_sw_park", lc->park_max * sizeof(*lc->parked), 0);
    if (!lc->parked)
        return -ENOMEM;
    for (uint32_t i = 0; i < lc->park_max; i++) {
        lc->parked[i].next = lc->park_free;
        lc->park_free = &lc->parked[i];
    }
    /* No ring (an SPDK device, or the kernel refuses io_uring): device hits
     * are read at once, as before. */
    (void)ss_store_io_open(&lc->st, lc->park_max);
    return 0;
}

void sw_park_poll(struct ss_switch *sw, struct sw_lcore *lc)
{
    (void)sw;
    if (!lc->st.io)
        return;
    ss_store_io_submit(&lc->st);
    if (lc->nparked)
        ss_store_io_poll(&lc->st, SW_PARK_REAP);
}

void sw_park_fini(struct sw_lcore *lc)
{
    ss_store_io_close(&lc->st); /* waits for reads in flight; park_done frees them */
    rte_free(lc->parked);
    lc->parked = lc->park_free = NULL;
    lc->nparked = 0;
}

/*
 * memcached-cache. Returns DONE (answered; the reply is queued), NEXT (a
 * miss in proxy mode, a write, not memcached), KERNEL or DROP.
 */
enum ss_sw_verdict sw_fn_mc_cache(struct ss_switch *sw, struct sw_lcore *lc, struct sw_pkt *p)
{
    if (!p->udp)
        return SS_SW_V_NEXT;
    sw_mc_parse(lc, p);
    switch (p->mc_cmd) {
    case SW_MC_BAD:
        return SS_SW_V_DROP;
    case SW_MC_OTHER:
        return SS_SW_V_KERNEL;
    case SW_MC_WRITE:
        if (lc->route.active)
            invalidate(sw, lc, p);
        /* Standalone: the kernel's listener applies the write itself. */
        return lc->route.active ? SS_SW_V_NEXT : SS_SW_V_KERNEL;
    case SW_MC_GET:
    case SW_MC_GETS:
        break;
    default:
        return SS_SW_V_NEXT;
    }

    if (p->nkeys == 1) {
        enum ss_sw_verdict v = mc_cache_one(sw, lc, p);
        if (v != SS_SW_V__COUNT)
            return v;
    }
    struct rte_mbuf *m = p->m;
    if (rte_pktmbuf_tailroom(m) + m->data_len < SW_L2L4 + SW_MC_DATAGRAM)
        return SS_SW_V_KERNEL;
    /* Keep the request: keys point into the bytes the reply overwrites. */
    const struct rte_ether_hdr eth = *p->eth;
    const struct rte_ipv4_hdr ip = *p->ip;
    const struct rte_udp_hdr udp = *p->udp;
    uint16_t req_len = m->data_len;
    memcpy(lc->scratch, p->payload, p->plen);
    const char *keys[SW_MC_KEYS_MAX];
    for (uint32_t k = 0; k < p->nkeys; k++)
        keys[k] = lc->scratch + (p->keys[k] - p->payload);

    struct sw_writer w = {.lc = lc, .pool = sw->pool, .n = 1, .room = SW_MC_PAYLOAD};
    lc->reply[0] = m;
    m->data_len = m->pkt_len = SW_L2L4 + SW_MC_HDR;
    w.pos = payload_of(m);
    bool with_cas = p->mc_cmd == SW_MC_GETS;
    bool miss = false;
    uint32_t hits = 0;
    struct ss_store_thread *t = &lc->st;

    for (uint32_t k = 0; k < p->nkeys && !w.failed; k++) {
        struct ss_item it;
        ss_store_lock(t, keys[k], p->nkey[k]);
        int rc = ss_store_find(t, keys[k], p->nkey[k], &it, SS_FIND_VALUE);
        /* gets needs the owner's cas: a copy a set left has none. */
        if (rc == 0 && ss_mc_local_answers(it.bits, with_cas)) {
            char hdr[SS_MC_VALUE_HDR_MAX];
            size_t len = ss_mc_value_header(hdr, keys[k], p->nkey[k], it.flags, t->value_len,
                                            with_cas ? &it.cas : NULL);
            writer_put(&w, hdr, len);
            writer_put(&w, t->value, t->value_len);
            writer_put(&w, "\r\n", 2);
            hits++;
        } else {
            miss = true;
        }
        ss_store_unlock(t);
        if (miss && lc->route.active)
            break;
    }
    if (!w.failed && !(miss && lc->route.active))
        writer_put(&w, "END\r\n", 5);
    if (w.failed || (miss && lc->route.active)) {
        for (uint32_t i = 1; i < w.n; i++)
            rte_pktmbuf_free(lc->reply[i]);
        memcpy((char *)(p->udp + 1), lc->scratch, p->plen);
        m->data_len = m->pkt_len = req_len;
        if (w.too_large) {
            lc->ctr[SW_C_mc_reply_too_large]++;
            return SS_SW_V_KERNEL;
        }
        return w.failed ? SS_SW_V_DROP : SS_SW_V_NEXT;
    }
    if (miss)
        lc->ctr[SW_C_mc_no_route]++;
    lc->ctr[SW_C_mc_keys_hit] += hits;
    lc->ctr[SW_C_mc_keys_missed] += p->nkeys - hits;
    lc->ctr[SW_C_mc_hits]++;
    lc->ctr[SW_C_mc_reply_datagrams] += w.n;
    for (uint32_t i = 0; i < w.n; i++) {
        finish_datagram(lc->reply[i], &eth, &ip, &udp, p->reqid, (uint16_t)i, (uint16_t)w.n);
        sw_tx_port(sw, lc, lc->reply[i]);
    }
    return SS_SW_V_DONE;
}
