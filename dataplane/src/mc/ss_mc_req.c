/*
 * ss_mc_req.c - a command line parsed once into a request: its command from
 * the command table, its tokens, noreply, and a meta command's flags.
 */
#include <errno.h>

#include "common/ss_base64.h"
#include "common/ss_clock.h"
#include "ss_mc_internal.h"

#define KEY_TOKEN 1

const struct ss_mc_cmd_info ss_mc_cmd_table[SS_MC_CMD__COUNT] = {
#define SS_MC_CMD_INFO(id, nm, min, max, fl, ctr) \
    [SS_MC_CMD_##id] = {nm, sizeof(nm) - 1, min, max, fl, ctr},
    SS_MC_COMMANDS(SS_MC_CMD_INFO)
#undef SS_MC_CMD_INFO
    [SS_MC_CMD_UNKNOWN] = {"unknown", 7, 0, 0, 0, SS_MC_NO_CTR},
};

enum ss_mc_cmd ss_mc_cmd_lookup(const char *p, size_t len)
{
    /* The length filters all but one or two names, so the compares are few. */
    for (unsigned i = 0; i < SS_MC_CMD_UNKNOWN; i++) {
        const struct ss_mc_cmd_info *ci = &ss_mc_cmd_table[i];
        if (ci->name_len == len && p[0] == ci->name[0] && memcmp(p, ci->name, len) == 0)
            return (enum ss_mc_cmd)i;
    }
    return SS_MC_CMD_UNKNOWN;
}

/*
 * memcached's _meta_flag_preparse(): validate every flag from tok[start],
 * decode a base64 key, parse numeric arguments. m->rc is 0, or -EINVAL with
 * m->err naming the first fatal problem (later non-fatal errors overwrite
 * earlier messages, as there).
 */
static void meta_preparse(const struct ss_mc_tok *tok, size_t start, struct ss_mc_meta *m)
{
    int32_t v;

    m->key = tok[KEY_TOKEN].p;
    m->nkey = tok[KEY_TOKEN].len;
    for (size_t i = start; tok[i].len != 0; i++) {
        uint8_t o = (uint8_t)tok[i].p[0];
        const char *arg = tok[i].p + 1;
        size_t alen = tok[i].len - 1;
        if (o >= 127 || (o >= 'A' && ss_mc_meta_has(m, (char)o))) {
            m->err = "CLIENT_ERROR duplicate flag";
            m->rc = -EINVAL;
            return;
        }
        if (o >= 'A' && o - 'A' < 64)
            m->seen |= 1ull << (o - 'A');
        switch (o) {
        case 'b':
            m->nkey = ss_base64_decode(tok[KEY_TOKEN].p, tok[KEY_TOKEN].len, m->keybuf);
            m->key = (const char *)m->keybuf;
            if (m->nkey == 0) {
                m->err = "CLIENT_ERROR error decoding key";
                m->has_error = true;
            }
            m->key_binary = true;
            break;
        case 'N':
        case 'T':
        case 'R':
            m->locked = true;
            m->write_like = true;
            if (!ss_mc_parse_i32(arg, alen, &v)) {
                m->err = "CLIENT_ERROR bad token in command line format";
                m->has_error = true;
                break;
            }
            if (o == 'N') {
                m->vivify = true;
                m->autoviv_exptime = ss_mc_exptime(v, m->now);
            } else if (o == 'T') {
                m->exptime = ss_mc_exptime(v, m->now);
                m->new_ttl = true;
            } else {
                m->recache_time = ss_mc_exptime(v, m->now);
            }
            break;
        case 'l':
        case 'h':
            m->locked = true;
            break;
        case 'O':
        case 'P':
        case 'L':
        case 'k':
        case 's':
        case 't':
        case 'c':
        case 'f':
            break;
        case 'v':
            m->value = true;
            break;
        case 'u':
            m->no_update = true;
            break;
        case 'q':
            m->no_reply = true;
            break;
        case 'F':
            if (!ss_mc_parse_u32(arg, alen, &m->client_flags))
                m->has_error = true;
            break;
        case 'C':
            if (!ss_mc_parse_u64(arg, alen, &m->req_cas)) {
                m->err = "CLIENT_ERROR bad token in command line format";
                m->has_error = true;
            } else {
                m->has_cas = true;
            }
            break;
        case 'M':
            if (tok[i].len != 2) {
                m->err = "CLIENT_ERROR incorrect length for M token";
                m->has_error = true;
            } else {
                m->mode = tok[i].p[1];
            }
            break;
        case 'J':
            if (!ss_mc_parse_u64(arg, alen, &m->initial)) {
                m->err = "CLIENT_ERROR invalid numeric initial value";
                m->has_error = true;
            }
            break;
        case 'D':
            if (!ss_mc_parse_u64(arg, alen, &m->delta)) {
                m->err = "CLIENT_ERROR invalid numeric delta value";
                m->has_error = true;
            }
            break;
        case 'I':
            m->set_stale = true;
            break;
        default:
            m->err = "CLIENT_ERROR invalid flag";
            m->rc = -EINVAL;
            return;
        }
    }
    m->rc = m->has_error ? -EINVAL : 0;
}

/* Parse a meta command's flags when memcached would get as far as reading
 * them: the key fits and the line has them (ms: after its datalen). */
static void meta_parse(struct ss_mc_req *rq)
{
    size_t start = ss_mc_cmd_table[rq->cmd].flags & SS_MC_CMD_DATALEN ? 3 : 2;
    rq->meta_parsed = rq->ntok >= start + 1 && rq->tok[KEY_TOKEN].len <= SS_KEY_MAX_LENGTH;
    if (!rq->meta_parsed)
        return;
    struct ss_mc_meta *m = &rq->meta;
    memset(m, 0, offsetof(struct ss_mc_meta, keybuf));
    m->err = "CLIENT_ERROR bad command line format";
    m->delta = 1; /* ma without D */
    m->now = ss_clock_unix_seconds();
    meta_preparse(rq->tok, start, m);
}

void ss_mc_req_parse(struct ss_mc_req *rq, const char *line, size_t len, const char *data,
                     size_t avail, size_t line_bytes)
{
    /* memcached stops at a NUL byte (its line is a C string). */
    const char *nul = memchr(line, '\0', len);
    if (nul)
        len = (size_t)(nul - line);
    rq->line = line;
    rq->len = len;
    rq->data = data;
    rq->avail = avail;
    rq->line_bytes = line_bytes;
    rq->extra = 0;
    rq->meta_parsed = false;
    rq->unread_at_owner = false;
    rq->ntok = ss_mc_tokenize(line, len, rq->tok, SS_MC_MAX_TOKENS);
    if (rq->ntok < 2 || rq->tok[0].len < 2) {
        rq->cmd = SS_MC_CMD_UNKNOWN;
        rq->noreply = false;
        return;
    }
    rq->cmd = ss_mc_cmd_lookup(rq->tok[0].p, rq->tok[0].len);
    /* memcached's set_noreply_maybe(): the next-to-last token is "noreply". */
    rq->noreply = ss_mc_tok_is(&rq->tok[rq->ntok - 2], "noreply");
    if (ss_mc_cmd_table[rq->cmd].flags & SS_MC_CMD_META)
        meta_parse(rq);
}

bool ss_mc_meta_ok(const struct ss_mc_req *rq)
{
    if (!rq->meta_parsed || rq->meta.rc != 0 || rq->ntok > SS_MC_META_MAX_TOKENS)
        return false;
    for (size_t i = KEY_TOKEN + 1; i + 1 < rq->ntok; i++)
        if (rq->tok[i].p[0] == 'O' && rq->tok[i].len > SS_MC_OPAQUE_MAX)
            return false;
    return true;
}
