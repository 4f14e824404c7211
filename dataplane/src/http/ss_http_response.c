/*
 * ss_http_response.c - the head of a response from an origin server (the
 * object plane's fetches), and how its body is framed (RFC 9112 section 6.3).
 *
 * As strict as the request parser about framing, since a cache that reads a
 * body's end differently from the origin would store a torn object or mix
 * two responses: CRLF line endings, no obs-fold, one Content-Length value,
 * Transfer-Encoding's final coding chunked (else the body runs to the close).
 */
#include <errno.h>
#include <string.h>

#include "ss_http_internal.h"

static int resp_line_end(const char *s, size_t n, size_t *eol)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\n')
            return SS_HTTP_E_LINE_ENDING; /* bare LF */
        if (s[i] == '\r') {
            if (i + 1 == n)
                return 0;
            if (s[i + 1] != '\n')
                return SS_HTTP_E_LINE_ENDING;
            *eol = i;
            return 1;
        }
    }
    return 0;
}

/* "HTTP/1.1 200 OK": version, three digits, the reason (any text). */
static int status_line(const char *s, size_t n, struct ss_http_resp *out)
{
    if (n < 12 || memcmp(s, "HTTP/1.", 7) != 0 || (s[7] != '0' && s[7] != '1') || s[8] != ' ')
        return SS_HTTP_E_VERSION;
    out->version = s[7] == '1' ? 11 : 10;
    for (int i = 9; i < 12; i++)
        if (s[i] < '0' || s[i] > '9')
            return SS_HTTP_E_REQUEST_LINE;
    if (n > 12 && s[12] != ' ')
        return SS_HTTP_E_REQUEST_LINE;
    out->status = (s[9] - '0') * 100 + (s[10] - '0') * 10 + (s[11] - '0');
    if (out->status < 100)
        return SS_HTTP_E_REQUEST_LINE;
    return 0;
}

static bool list_has(const struct ss_http_field *f, const char *token, bool *last)
{
    struct ss_http_list l;
    const char *e;
    size_t n;
    bool found = false;
    ss_http_list_init(&l, f->value, f->value_len);
    while (ss_http_list_next(&l, false, &e, &n)) {
        *last = ss_http_eq_nocase(e, n, token);
        found |= *last;
    }
    return found;
}

int ss_http_parse_response_head(const char *buf, size_t len, int head_request,
                                const struct ss_http_limits *lim_in, struct ss_http_resp *out)
{
    struct ss_http_limits lim;
    ss_http_limits_default(&lim);
    if (lim_in) {
        if (lim_in->max_head)
            lim.max_head = lim_in->max_head;
        if (lim_in->max_fields && lim_in->max_fields < SS_HTTP_FIELDS_MAX)
            lim.max_fields = lim_in->max_fields;
    }
    memset(out, 0, sizeof(*out));
    out->content_length = -1;
    size_t pos = 0, eol = 0;
    size_t avail = len < lim.max_head ? len : lim.max_head;
    int rc = resp_line_end(buf, avail, &eol);
    if (rc <= 0)
        return rc < 0 ? rc : (len >= lim.max_head ? SS_HTTP_E_HEAD_TOO_LARGE : 0);
    if ((rc = status_line(buf, eol, out)) < 0)
        return rc;
    pos = eol + 2;
    bool te_chunked_last = false, have_te = false, have_cl = false, close = false;
    bool keep = false;
    for (;;) {
        rc = resp_line_end(buf + pos, avail - pos, &eol);
        if (rc <= 0)
            return rc < 0 ? rc : (len >= lim.max_head ? SS_HTTP_E_HEAD_TOO_LARGE : 0);
        if (eol == 0) {
            pos += 2;
            break;
        }
        if ((uint32_t)out->nfields >= lim.max_fields)
            return SS_HTTP_E_TOO_MANY_FIELDS;
        struct ss_http_field *f = &out->fields[out->nfields];
        if ((rc = ss_http_field_line(buf + pos, eol, f)) < 0)
            return rc;
        out->nfields++;
        pos += eol + 2;
        if (ss_http_eq_nocase(f->name, f->name_len, "content-length")) {
            uint64_t v;
            if (!ss_http_parse_digits(f->value, f->value_len, (uint64_t)INT64_MAX, &v) ||
                (have_cl && (int64_t)v != out->content_length))
                return SS_HTTP_E_CONTENT_LENGTH;
            have_cl = true;
            out->content_length = (int64_t)v;
        } else if (ss_http_eq_nocase(f->name, f->name_len, "transfer-encoding")) {
            have_te = true;
            bool last = false;
            list_has(f, "chunked", &last);
            te_chunked_last = last;
        } else if (ss_http_eq_nocase(f->name, f->name_len, "connection")) {
            bool last;
            close |= list_has(f, "close", &last);
            keep |= list_has(f, "keep-alive", &last);
        }
    }
    out->keep_alive = out->version == 11 ? !close : keep && !close;
    /* RFC 9112 section 6.3, in its order. */
    if (head_request || out->status < 200 || out->status == 204 || out->status == 304) {
        out->framing = SS_HTTP_BODY_NONE;
    } else if (have_te) {
        /* With Transfer-Encoding, Content-Length is ignored (and must not be
         * trusted: a sender that sends both is suspect), so the connection
         * ends with this response either way. */
        out->content_length = -1;
        out->framing = te_chunked_last ? SS_HTTP_BODY_CHUNKED : SS_HTTP_BODY_UNTIL_CLOSE;
        if (have_cl || !te_chunked_last)
            out->keep_alive = 0;
    } else if (have_cl) {
        out->framing = SS_HTTP_BODY_LENGTH;
    } else {
        out->framing = SS_HTTP_BODY_UNTIL_CLOSE;
        out->keep_alive = 0;
    }
    return (int)pos;
}

const struct ss_http_field *ss_http_resp_header(const struct ss_http_resp *r, const char *name)
{
    int i = ss_http_find_field(r->fields, r->nfields, name, 0);
    return i < 0 ? NULL : &r->fields[i];
}
