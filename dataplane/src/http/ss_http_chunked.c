/*
 * ss_http_chunked.c - the chunked transfer coding (RFC 9112 §7.1), decoded
 * incrementally.
 *
 *   chunked-body = *chunk last-chunk trailer-section CRLF
 *   chunk        = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
 *
 * Framing bytes are eaten one at a time into the state, so the input may
 * be cut anywhere and the result is the same; data is never copied, only
 * handed back as a span of the input. aws-chunked bodies (S3's streaming
 * uploads) are this framing with `;chunk-signature=` extensions and
 * checksum trailers, so one decoder serves both.
 */
#include <errno.h>
#include <string.h>

#include "ss_http_internal.h"

/* RFC 9112 §7.1.1 asks a server to bound chunk extensions "to an amount
 * reasonable for the services provided"; aws-chunked needs about 80 bytes. */
#define SS_HTTP_DEFAULT_MAX_EXT 4096
/* 16 hex digits hold any 64-bit size; more than that is refused rather
 * than checked for leading zeros. */
#define SS_HTTP_CHUNK_SIZE_DIGITS 16

enum chunked_state {
    CH_SIZE,          /* hex digits of chunk-size */
    CH_SIZE_WS,       /* BWS after the size: only ';' may follow */
    CH_EXT,           /* chunk-ext outside a quoted-string */
    CH_EXT_QUOTED,    /* inside a quoted chunk-ext-val */
    CH_EXT_ESCAPE,    /* after '\' in a quoted-string */
    CH_SIZE_LF,       /* the size line's CR is in */
    CH_DATA,          /* chunk_left bytes of data */
    CH_DATA_CR,       /* CRLF after the data */
    CH_DATA_LF,
    CH_TRAILER_START, /* start of a trailer line, or of the final CRLF */
    CH_TRAILER_LINE,  /* a trailer field line, copied to trailer_buf */
    CH_TRAILER_LF,
    CH_END_LF,        /* the final CRLF's LF */
    CH_DONE,
};

void ss_http_chunked_init(struct ss_http_chunked *c, uint64_t max_body, uint32_t max_ext,
                          char *trailer_buf, size_t trailer_cap)
{
    memset(c, 0, offsetof(struct ss_http_chunked, trailers));
    c->state = CH_SIZE;
    c->max_body = max_body ? max_body : UINT64_MAX;
    c->max_ext = max_ext ? max_ext : SS_HTTP_DEFAULT_MAX_EXT;
    c->trailer_buf = trailer_buf;
    c->trailer_cap = trailer_buf ? trailer_cap : 0;
}

static int hex_value(unsigned char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    ch = ss_http_lower(ch);
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    return -1;
}

/* One byte of the chunk-size line after its digits: counted against
 * max_ext and kept for ss_http_chunked_ext while there is room. */
static int ext_byte(struct ss_http_chunked *c, char ch)
{
    if (++c->ext_len > c->max_ext)
        return SS_HTTP_E_CHUNK_EXT;
    if (c->ext_kept < SS_HTTP_CHUNK_EXT_KEEP)
        c->ext[c->ext_kept++] = ch;
    else
        c->ext_truncated = 1;
    return 0;
}

static void new_chunk(struct ss_http_chunked *c)
{
    c->state = CH_SIZE;
    c->size_digits = 0;
    c->chunk_left = 0;
    c->ext_len = 0;
    c->ext_kept = 0;
    c->ext_truncated = 0;
}

static int size_byte(struct ss_http_chunked *c, unsigned char ch)
{
    int d = hex_value(ch);
    if (d >= 0) {
        if (c->size_digits == SS_HTTP_CHUNK_SIZE_DIGITS)
            return SS_HTTP_E_CHUNK_SIZE;
        c->size_digits++;
        c->chunk_left = c->chunk_left << 4 | (uint64_t)d;
        /* The size only grows with more digits, so refusing now is the
         * same answer the whole line would get. */
        if (c->chunk_left > c->max_body - c->body_len)
            return SS_HTTP_E_BODY_TOO_LARGE;
        return 0;
    }
    if (c->size_digits == 0)
        return ch == '\n' ? SS_HTTP_E_LINE_ENDING : SS_HTTP_E_CHUNK_SIZE;
    switch (ch) {
    case '\r':
        c->state = CH_SIZE_LF;
        return 0;
    case ';':
        c->state = CH_EXT;
        return ext_byte(c, (char)ch);
    case ' ':
    case '\t':
        c->state = CH_SIZE_WS;
        return ext_byte(c, (char)ch);
    case '\n':
        return SS_HTTP_E_LINE_ENDING;
    default:
        return SS_HTTP_E_CHUNK_SIZE;
    }
}

