/*
 * ss_px_routing.h - proxy mode's routing table as other planes may see it.
 *
 * The table itself (struct px_routing, ss_px_internal.h) is the proxy
 * plane's: it is swapped and freed under the data plane's control lock, so no
 * other plane may hold a pointer into it. A plane that routes keys on its own
 * fast path (switch mode, ss_sw_route.c) instead watches the generation and,
 * when it changes, takes a private copy of what it needs (the primary ring,
 * the back ends' IPv4 addresses, ports, policies and health); between
 * generations it refreshes only the health. Both calls lock inside the proxy
 * plane, and neither is meant for a per-packet path: the generation is one
 * atomic load, the copies take the control lock.
 *
 * The copies are in ss_px_view.c; the write epochs in ss_px_routing.c.
 */
#ifndef SS_PX_ROUTING_H
#define SS_PX_ROUTING_H

#include <stddef.h>
#include <stdint.h>

#include "ss_proxy.h"

struct ss_dataplane;

/*
 * A caller's copy of the current table's primary ring and back ends. Every
 * array is owned by the copy (ss_px_route_copy_free releases them); ring.name
 * is NULL. Index i of be_* and up is back end i, the number ring lookups
 * return.
 */
struct ss_px_route_copy {
    uint64_t generation;          /* of the table copied */
    uint32_t hash;                /* enum ss_hash_kind, for keys */
    struct ss_ring_settings ring; /* ring 0, with its slice index when it has one */
    uint32_t nbackends;
    uint32_t *be_addr;            /* IPv4, host order; 0 = not an IPv4 address */
    uint16_t *be_port;
    uint8_t *policy;              /* enum ss_failure_policy, for a key whose owner is down */
    uint8_t *up;                  /* 1 = usable (UP), as proxy mode routes */
};

/* The routing table's generation: it changes whenever a table is installed
 * or removed. 0 before the first table, and when dp has no proxy state. */
uint64_t ss_px_routing_generation(struct ss_dataplane *dp);

/*
 * Copy the current table into *out (zeroed first) under the control lock.
 * Returns 0; -ENOENT when no table with a ring is installed (*out stays
 * empty, its generation set); -ENOMEM (nothing kept).
 */
int ss_px_route_copy(struct ss_dataplane *dp, struct ss_px_route_copy *out);

/*
 * Refresh copy->up from the live table's back-end states, under the control
 * lock. Returns 0, or -ESTALE when the table is no longer the one copied
 * (copy left as it was; take a new copy).
 */
int ss_px_route_refresh_health(struct ss_dataplane *dp, struct ss_px_route_copy *copy);

/* Free a copy's arrays and zero it (a zeroed copy may be freed again). */
void ss_px_route_copy_free(struct ss_px_route_copy *copy);

/*
 * Write epochs guard fills against writes: a fill fetched from a back end is
 * kept only if its key's epoch has not moved since it was sent. A plane that
 * lets a write past the socket path (the switch) bumps the key's epoch.
 */
uint32_t ss_px_epoch_slot(const char *key, size_t nkey);
/* The same slot from the key's ss_hash64, for a caller that has it already
 * (it also locks the key's stripe with it). */
uint32_t ss_px_epoch_slot_hash(uint64_t hash);
void ss_px_epoch_bump(struct ss_dataplane *dp, uint32_t slot);

#endif
