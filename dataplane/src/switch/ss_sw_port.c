/*
 * ss_sw_port.c - switch mode's lifecycle: EAL, the two ports (the network
 * and the exception path), the lcore loop, neighbours and counters.
 *
 * Lcore loop, per turn: receive a burst on the network port, parse and run
 * each frame's chain, send what the verdicts say (replies and forwards out
 * the port, the rest to the kernel through the tap); then move whatever the
 * kernel sent on the tap out the port. The thread is one Python lends
 * (registered with EAL as a non-EAL lcore); it polls, and naps briefly once
 * both ports have been idle for a while, because the machines this runs on
 * in tests share their cores.
 */
#define _GNU_SOURCE /* pthread_setname_np */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>

#include "common/ss_clock.h"
#include "ss_dataplane.h"
#include "ss_sw_internal.h"

#define SW_RX_DESC 1024
#define SW_TX_DESC 1024
#define SW_IDLE_SPINS 2048   /* empty polls before napping */
#define SW_IDLE_NAP_NS 50000 /* 50 us */

static atomic_int eal_state; /* 0 = not yet, 1 = done, -errno = failed */

int ss_switch_available(void)
{
    return 1;
}

int ss_switch_eal_init(int argc, char **argv, char *err, size_t errlen)
{
    int st = atomic_load(&eal_state);
    if (st == 1)
        return 0;
    if (st < 0) {
        snprintf(err, errlen, "DPDK EAL already failed to initialise in this process");
        return st;
    }
    /* rte_eal_init reorders argv; it gets a copy. */
    char **copy = calloc((size_t)argc + 1, sizeof(*copy));
    if (!copy)
        return -ENOMEM;
    memcpy(copy, argv, (size_t)argc * sizeof(*copy));
    int rc = rte_eal_init(argc, copy);
    if (rc < 0) {
        int e = rte_errno ? rte_errno : EINVAL;
        snprintf(err, errlen, "DPDK EAL initialisation failed (%s); check dataplane.dpdk "
                 "(memory, no_huge, vdevs, pci_allow) and the EAL messages above",
                 rte_strerror(e));
        atomic_store(&eal_state, -e);
        return -e;
    }
    atomic_store(&eal_state, 1);
    return 0; /* copy stays: EAL may keep pointers into it */
}

int ss_switch_eal_ready(void)
{
    return atomic_load(&eal_state) == 1;
}

static int port_setup(uint16_t port, uint16_t nq, struct rte_mempool *pool, bool promisc,
                      const char *what, char *err, size_t errlen)
{
    struct rte_eth_conf conf;
    memset(&conf, 0, sizeof(conf));
    int rc = rte_eth_dev_configure(port, nq, nq, &conf);
    for (uint16_t q = 0; rc == 0 && q < nq; q++) {
        rc = rte_eth_rx_queue_setup(port, q, SW_RX_DESC, rte_eth_dev_socket_id(port), NULL,
                                    pool);
        if (rc == 0)
            rc = rte_eth_tx_queue_setup(port, q, SW_TX_DESC, rte_eth_dev_socket_id(port), NULL);
    }
    if (rc == 0)
        rc = rte_eth_dev_start(port);
    if (rc == 0 && promisc)
        rc = rte_eth_promiscuous_enable(port);
    if (rc < 0) {
        snprintf(err, errlen, "%s port: setup failed (%s); does the device support %u "
                 "queue pair(s) (dataplane.dpdk.lcores)?", what, rte_strerror(-rc), nq);
        return rc;
    }
    return 0;
}

