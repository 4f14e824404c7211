/*
 * ss_mc_meta_debug.c - the `me` meta command: memcached's one-line dump of
 * an item's metadata, for operators and client test suites.
 */
#include <stdio.h>

#include "common/ss_base64.h"
#include "common/ss_clock.h"
#include "ss_mc_internal.h"
#include "server/ss_worker.h"

#define KEY_TOKEN 1

/* memcached's slab class for an item of `total` bytes under the default
 * slab settings (-n 48 -f 1.25, 512 KiB largest chunk); `me` reports it. */
static unsigned slab_class(uint64_t total)
{
    unsigned size = 96, cls = 1;
    const unsigned chunk_max = 512 * 1024;
    for (;; cls++) {
        if (size >= chunk_max / 1.25) {
            return cls;
        }
        if (size % 8)
            size += 8 - size % 8;
        if (total <= size)
            return cls;
        size = (unsigned)(size * 1.25);
    }
}

/*
 * me <key> [b]: memcached's debug line
 * "ME <key> exp=<s> la=<s> cas=<cas> fetch=<yes|no> cls=<n> size=<bytes>"
 * (size and cls as memcached would account the item), then SmartSwitch's
 * own " tier=dram|device" (where the item lives; `smartswitch route` reads
 * it), EN on a miss.
 */
int ss_mc_meta_debug(struct ss_conn *c, struct ss_mc_req *rq)
{
    const struct ss_mc_tok *tok = rq->tok;
    size_t ntok = rq->ntok;
    struct ss_store_thread *t = &c->w->st;
    unsigned char keybuf[SS_KEY_MAX_LENGTH];
    const char *key = tok[KEY_TOKEN].p;
    size_t nkey = tok[KEY_TOKEN].len;
    bool binary = false;

    if (ntok < 3 || nkey > SS_KEY_MAX_LENGTH) {
        ss_mc_reply(c, "CLIENT_ERROR bad command line format", false);
        return SS_EXEC_DONE;
    }
    if (ntok >= 4 && ss_mc_tok_is(&tok[2], "b")) {
        nkey = ss_base64_decode(key, nkey, keybuf);
        if (nkey == 0) {
            ss_mc_reply(c, "CLIENT_ERROR bad command line format", false);
            return SS_EXEC_DONE;
        }
        key = (const char *)keybuf;
        binary = true;
    }
    struct ss_item it;
    ss_store_lock(t, key, nkey);
    int rc = ss_store_find(t, key, nkey, &it, SS_FIND_NO_BUMP);
    ss_store_unlock(t);
    if (rc != 0) {
        ss_mc_out(c, "EN\r\n", 4);
        return SS_EXEC_DONE;
    }
    uint32_t now = (uint32_t)ss_clock_unix_seconds();
    uint64_t total = 48 + nkey + 1 + (it.flags ? 4 : 0) + (uint64_t)it.nbytes + 2 + 8;
    char line[SS_KEY_MAX_LENGTH * 2 + 160];
    char *p = line;
    memcpy(p, "ME ", 3);
    p += 3;
    (void)binary;
    if (it.bits & SS_MC_ITEM_KEY_BINARY) {
        p += ss_base64_encode((const unsigned char *)key, nkey, p);
    } else {
        memcpy(p, key, nkey);
        p += nkey;
    }
    int exp = it.exptime == 0 ? -1 : (int)(uint32_t)(now - (uint32_t)it.exptime);
    p += snprintf(p, (size_t)(line + sizeof(line) - p),
                  " exp=%d la=%llu cas=%llu fetch=%s cls=%u size=%llu tier=%s\r\n", exp,
                  (unsigned long long)(uint32_t)(now - it.last_access),
                  (unsigned long long)it.cas, (it.bits & SS_ITEM_FETCHED) ? "yes" : "no",
                  slab_class(total), (unsigned long long)total,
                  it.tier == SS_TIER_DRAM ? "dram" : "device");
    ss_mc_out(c, line, (size_t)(p - line));
    return SS_EXEC_DONE;
}