/*
 * chunk-ext = *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] ), ext-val a
 * token or quoted-string. The bytes are checked by class only (extensions
 * are skipped), but quoting is followed exactly: a CR inside quotes is an
 * error, not a line end.
 */
static int ext_syntax_byte(struct ss_http_chunked *c, unsigned char ch)
{
    switch (c->state) {
    case CH_SIZE_WS:
        if (ch == ';')
            c->state = CH_EXT;
        else if (!ss_http_is(ch, SS_HTTP_C_WS))
            return ch == '\n' ? SS_HTTP_E_LINE_ENDING : SS_HTTP_E_CHUNK_EXT;
        break;
    case CH_EXT:
        if (ch == '\r') {
            c->state = CH_SIZE_LF;
            return 0;
        }
        if (ch == '"')
            c->state = CH_EXT_QUOTED;
        else if (!ss_http_is(ch, SS_HTTP_C_TCHAR | SS_HTTP_C_WS) && ch != ';' && ch != '=')
            return ch == '\n' ? SS_HTTP_E_LINE_ENDING : SS_HTTP_E_CHUNK_EXT;
        break;
    case CH_EXT_QUOTED:
        if (ch == '"')
            c->state = CH_EXT;
        else if (ch == '\\')
            c->state = CH_EXT_ESCAPE;
        else if (!ss_http_is(ch, SS_HTTP_C_FIELD))
            return ch == '\n' ? SS_HTTP_E_LINE_ENDING : SS_HTTP_E_CHUNK_EXT;
        break;
    default: /* CH_EXT_ESCAPE */
        if (!ss_http_is(ch, SS_HTTP_C_FIELD))
            return ch == '\n' ? SS_HTTP_E_LINE_ENDING : SS_HTTP_E_CHUNK_EXT;
        c->state = CH_EXT_QUOTED;
        break;
    }
    return ext_byte(c, (char)ch);
}

/* A trailer line's CR: check the line copied so far and keep it. */
static int end_trailer_line(struct ss_http_chunked *c)
{
    struct ss_http_field *f = &c->trailers[c->ntrailers];
    int rc = ss_http_field_line(c->trailer_buf + c->line_start,
                                c->trailer_len - c->line_start, f);
    if (rc < 0)
        return rc;
    c->ntrailers++;
    c->state = CH_TRAILER_LF;
    return 0;
}

static int trailer_byte(struct ss_http_chunked *c, unsigned char ch)
{
    switch (c->state) {
    case CH_TRAILER_START:
        if (ch == '\r') {
            c->state = CH_END_LF;
            return 0;
        }
        if (c->ntrailers == SS_HTTP_TRAILERS_MAX)
            return SS_HTTP_E_TRAILER_TOO_LARGE;
        /* This byte starts the line: handle it as CH_TRAILER_LINE does. */
        c->line_start = c->trailer_len;
        c->state = CH_TRAILER_LINE;
        /* fall through */
    case CH_TRAILER_LINE:
        if (ch == '\r')
            return end_trailer_line(c);
        if (ch == '\n')
            return SS_HTTP_E_LINE_ENDING;
        if (c->trailer_len == c->trailer_cap)
            return SS_HTTP_E_TRAILER_TOO_LARGE;
        c->trailer_buf[c->trailer_len++] = (char)ch;
        return 0;
    case CH_TRAILER_LF:
        if (ch != '\n')
            return SS_HTTP_E_LINE_ENDING;
        c->state = CH_TRAILER_START;
        return 0;
    default: /* CH_END_LF */
        if (ch != '\n')
            return SS_HTTP_E_LINE_ENDING;
        c->state = CH_DONE;
        return 0;
    }
}