struct ss_switch *ss_switch_create(struct ss_dataplane *dp, const struct ss_switch_settings *s,
                                   char *err, size_t errlen)
{
    if (atomic_load(&eal_state) != 1) {
        snprintf(err, errlen, "DPDK EAL is not initialised (ss_switch_eal_init first)");
        return NULL;
    }
    if (!dp || !s || !s->port || s->lcores < 1 || s->lcores > 16 ||
        s->rewrite > SS_SW_REWRITE_L2 || s->udp_port == 0 || s->udp_port > 65535) {
        snprintf(err, errlen, "switch settings: a port name, 1 to 16 lcores, a rewrite mode "
                 "and a UDP port are required");
        return NULL;
    }
    struct ss_switch *sw = calloc(1, sizeof(*sw));
    if (!sw)
        goto nomem;
    sw->dp = dp;
    sw->s = *s;
    sw->s.rules = NULL;
    sw->s.service_mac = NULL;
    sw->service_be = rte_cpu_to_be_32(s->service_addr);
    if (sw_rules_install(sw, s, err, errlen) < 0)
        goto fail;
    if (rte_eth_dev_get_port_by_name(s->port, &sw->port_id) != 0) {
        snprintf(err, errlen, "dataplane.dpdk.port: no DPDK port named %s (name it in "
                 "dataplane.dpdk.vdevs, or allow its PCI address)", s->port);
        goto fail;
    }
    if (s->exception_port) {
        if (rte_eth_dev_get_port_by_name(s->exception_port, &sw->tap_id) != 0) {
            snprintf(err, errlen, "dataplane.dpdk.exception: no DPDK port named %s",
                     s->exception_port);
            goto fail;
        }
        sw->has_tap = true;
    }
    rte_eth_macaddr_get(sw->port_id, &sw->mac);
    struct rte_ether_addr port_mac = sw->mac;
    if (s->service_mac)
        memcpy(sw->mac.addr_bytes, s->service_mac, 6);
    uint32_t nmbufs = s->mbufs ? s->mbufs : 8191;
    char name[RTE_MEMPOOL_NAMESIZE];
    snprintf(name, sizeof(name), "ss_sw_%p", (void *)sw);
    sw->pool = rte_pktmbuf_pool_create(name, nmbufs, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
                                       (int)rte_socket_id());
    if (!sw->pool) {
        snprintf(err, errlen, "cannot allocate %u packet buffers (%s); raise "
                 "dataplane.dpdk.memory", nmbufs, rte_strerror(rte_errno));
        goto fail;
    }
    sw->lcores = rte_zmalloc("ss_sw_lcores", sizeof(*sw->lcores) * s->lcores, 64);
    if (!sw->lcores)
        goto nomem;
    for (uint32_t i = 0; i < s->lcores; i++) {
        sw->lcores[i].id = (int)i;
        sw->lcores[i].rl = rte_zmalloc("ss_sw_rl", sizeof(struct sw_rl_slot) * SW_RL_SLOTS, 64);
        if (!sw->lcores[i].rl || sw_rc_init(&sw->lcores[i], s->reply_cache_bytes) < 0)
            goto nomem;
    }
    bool promisc = !rte_is_same_ether_addr(&port_mac, &sw->mac);
    if (port_setup(sw->port_id, (uint16_t)s->lcores, sw->pool, promisc, "network", err,
                   errlen) < 0)
        goto fail;
    sw->ports_started = true;
    if (sw->has_tap &&
        port_setup(sw->tap_id, (uint16_t)s->lcores, sw->pool, false, "exception", err,
                   errlen) < 0)
        goto fail;
    return sw;

nomem:
    snprintf(err, errlen, "switch: out of memory; raise dataplane.dpdk.memory");
fail:
    ss_switch_destroy(sw);
    return NULL;
}

int ss_switch_mac(struct ss_switch *sw, uint8_t *mac_out)
{
    if (!sw || !mac_out)
        return -EINVAL;
    memcpy(mac_out, sw->mac.addr_bytes, 6);
    return 0;
}

void sw_tx_port(struct ss_switch *sw, struct sw_lcore *lc, struct rte_mbuf *m)
{
    if (lc->nb_tx_port == RTE_DIM(lc->tx_port)) {
        uint16_t nb_tx = rte_eth_tx_burst(sw->port_id, (uint16_t)lc->id, lc->tx_port,
                                          lc->nb_tx_port);
        lc->ctr[SW_C_tx_packets] += nb_tx;
        lc->ctr[SW_C_tx_dropped] += lc->nb_tx_port - nb_tx;
        for (uint16_t i = nb_tx; i < lc->nb_tx_port; i++)
            rte_pktmbuf_free(lc->tx_port[i]);
        lc->nb_tx_port = 0;
    }
    lc->tx_port[lc->nb_tx_port++] = m;
}

