/*
 * ss_mc_parse.c - the lexical layer of the memcached text and meta
 * protocols: tokens, numbers and exptime, with memcached 1.6's acceptance
 * rules (a request memcached accepts is accepted, one it refuses is
 * refused), plus the reply helpers every command uses.
 */
#include <errno.h>

#include "ss_dataplane.h"
#include "ss_mc_internal.h"
#include "server/ss_worker.h"

/* Set when an output append failed; the connection is then closed. */
static __thread bool out_failed;

bool ss_mc_out_failed(void)
{
    bool f = out_failed;
    out_failed = false;
    return f;
}

/* Append bytes to the connection's output (see ss_mc_internal.h). */
void ss_mc_out(struct ss_conn *c, const void *p, size_t n)
{
    if (ss_buf_append(&c->out, p, n))
        out_failed = true;
}

/* Reply with one line unless noreply; ERROR and CLIENT_ERROR count as
 * protocol errors whether or not they are sent. */
void ss_mc_reply(struct ss_conn *c, const char *line, bool noreply)
{
    if (line[0] == 'E' && strncmp(line, "ERROR", 5) == 0)
        c->w->ctr.errors_protocol++;
    else if (line[0] == 'C' && strncmp(line, "CLIENT_ERROR", 12) == 0)
        c->w->ctr.errors_protocol++;
    if (noreply)
        return;
    size_t n = strlen(line);
    if (ss_buf_reserve(&c->out, n + 2)) {
        out_failed = true;
        return;
    }
    memcpy(c->out.data + c->out.len, line, n);
    memcpy(c->out.data + c->out.len + n, "\r\n", 2);
    c->out.len += n + 2;
}

