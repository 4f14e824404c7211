/*
 * ss_mc.h - the memcached protocol (text and meta commands), entry point.
 */
#ifndef SS_MC_H
#define SS_MC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "server/ss_conn.h"
#include "mc/ss_mc_req.h"
#include "ss_store.h"

enum ss_mc_result {
    SS_MC_OK = 0,    /* processed every complete command; wait for more input */
    SS_MC_CLOSE = 1, /* write what is in c->out, then close the connection */
};

/*
 * Process every complete command buffered on c (pipelined commands are
 * answered in order), appending replies to c->out and advancing c->rpos.
 * Never blocks on the network. Returns enum ss_mc_result.
 */
int ss_mc_process(struct ss_conn *c);

/*
 * For a transport whose request cannot wait part-way (a UDP datagram, run
 * whole on a reused connection): start the device reads that the leading
 * get, gets, bget and mg commands of [p, p + len) will need. Returns how
 * many were started (0: run it now), *reads the first of them, linked with
 * ss_store_read_link. The lookups have no effect a get would not have; the
 * caller attaches its callback to each read and, once all completed, runs
 * the request with them in hand (ss_store_read_use). Scanning stops at the
 * first other command.
 */
unsigned ss_mc_prefetch(struct ss_conn *c, const char *p, size_t len, struct ss_read **reads);

/* ---- shared with switch mode, which answers gets on its own fast path ---- */

/* Item bit kept beside SS_ITEM_*: the key arrived base64 encoded (ms b). */
#define SS_MC_ITEM_KEY_BINARY 0x100u
/* Proxy mode: the local copy's cas is not the back end's (see ss_px_*.c), so
 * a gets must not be answered from it. An item bit beside SS_ITEM_*. */
#define SS_MC_ITEM_CAS_UNKNOWN 0x200u
/* Proxy mode: the local copy was kept from a write and the owner has not
 * been read since. memcached marks an item fetched on its first read (any
 * mg, get, touch), which `mg h` shows: the first local answer from such a
 * copy clears the bit and sends the owner a plain `mg <key>` so that it
 * marks the item fetched too (mark_read_at_owner in proxy/ss_px_cmd.c). The switch fast
 * path answers such copies without telling the owner. */
#define SS_MC_ITEM_UNREAD_AT_OWNER 0x400u

/* May an item answer a read locally? with_cas: the reply shows its cas. Only
 * proxy mode's local copies carry the bit that says no. */
static inline bool ss_mc_local_answers(uint32_t bits, bool with_cas)
{
    return !(with_cas && (bits & SS_MC_ITEM_CAS_UNKNOWN));
}
/* Longest "VALUE <key> <flags> <bytes> <cas>\r\n" line. */
#define SS_MC_VALUE_HDR_MAX (SS_KEY_MAX_LENGTH + 80)
/* Render "VALUE <key> <flags> <bytes>[ <cas>]\r\n" into hdr; returns its length. */
size_t ss_mc_value_header(char *hdr, const char *key, size_t nkey, uint32_t flags,
                          size_t nbytes, const uint64_t *cas);

#endif