static void flush(struct ss_switch *sw, struct sw_lcore *lc)
{
    if (lc->nb_tx_port) {
        uint16_t nb_tx = rte_eth_tx_burst(sw->port_id, (uint16_t)lc->id, lc->tx_port,
                                          lc->nb_tx_port);
        lc->ctr[SW_C_tx_packets] += nb_tx;
        lc->ctr[SW_C_tx_dropped] += lc->nb_tx_port - nb_tx;
        for (uint16_t i = nb_tx; i < lc->nb_tx_port; i++)
            rte_pktmbuf_free(lc->tx_port[i]);
        lc->nb_tx_port = 0;
    }
    if (lc->nb_tx_kernel) {
        uint16_t nb_tx = sw->has_tap ? rte_eth_tx_burst(sw->tap_id, (uint16_t)lc->id,
                                                        lc->tx_kernel, lc->nb_tx_kernel)
                                     : 0;
        lc->ctr[SW_C_to_kernel] += nb_tx;
        lc->ctr[SW_C_kernel_dropped] += lc->nb_tx_kernel - nb_tx;
        for (uint16_t i = nb_tx; i < lc->nb_tx_kernel; i++)
            rte_pktmbuf_free(lc->tx_kernel[i]);
        lc->nb_tx_kernel = 0;
    }
}

/*
 * One burst from the network port, in passes: the first checks every
 * frame's headers and, for gets of one key, hashes the key and prefetches
 * its stripe and filter block; the second prefetches the DRAM buckets (their
 * address is in the stripe); the last runs the chains, by which time those
 * cache lines are on their way. Returns the frames received.
 */
static uint16_t sw_rx_network(struct ss_switch *sw, struct sw_lcore *lc)
{
    struct rte_mbuf *pkts[SW_BURST];
    uint16_t nb_rx = rte_eth_rx_burst(sw->port_id, (uint16_t)lc->id, pkts, SW_BURST);
    lc->ctr[SW_C_rx_packets] += nb_rx;
    for (uint16_t i = 0; i < nb_rx; i++) {
        struct sw_pkt *p = &lc->pkts[i];
        p->m = pkts[i];
        if (i + 1 < nb_rx)
            rte_prefetch0(rte_pktmbuf_mtod(pkts[i + 1], void *));
        p->parse_res = (uint8_t)sw_parse(sw, lc, p);
        if (p->parse_res == SW_PARSE_OK)
            sw_mc_prefetch(sw, lc, p);
    }
    for (uint16_t i = 0; i < nb_rx; i++) {
        struct sw_pkt *p = &lc->pkts[i];
        if (!p->khash)
            continue;
        if (lc->rc && p->mc_cmd == SW_MC_GET)
            p->rc_entry = sw_rc_probe(lc, p->khash);
        if (p->rc_entry) {
            /* Probably a reply cache hit: its payload, not the DRAM bucket. */
            rte_prefetch0((const char *)p->rc_entry + 64);
            rte_prefetch0((const char *)p->rc_entry + 128);
        } else {
            ss_store_prefetch_bucket(lc->st.store, p->khash);
        }
    }
    sw_route_hash_burst(lc, lc->pkts, nb_rx);
    for (uint16_t i = 0; i < nb_rx; i++) {
        struct sw_pkt *p = &lc->pkts[i];
        switch (p->parse_res) {
        case SW_PARSE_OK:
            sw_flow_run(sw, lc, p);
            break;
        case SW_PARSE_KERNEL:
            p->verdict = SS_SW_V_KERNEL;
            break;
        default:
            p->verdict = SS_SW_V_DROP;
            break;
        }
        switch (p->verdict) {
        case SS_SW_V_OUT:
            sw_tx_port(sw, lc, p->m);
            break;
        case SS_SW_V_KERNEL:
            lc->tx_kernel[lc->nb_tx_kernel++] = p->m;
            break;
        case SS_SW_V_DONE:
            break;
        default:
            lc->ctr[SW_C_dropped]++;
            rte_pktmbuf_free(p->m);
            break;
        }
    }
    return nb_rx;
}

/* What the kernel sent on the tap goes out the network port as it is. */
static uint16_t sw_rx_kernel(struct ss_switch *sw, struct sw_lcore *lc)
{
    if (!sw->has_tap)
        return 0;
    struct rte_mbuf *pkts[SW_BURST];
    uint16_t nb_rx = rte_eth_rx_burst(sw->tap_id, (uint16_t)lc->id, pkts, SW_BURST);
    if (!nb_rx)
        return 0;
    uint16_t nb_tx = rte_eth_tx_burst(sw->port_id, (uint16_t)lc->id, pkts, nb_rx);
    lc->ctr[SW_C_from_kernel] += nb_tx;
    lc->ctr[SW_C_tx_dropped] += nb_rx - nb_tx;
    for (uint16_t i = nb_tx; i < nb_rx; i++)
        rte_pktmbuf_free(pkts[i]);
    return nb_rx;
}

