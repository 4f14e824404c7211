/*
 * ss_mc_lookahead.c - prefetching for pipelined commands.
 *
 * A client that pipelines leaves several whole commands in the read buffer
 * at once. Run one by one, each lookup takes its cache misses in turn: the
 * DRAM tier's bucket, then the item it points at (and, in proxy mode, the
 * key's write epoch), each of which on a virtual machine also misses the
 * TLB. Profiled at depth 16, that chain walk was the largest user-space cost
 * of a proxied set. So before the first of a run of commands is executed,
 * the keys of the next few are hashed and what their lookups will touch is
 * prefetched in stages (proxy write slots, then ss_store_prefetch_keys:
 * stripes, buckets, the items the buckets name), and their misses overlap
 * instead of adding up.
 *
 * Only commands whose key and length can be read off the line cheaply are
 * looked at (the storage, retrieval, delete, arithmetic, touch and meta
 * commands); the scan stops at anything else or at a command not wholly
 * received. A wrong guess costs a prefetch, never a result: nothing here
 * changes state, and the command is parsed and run as before.
 */
#include <string.h>

#include "common/ss_hash.h"
#include "proxy/ss_px.h"
#include "server/ss_worker.h"
#include "ss_mc_internal.h"

/* Commands prefetched at a time: enough to cover a miss's latency with the
 * work of the commands before it, few enough that the lines stay cached. */
#define LOOKAHEAD_CMDS 8

/* The last word of [line, end) that is not "noreply": a text storage
 * command's byte count ("set <key> <flags> <exptime> <bytes> [noreply]").
 * Scanning back reads two short words instead of the whole line. */
static bool storage_bytes_word(const char *line, const char *end, const char **w, size_t *n)
{
    for (int words = 0; words < 2; words++) {
        while (end > line && end[-1] == ' ')
            end--;
        const char *s = end;
        while (s > line && s[-1] != ' ')
            s--;
        if (s == end)
            return false;
        if (!(end - s == 7 && memcmp(s, "noreply", 7) == 0)) {
            *w = s;
            *n = (size_t)(end - s);
            return true;
        }
        end = s;
    }
    return false;
}

/*
 * The key of the command at p, and where the next command starts. False
 * when the command is not one this reads, or not all of it (line and value)
 * is in [p, end). The command is checked properly when it runs; a line this
 * misreads only makes a useless prefetch or ends the scan.
 */
static bool peek_command(const char *p, const char *end, const char **key, size_t *nkey,
                         const char **next)
{
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    if (!nl)
        return false;
    const char *eol = nl > p && nl[-1] == '\r' ? nl - 1 : nl;
    const char *pos = p, *cmd, *len_word = NULL;
    size_t ncmd, nlen = 0;
    if (!ss_mc_next_key(&pos, eol, &cmd, &ncmd) || !ss_mc_next_key(&pos, eol, key, nkey))
        return false;
    switch (ss_mc_cmd_lookup(cmd, ncmd)) {
    case SS_MC_CMD_GET:
    case SS_MC_CMD_GETS:
    case SS_MC_CMD_MG:
    case SS_MC_CMD_MD:
    case SS_MC_CMD_MA:
    case SS_MC_CMD_DELETE:
    case SS_MC_CMD_INCR:
    case SS_MC_CMD_DECR:
    case SS_MC_CMD_TOUCH:
        break;
    case SS_MC_CMD_GAT: /* gat <exptime> <key>...: the key is the next word */
    case SS_MC_CMD_GATS:
        if (!ss_mc_next_key(&pos, eol, key, nkey))
            return false;
        break;
    case SS_MC_CMD_SET:
    case SS_MC_CMD_ADD:
    case SS_MC_CMD_REPLACE:
    case SS_MC_CMD_APPEND:
    case SS_MC_CMD_PREPEND:
        if (!storage_bytes_word(pos, eol, &len_word, &nlen))
            return false;
        break;
    case SS_MC_CMD_MS: /* ms <key> <datalen> <flags>* */
        if (!ss_mc_next_key(&pos, eol, &len_word, &nlen))
            return false;
        break;
    default: /* cas among them: rare enough not to be worth its own rule */
        return false;
    }
    if (*nkey > SS_KEY_MAX_LENGTH)
        return false;
    const char *after = nl + 1;
    if (len_word) {
        uint32_t vlen;
        if (!ss_mc_parse_u32(len_word, nlen, &vlen) || (size_t)(end - after) < (size_t)vlen + 2)
            return false;
        after += (size_t)vlen + 2;
    }
    *next = after;
    return true;
}

const char *ss_mc_lookahead(struct ss_conn *c, const char *p, const char *end)
{
    uint64_t hash[LOOKAHEAD_CMDS];
    unsigned n = 0;
    const char *key, *next;
    size_t nkey;
    while (n < LOOKAHEAD_CMDS && p < end && peek_command(p, end, &key, &nkey, &next)) {
        /* A lone command has nothing to overlap with: leave it unhashed. */
        if (n == 0 && next == end)
            return end;
        hash[n++] = ss_hash64(key, nkey);
        p = next;
    }
    if (c->exec)
        for (unsigned i = 0; i < n; i++)
            ss_px_prefetch_key(c->w->dp, hash[i]);
    ss_store_prefetch_keys(c->w->st.store, hash, n);
    return p;
}