/* Write v in decimal at p; returns the end. */
char *ss_mc_u64_to(char *p, uint64_t v)
{
    char tmp[SS_MC_NUM_MAX];
    char *t = tmp + sizeof(tmp);
    do {
        *--t = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    size_t n = (size_t)(tmp + sizeof(tmp) - t);
    memcpy(p, t, n);
    return p + n;
}

size_t ss_mc_value_header(char *hdr, const char *key, size_t nkey, uint32_t flags,
                          size_t nbytes, const uint64_t *cas)
{
    char *p = hdr;
    memcpy(p, "VALUE ", 6);
    p += 6;
    memcpy(p, key, nkey);
    p += nkey;
    *p++ = ' ';
    p = ss_mc_u64_to(p, flags);
    *p++ = ' ';
    p = ss_mc_u64_to(p, nbytes);
    if (cas) {
        *p++ = ' ';
        p = ss_mc_u64_to(p, *cas);
    }
    *p++ = '\r';
    *p++ = '\n';
    return (size_t)(p - hdr);
}

/*
 * Tokenize like memcached: only ' ' separates, empty tokens are skipped,
 * and after max - 1 tokens the rest of the line is left for the caller
 * (multi-key gets continue from the terminal token's p).
 */
size_t ss_mc_tokenize(const char *s, size_t len, struct ss_mc_tok *tok, size_t max)
{
    size_t n = 0, start = 0, i = 0;
    for (; i < len; i++) {
        if (s[i] != ' ')
            continue;
        if (i > start) {
            tok[n].p = s + start;
            tok[n].len = i - start;
            n++;
            if (n == max - 1) {
                start = ++i;
                goto done;
            }
        }
        start = i + 1;
    }
    if (i > start) {
        tok[n].p = s + start;
        tok[n].len = i - start;
        n++;
        start = i;
    }
done:
    tok[n].p = start < len ? s + start : NULL;
    tok[n].len = 0;
    return n + 1;
}

static inline bool is_space(unsigned char ch)
{
    return ch == ' ' || (ch >= '\t' && ch <= '\r');
}

/*
 * strtoull-style scan of p[0, len): leading white space, a sign, digits,
 * then the token must end or continue with white space or a NUL (safe_strto*'s
 * endptr rule). *mag gets the magnitude, *neg the sign. Returns false on
 * no digits, overflow of 64 bits (ERANGE) or trailing garbage.
 */
static bool scan_number(const char *p, size_t len, uint64_t *mag, bool *neg)
{
    size_t i = 0;
    while (i < len && is_space((unsigned char)p[i]))
        i++;
    *neg = false;
    if (i < len && (p[i] == '+' || p[i] == '-')) {
        *neg = p[i] == '-';
        i++;
    }
    size_t d0 = i;
    uint64_t v = 0;
    bool range = false;
    for (; i < len && p[i] >= '0' && p[i] <= '9'; i++) {
        uint64_t dig = (uint64_t)(p[i] - '0');
        if (v > (UINT64_MAX - dig) / 10)
            range = true;
        v = v * 10 + dig;
    }
    if (i == d0 || range)
        return false;
    /* memcached parses C strings: a NUL ends the number like white space
     * (an item value "5\0x" is the number 5). */
    if (i < len && p[i] != '\0' && !is_space((unsigned char)p[i]))
        return false;
    *mag = v;
    return true;
}

/* safe_strtoull: negative input is refused only when the result would look
 * negative as a signed number (so "-0" is 0, as in memcached). */
bool ss_mc_parse_u64(const char *p, size_t len, uint64_t *out)
{
    uint64_t mag;
    bool neg;
    if (!scan_number(p, len, &mag, &neg))
        return false;
    uint64_t v = neg ? (uint64_t)0 - mag : mag;
    /* memcached's strchr() looks for the sign up to the string's NUL. */
    if ((int64_t)v < 0 && memchr(p, '-', strnlen(p, len)))
        return false;
    *out = v;
    return true;
}

/* safe_strtoul on a 64-bit long, truncated to 32 bits as memcached does. */
bool ss_mc_parse_u32(const char *p, size_t len, uint32_t *out)
{
    uint64_t v;
    if (!ss_mc_parse_u64(p, len, &v))
        return false;
    *out = (uint32_t)v;
    return true;
}

/* safe_strtol on a 64-bit long (range checked there), truncated to int32. */
bool ss_mc_parse_i32(const char *p, size_t len, int32_t *out)
{
    uint64_t mag;
    bool neg;
    if (!scan_number(p, len, &mag, &neg))
        return false;
    if (!neg && mag > (uint64_t)INT64_MAX)
        return false;
    if (neg && mag > (uint64_t)INT64_MAX + 1)
        return false;
    int64_t v = neg ? (int64_t)((uint64_t)0 - mag) : (int64_t)mag;
    *out = (int32_t)(uint32_t)(uint64_t)v;
    return true;
}

/*
 * memcached's realtime(EXPTIME_TO_POSITIVE_TIME(x)) as an absolute time:
 * 0 never expires, up to 30 days is relative to now, larger is a unix time,
 * and a negative value is already expired (stored, but never visible).
 */
int64_t ss_mc_exptime(int32_t exptime, int64_t now)
{
    if (exptime == 0)
        return 0;
    if (exptime < 0)
        return 1;
    if (exptime > SS_MC_REALTIME_MAXDELTA)
        return exptime;
    return now + exptime;
}

/*
 * memcached's item_size_ok(): the item header (48 bytes on 64-bit), key and
 * its terminator, 4 bytes of flags when non-zero, the value with its CRLF
 * and the cas must fit in item_size_max.
 */
bool ss_mc_item_fits(struct ss_conn *c, size_t nkey, uint32_t flags, size_t vlen)
{
    const struct ss_dataplane_settings *s = ss_dataplane_settings(c->w->dp);
    uint64_t total = 48 + (uint64_t)nkey + 1 + (flags ? 4 : 0) + (uint64_t)vlen + 2 + 8;
    return total <= s->store.item_size_max;
}