/* One framing byte (any state but CH_DATA and CH_DONE). */
static int framing_byte(struct ss_http_chunked *c, unsigned char ch)
{
    switch (c->state) {
    case CH_SIZE:
        return size_byte(c, ch);
    case CH_SIZE_WS:
    case CH_EXT:
    case CH_EXT_QUOTED:
    case CH_EXT_ESCAPE:
        return ext_syntax_byte(c, ch);
    case CH_SIZE_LF:
        if (ch != '\n')
            return SS_HTTP_E_LINE_ENDING;
        c->state = c->chunk_left ? CH_DATA : CH_TRAILER_START;
        return 0;
    case CH_DATA_CR:
        if (ch != '\r')
            return SS_HTTP_E_CHUNK_CRLF;
        c->state = CH_DATA_LF;
        return 0;
    case CH_DATA_LF:
        if (ch != '\n')
            return SS_HTTP_E_CHUNK_CRLF;
        new_chunk(c);
        return 0;
    default:
        return trailer_byte(c, ch);
    }
}

int ss_http_chunked_feed(struct ss_http_chunked *c, const char *in, size_t len,
                         struct ss_http_chunk_out *out)
{
    out->data = NULL;
    out->data_len = 0;
    out->consumed = 0;
    if (c->error)
        return c->error;
    size_t i = 0;
    while (i < len && c->state != CH_DONE) {
        if (c->state == CH_DATA) {
            size_t n = len - i;
            if (n > c->chunk_left)
                n = (size_t)c->chunk_left;
            out->data = in + i;
            out->data_len = n;
            c->chunk_left -= n;
            c->body_len += n;
            if (c->chunk_left == 0)
                c->state = CH_DATA_CR;
            i += n;
            break;
        }
        int rc = framing_byte(c, (unsigned char)in[i++]);
        if (rc < 0) {
            c->error = rc;
            out->consumed = i;
            return rc;
        }
    }
    out->consumed = i;
    return c->state == CH_DONE ? SS_HTTP_CHUNKED_DONE : SS_HTTP_CHUNKED_MORE;
}

const struct ss_http_field *ss_http_chunked_trailer(const struct ss_http_chunked *c,
                                                    const char *name)
{
    int i = ss_http_find_field(c->trailers, c->ntrailers, name, 0);
    return i < 0 ? NULL : &c->trailers[i];
}

int ss_http_chunked_ext(const struct ss_http_chunked *c, const char *name, const char **value,
                        size_t *value_len)
{
    if (c->ext_truncated)
        return -E2BIG;
    const char *p = c->ext, *end = c->ext + c->ext_kept;
    while (p < end) {
        /* BWS ";" BWS name [ BWS "=" BWS value ] */
        while (p < end && (*p == ';' || ss_http_is((unsigned char)*p, SS_HTTP_C_WS)))
            p++;
        size_t n = ss_http_token_len(p, (size_t)(end - p));
        const char *ename = p;
        p += n;
        while (p < end && ss_http_is((unsigned char)*p, SS_HTTP_C_WS))
            p++;
        const char *v = p;
        size_t vn = 0;
        if (p < end && *p == '=') {
            p++;
            while (p < end && ss_http_is((unsigned char)*p, SS_HTTP_C_WS))
                p++;
            if (p < end && *p == '"') {
                size_t q = ss_http_quoted_len(p, (size_t)(end - p));
                v = p + 1;
                vn = q >= 2 ? q - 2 : 0;
                p += q ? q : (size_t)(end - p);
            } else {
                v = p;
                vn = ss_http_token_len(p, (size_t)(end - p));
                p += vn;
            }
        }
        if (n > 0 && ss_http_eq_nocase(ename, n, name)) {
            *value = v;
            *value_len = vn;
            return 0;
        }
        if (n == 0 && p < end && *p != ';')
            p++;  /* a stray byte: step over it rather than loop */
    }
    return -ENOENT;
}