int ss_switch_run(struct ss_switch *sw, int lcore)
{
    if (!sw || lcore < 0 || (uint32_t)lcore >= sw->s.lcores)
        return -EINVAL;
    struct sw_lcore *lc = &sw->lcores[lcore];
    if (atomic_exchange(&lc->running, 1))
        return -EBUSY;
    int rc = rte_thread_register();
    if (rc < 0) {
        atomic_store(&lc->running, 0);
        return -(rte_errno ? rte_errno : EINVAL);
    }
    rc = ss_store_thread_init(&lc->st, ss_dataplane_store(sw->dp), &lc->store_ctr);
    if (rc == 0) {
        rc = sw_park_init(sw, lc);
        if (rc < 0)
            ss_store_thread_fini(&lc->st);
    }
    if (rc < 0) {
        rte_thread_unregister();
        atomic_store(&lc->running, 0);
        return rc;
    }
    /* Named for top, perf and the benchmark (bench/switch.py). */
    char tname[16];
    snprintf(tname, sizeof(tname), "ss-lcore-%u", (unsigned)lcore % 100u);
    pthread_setname_np(pthread_self(), tname);
    unsigned idle = 0;
    while (!atomic_load_explicit(&sw->stopping, memory_order_relaxed)) {
        sw_route_adopt(sw, lc);
        lc->now_s = ss_clock_unix_seconds();
        uint16_t n = sw_rx_network(sw, lc);
        flush(sw, lc);
        /* Device reads started by this burst go out; completed ones are
         * answered (their replies leave with the next flush). */
        sw_park_poll(sw, lc);
        n += sw_rx_kernel(sw, lc);
        if (n || lc->nparked) {
            idle = 0;
        } else if (++idle >= SW_IDLE_SPINS) {
            struct timespec ts = {0, SW_IDLE_NAP_NS};
            nanosleep(&ts, NULL);
        }
    }
    sw_park_fini(lc);
    flush(sw, lc);
    ss_store_thread_fini(&lc->st);
    sw_route_free(&lc->route);
    rte_thread_unregister();
    atomic_store(&lc->running, 0);
    return 0;
}

void ss_switch_stop(struct ss_switch *sw)
{
    if (sw)
        atomic_store(&sw->stopping, 1);
}

void ss_switch_destroy(struct ss_switch *sw)
{
    if (!sw)
        return;
    if (sw->ports_started) {
        rte_eth_dev_stop(sw->port_id);
        rte_eth_dev_close(sw->port_id);
    }
    if (sw->has_tap) {
        rte_eth_dev_stop(sw->tap_id);
        rte_eth_dev_close(sw->tap_id);
    }
    if (sw->lcores) {
        for (uint32_t i = 0; i < sw->s.lcores; i++) {
            rte_free(sw->lcores[i].rl);
            sw_rc_free(&sw->lcores[i]);
        }
        rte_free(sw->lcores);
    }
    rte_mempool_free(sw->pool);
    free(sw);
}

int ss_switch_set_neighbour(struct ss_switch *sw, uint32_t addr, const uint8_t *mac)
{
    if (!sw || !addr || !mac)
        return -EINVAL;
    uint64_t v = 0;
    for (int i = 0; i < 6; i++)
        v |= (uint64_t)mac[i] << (8 * i);
    /* Entries are only ever added (control thread only), so a reader that
     * sees an address also sees a MAC (stored first) or 0 (unknown). */
    for (int i = 0; i < SW_NEIGH_MAX; i++) {
        uint32_t a = atomic_load(&sw->neigh[i].addr);
        if (a == addr || a == 0) {
            atomic_store(&sw->neigh[i].mac, v);
            if (a == 0)
                atomic_store(&sw->neigh[i].addr, addr);
            return 0;
        }
    }
    return -ENOSPC;
}

