/*
 * ss_sw_flow.c - flow rules and chains of functions.
 *
 * A rule matches on IP protocol, destination port and source prefix; the
 * first rule that matches gives the chain. Each function of the chain
 * writes its verdict into the packet's metadata: next (run the next
 * function), drop, kernel, out (the network port) or done (the function
 * queued what it sends itself). A chain that runs out, or a packet no rule
 * matches, goes to the kernel, so the appliance's address keeps answering
 * whatever the rules leave alone. Counted per rule (matches) and per
 * function and verdict.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <rte_cycles.h>

#include "common/ss_hash.h"
#include "ss_sw_internal.h"

int sw_rules_install(struct ss_switch *sw, const struct ss_switch_settings *s, char *err,
                     size_t errlen)
{
    if (s->nrules > SS_SW_RULES_MAX) {
        snprintf(err, errlen, "dataplane.dpdk.rules: at most %d rules", SS_SW_RULES_MAX);
        return -EINVAL;
    }
    for (uint32_t i = 0; i < s->nrules; i++) {
        const struct ss_sw_rule *r = &s->rules[i];
        struct sw_rule *d = &sw->rules[i];
        if (r->nchain == 0 || r->nchain > SS_SW_CHAIN_MAX || r->src_prefix_len > 32) {
            snprintf(err, errlen, "dataplane.dpdk.rules[%u]: a chain of 1 to %d functions "
                     "and a prefix length of at most 32", i, SS_SW_CHAIN_MAX);
            return -EINVAL;
        }
        snprintf(d->name, sizeof(d->name), "%s", r->name ? r->name : "");
        d->protocol = r->protocol;
        d->dst_port = r->dst_port;
        d->src_mask = r->src_prefix_len ? ~0u << (32 - r->src_prefix_len) : 0;
        d->src_addr = r->src_addr & d->src_mask;
        for (uint32_t k = 0; k < r->nchain; k++) {
            if (r->chain[k] >= SS_SW_FN__COUNT) {
                snprintf(err, errlen, "dataplane.dpdk.rules[%u].chain[%u]: unknown function",
                         i, k);
                return -EINVAL;
            }
            d->chain[k] = r->chain[k];
        }
        d->nchain = r->nchain;
    }
    sw->nrules = s->nrules;
    return 0;
}

static inline bool rule_matches(const struct sw_rule *r, const struct sw_pkt *p)
{
    return (r->protocol == 0 || r->protocol == p->proto) &&
           (r->dst_port == 0 || r->dst_port == p->dport) &&
           (p->src & r->src_mask) == r->src_addr;
}

/* rate-limit: one token per packet, rate_limit_pps per second per source. */
static enum ss_sw_verdict fn_rate_limit(struct ss_switch *sw, struct sw_lcore *lc,
                                        const struct sw_pkt *p)
{
    uint64_t rate = sw->s.rate_limit_pps, burst = sw->s.rate_limit_burst;
    if (rate == 0)
        return SS_SW_V_NEXT;
    struct sw_rl_slot *s = &lc->rl[ss_hash64(&p->src, sizeof(p->src)) & (SW_RL_SLOTS - 1)];
    uint64_t now = rte_get_tsc_cycles();
    uint64_t hz = rte_get_tsc_hz();
    if (s->addr != p->src || s->last_ns == 0) {
        /* A colliding source takes the slot over with a full bucket: the
         * limit is per slot, approximately per source. */
        s->addr = p->src;
        s->tokens_milli = (uint32_t)(burst * 1000);
        s->last_ns = now;
    } else {
        uint64_t add = (now - s->last_ns) * rate * 1000 / hz;
        if (add) {
            uint64_t t = s->tokens_milli + add;
            s->tokens_milli = (uint32_t)(t > burst * 1000 ? burst * 1000 : t);
            s->last_ns = now;
        }
    }
    if (s->tokens_milli < 1000) {
        lc->ctr[SW_C_rate_limited]++;
        return SS_SW_V_DROP;
    }
    s->tokens_milli -= 1000;
    return SS_SW_V_NEXT;
}

static enum ss_sw_verdict run_fn(struct ss_switch *sw, struct sw_lcore *lc, struct sw_pkt *p,
                                 uint32_t fn)
{
    switch (fn) {
    case SS_SW_FN_MEMCACHED_CACHE:
        return sw_fn_mc_cache(sw, lc, p);
    case SS_SW_FN_MEMCACHED_ROUTE:
        return sw_fn_mc_route(sw, lc, p);
    case SS_SW_FN_RATE_LIMIT:
        return fn_rate_limit(sw, lc, p);
    case SS_SW_FN_COUNT:
        return SS_SW_V_NEXT; /* its per-function counter is the count */
    case SS_SW_FN_TO_KERNEL:
        return SS_SW_V_KERNEL;
    default:
        return SS_SW_V_DROP;
    }
}

/* Pick p's rule and run its chain; p->verdict gets the outcome. */
void sw_flow_run(struct ss_switch *sw, struct sw_lcore *lc, struct sw_pkt *p)
{
    for (uint32_t i = 0; i < sw->nrules; i++) {
        const struct sw_rule *r = &sw->rules[i];
        if (!rule_matches(r, p))
            continue;
        lc->rule_hits[i]++;
        for (uint32_t k = 0; k < r->nchain; k++) {
            enum ss_sw_verdict v = run_fn(sw, lc, p, r->chain[k]);
            lc->fn_verdicts[r->chain[k]][v]++;
            if (v != SS_SW_V_NEXT) {
                p->verdict = (uint8_t)v;
                return;
            }
        }
        break;
    }
    p->verdict = SS_SW_V_KERNEL;
}