uint64_t sw_neigh_mac(struct ss_switch *sw, uint32_t addr)
{
    for (int i = 0; i < SW_NEIGH_MAX; i++) {
        uint32_t a = atomic_load_explicit(&sw->neigh[i].addr, memory_order_acquire);
        if (a == addr)
            return atomic_load_explicit(&sw->neigh[i].mac, memory_order_relaxed);
        if (a == 0)
            break;
    }
    return 0;
}

/* ---- counters: switch, then per port, per rule, per function ---- */

static const char *const sw_ctr_names[] = {
#define SW_CTR_NAME(n) #n,
    SS_SW_COUNTERS(SW_CTR_NAME)
#undef SW_CTR_NAME
};
static const char *const fn_names[] = {
#define SW_FN_NAME(e, s) s,
    SS_SW_FUNCTIONS(SW_FN_NAME)
#undef SW_FN_NAME
};
static const char *const verdict_names[] = {
#define SW_V_NAME(e, s) s,
    SS_SW_VERDICTS(SW_V_NAME)
#undef SW_V_NAME
};
static const char *const port_fields[] = {"rx_packets", "tx_packets", "rx_bytes", "tx_bytes",
                                          "rx_missed", "rx_errors", "tx_errors"};
#define SW_NPORT_FIELDS ((int)RTE_DIM(port_fields))

int ss_switch_counter_count(struct ss_switch *sw)
{
    if (!sw)
        return -EINVAL;
    return SW_C__COUNT + 2 * SW_NPORT_FIELDS + (int)sw->nrules + SS_SW_FN__COUNT * SS_SW_V__COUNT;
}

int ss_switch_counter_name(struct ss_switch *sw, int i, char *out, size_t outlen)
{
    if (!sw || i < 0 || i >= ss_switch_counter_count(sw))
        return -EINVAL;
    if (i < SW_C__COUNT)
        return snprintf(out, outlen, "%s", sw_ctr_names[i]) < 0 ? -EINVAL : 0;
    i -= SW_C__COUNT;
    if (i < 2 * SW_NPORT_FIELDS)
        return snprintf(out, outlen, "port:%s:%s", i < SW_NPORT_FIELDS ? "network" : "kernel",
                        port_fields[i % SW_NPORT_FIELDS]) < 0 ? -EINVAL : 0;
    i -= 2 * SW_NPORT_FIELDS;
    if (i < (int)sw->nrules)
        return snprintf(out, outlen, "rule:%s:packets", sw->rules[i].name) < 0 ? -EINVAL : 0;
    i -= (int)sw->nrules;
    return snprintf(out, outlen, "function:%s:%s", fn_names[i / SS_SW_V__COUNT],
                    verdict_names[i % SS_SW_V__COUNT]) < 0 ? -EINVAL : 0;
}

static void port_stats(uint16_t port, bool present, uint64_t *out)
{
    struct rte_eth_stats st;
    memset(&st, 0, sizeof(st));
    if (present)
        rte_eth_stats_get(port, &st);
    uint64_t v[] = {st.ipackets, st.opackets, st.ibytes, st.obytes, st.imissed, st.ierrors,
                    st.oerrors};
    memcpy(out, v, sizeof(v));
}

/* Relaxed reads of counters other threads write: each is one aligned word. */
int ss_switch_read_counters(struct ss_switch *sw, uint64_t *out, int n)
{
    int total = ss_switch_counter_count(sw);
    if (total < 0 || !out || n < total)
        return -EINVAL;
    memset(out, 0, sizeof(*out) * (size_t)total);
    for (uint32_t l = 0; l < sw->s.lcores; l++) {
        const volatile struct sw_lcore *lc = &sw->lcores[l];
        uint64_t *o = out;
        for (int i = 0; i < SW_C__COUNT; i++)
            o[i] += lc->ctr[i];
        o += SW_C__COUNT + 2 * SW_NPORT_FIELDS;
        for (uint32_t i = 0; i < sw->nrules; i++)
            o[i] += lc->rule_hits[i];
        o += sw->nrules;
        for (int f = 0; f < SS_SW_FN__COUNT; f++)
            for (int v = 0; v < SS_SW_V__COUNT; v++)
                o[f * SS_SW_V__COUNT + v] += lc->fn_verdicts[f][v];
    }
    port_stats(sw->port_id, sw->ports_started, out + SW_C__COUNT);
    port_stats(sw->tap_id, sw->has_tap && sw->ports_started,
               out + SW_C__COUNT + SW_NPORT_FIELDS);
    return total;
}
