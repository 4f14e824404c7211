/*
 * ss_http_parse.c - the request head: request line, field lines, and the
 * framing they imply (RFC 9112 §2-§3, §5-§6; RFC 9110 §7.2, §8.6).
 *
 * The head is parsed line by line from the start of the buffer on every
 * call. Each line is first delimited (a CR not followed by LF, or an LF not
 * after CR, is refused at once), then checked whole; so every decision is
 * made at the end of the line it concerns, and a shorter prefix of the same
 * bytes can only give "need more" or the same answer. Semantics that need
 * all the field lines (Host present, Content-Length against
 * Transfer-Encoding) are decided at the blank line.
 */
#include <string.h>

#include "ss_http_internal.h"

/* RFC 9110 §9.1 puts no bound on a method; the longest registered one is
 * 17 bytes (UPDATEREDIRECTREF), so a longer token is one we do not know. */
#define SS_HTTP_METHOD_MAX_LEN 32
/* The result is an int byte count, so no head may be longer than this. */
#define SS_HTTP_MAX_HEAD_CAP (1u << 30)

/* What the field lines said about framing, decided at the blank line. */
struct framing {
    int hosts;
    bool content_length;
    bool close, keep_alive, expect_continue;
    int te_lines, te_chunked;
    bool te_last_chunked, te_unknown;
};

/* field_lines' results besides errors. */
enum { SCAN_MORE = 0, SCAN_DONE = 1 };

static const struct {
    const char *name;
    size_t len;
} methods[] = {
#define SS_HTTP_METHOD_ROW(name, str) {str, sizeof(str) - 1},
    SS_HTTP_METHODS(SS_HTTP_METHOD_ROW)
#undef SS_HTTP_METHOD_ROW
};

const char *ss_http_method_name(int method)
{
    if (method >= 0 && method < SS_HTTP_M_OTHER)
        return methods[method].name;
    return "OTHER";
}

void ss_http_limits_default(struct ss_http_limits *lim)
{
    lim->max_head = SS_HTTP_DEFAULT_MAX_HEAD;
    lim->max_fields = SS_HTTP_DEFAULT_MAX_FIELDS;
    lim->max_uri = SS_HTTP_DEFAULT_MAX_URI;
}

static void limits_in_force(const struct ss_http_limits *in, struct ss_http_limits *lim)
{
    ss_http_limits_default(lim);
    if (in == NULL)
        return;
    if (in->max_head)
        lim->max_head = in->max_head < SS_HTTP_MAX_HEAD_CAP ? in->max_head : SS_HTTP_MAX_HEAD_CAP;
    if (in->max_fields)
        lim->max_fields = in->max_fields < SS_HTTP_FIELDS_MAX ? in->max_fields
                                                              : SS_HTTP_FIELDS_MAX;
    if (in->max_uri)
        lim->max_uri = in->max_uri;
}

/*
 * Where the line starting at s ends. Returns 1 and the offset of its CR in
 * *eol, 0 when no CR LF is in s[0..n) yet, or SS_HTTP_E_LINE_ENDING for a
 * bare CR or LF (RFC 9112 §2.2 lets a recipient take a bare LF as a line
 * end; we refuse it, because a proxy in front of us may not).
 */
static int line_end(const char *s, size_t n, size_t *eol)
{
    const char *cr = memchr(s, '\r', n);
    size_t upto = cr ? (size_t)(cr - s) : n;
    if (memchr(s, '\n', upto))
        return SS_HTTP_E_LINE_ENDING;
    if (cr == NULL || upto + 1 == n)
        return 0;
    if (cr[1] != '\n')
        return SS_HTTP_E_LINE_ENDING;
    *eol = upto;
    return 1;
}

static bool is_regname_char(unsigned char ch)
{
    /* RFC 3986 reg-name: unreserved / sub-delims (pct-encoded apart). */
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch != '\0' && strchr("-._~!$&'()*+,;=", ch) != NULL);
}

/* host [":" port] as in the Host field and an absolute URI's authority
 * (RFC 9110 §7.2; RFC 3986 §3.2.2). No userinfo: RFC 9110 §4.2.4 says a
 * recipient should treat one in an http URI as an error. */
static bool valid_host(const char *s, size_t n)
{
    size_t i = 0;
    if (n > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', n);
        if (close == NULL || close == s + 1)
            return false;
        for (i = 1; s + i < close; i++)
            if (!is_regname_char((unsigned char)s[i]) && s[i] != ':')
                return false;
        i++;
    } else {
        while (i < n && s[i] != ':') {
            if (s[i] == '%') {
                if (n - i < 3 || !ss_http_is((unsigned char)s[i + 1], SS_HTTP_C_HEX) ||
                    !ss_http_is((unsigned char)s[i + 2], SS_HTTP_C_HEX))
                    return false;
                i += 3;
            } else if (is_regname_char((unsigned char)s[i])) {
                i++;
            } else {
                return false;
            }
        }
    }
    if (i == n)
        return true;
    if (s[i++] != ':')
        return false;
    for (; i < n; i++)
        if (!ss_http_is((unsigned char)s[i], SS_HTTP_C_DIGIT))
            return false;
    return true;
}

static void split_path_query(struct ss_http_req *req, const char *p, size_t n)
{
    const char *q = memchr(p, '?', n);
    if (n == 0 || p[0] == '?') {
        /* absolute-form without a path: RFC 9112 §3.2.1 has the origin-form
         * of such a URI be "/". */
        req->path = "/";
        req->path_len = 1;
    } else {
        req->path = p;
        req->path_len = q ? (size_t)(q - p) : n;
    }
    if (q) {
        req->query = q + 1;
        req->query_len = n - (size_t)(q - p) - 1;
    }
}

/* Origin-form, absolute-form (http or https only), or OPTIONS's asterisk;
 * authority-form is CONNECT's, which an object store does not serve. */
static int classify_target(struct ss_http_req *req)
{
    const char *t = req->target;
    size_t n = req->target_len;
    if (t[0] == '/') {
        req->target_form = SS_HTTP_FORM_ORIGIN;
        split_path_query(req, t, n);
        return 0;
    }
    if (n == 1 && t[0] == '*') {
        if (req->method != SS_HTTP_M_OPTIONS)
            return SS_HTTP_E_TARGET_FORM;
        req->target_form = SS_HTTP_FORM_ASTERISK;
        req->path = t;
        req->path_len = 1;
        return 0;
    }
    size_t scheme;
    if (n > 7 && ss_http_eq_nocase(t, 7, "http://"))
        scheme = 7;
    else if (n > 8 && ss_http_eq_nocase(t, 8, "https://"))
        scheme = 8;
    else
        return SS_HTTP_E_TARGET_FORM;
    const char *auth = t + scheme;
    size_t auth_len = 0;
    while (scheme + auth_len < n && auth[auth_len] != '/' && auth[auth_len] != '?')
        auth_len++;
    if (auth_len == 0 || !valid_host(auth, auth_len))
        return SS_HTTP_E_TARGET_FORM;
    req->target_form = SS_HTTP_FORM_ABSOLUTE;
    req->host = auth;
    req->host_len = auth_len;
    split_path_query(req, auth + auth_len, n - scheme - auth_len);
    return 0;
}

/* The request line s[0..n), without its CRLF (RFC 9112 §3). */
static int request_line(const char *s, size_t n, const struct ss_http_limits *lim,
                        struct ss_http_req *req)
{
    size_t m = ss_http_token_len(s, n);
    if (m == 0 || m == n || s[m] != ' ')
        return SS_HTTP_E_REQUEST_LINE;
    if (m > SS_HTTP_METHOD_MAX_LEN)
        return SS_HTTP_E_METHOD;
    req->method_str = s;
    req->method_len = m;
    req->method = SS_HTTP_M_OTHER;
    for (int i = 0; i < SS_HTTP_M_OTHER; i++)
        if (methods[i].len == m && memcmp(methods[i].name, s, m) == 0)
            req->method = i;

    const char *t = s + m + 1, *end = s + n;
    const char *sp = memchr(t, ' ', (size_t)(end - t));
    if (sp == NULL || sp == t)
        return SS_HTTP_E_REQUEST_LINE;
    if ((size_t)(sp - t) > lim->max_uri)
        return SS_HTTP_E_URI_TOO_LONG;
    for (const char *p = t; p < sp; p++)
        /* '#' starts a fragment, which is never sent (RFC 9110 §4.2.5). */
        if (!ss_http_is((unsigned char)*p, SS_HTTP_C_VCHAR) || *p == '#')
            return SS_HTTP_E_TARGET;
    req->target = t;
    req->target_len = (size_t)(sp - t);

    const char *v = sp + 1;
    size_t vn = (size_t)(end - v);
    if (memchr(v, ' ', vn))
        return SS_HTTP_E_REQUEST_LINE;
    if (vn != 8 || memcmp(v, "HTTP/", 5) != 0 || v[6] != '.' ||
        !ss_http_is((unsigned char)v[5], SS_HTTP_C_DIGIT) ||
        !ss_http_is((unsigned char)v[7], SS_HTTP_C_DIGIT))
        return SS_HTTP_E_VERSION;
    if (v[5] != '1' || v[7] > '1')
        return SS_HTTP_E_VERSION_UNSUPPORTED;
    req->version = v[7] == '1' ? 11 : 10;
    return classify_target(req);
}

static int content_length(const struct ss_http_field *f, struct framing *fr,
                          struct ss_http_req *req)
{
    /* RFC 9110 §8.6: 1*DIGIT. A list ("5, 5") is refused outright, and so
     * are lines that disagree; repeating the same number is harmless. */
    if (f->value_len == 0)
        return SS_HTTP_E_CONTENT_LENGTH;
    int64_t v = 0;
    for (size_t i = 0; i < f->value_len; i++) {
        unsigned d = (unsigned char)f->value[i] - '0';
        if (d > 9 || v > (INT64_MAX - (int64_t)d) / 10)
            return SS_HTTP_E_CONTENT_LENGTH;
        v = v * 10 + d;
    }
    if (fr->content_length && v != req->content_length)
        return SS_HTTP_E_CONTENT_LENGTH;
    fr->content_length = true;
    req->content_length = v;
    return 0;
}

static int transfer_encoding(const struct ss_http_field *f, struct framing *fr)
{
    /* Codings accumulate over lines (RFC 9110 §5.3); what they add up to
     * is judged at the blank line. Empty elements are refused, not
     * skipped: "Transfer-Encoding: ,chunked" is a known way to make two
     * parsers disagree. */
    struct ss_http_list l;
    const char *e;
    size_t n;
    fr->te_lines++;
    ss_http_list_init(&l, f->value, f->value_len);
    while (ss_http_list_next(&l, true, &e, &n)) {
        if (n == 0 || ss_http_token_len(e, n) != n)
            return SS_HTTP_E_TE_SYNTAX;
        bool chunked = ss_http_eq_nocase(e, n, "chunked");
        fr->te_chunked += chunked;
        fr->te_last_chunked = chunked;
        fr->te_unknown |= !chunked;
    }
    return 0;
}

static void token_flags(const struct ss_http_field *f, struct framing *fr, bool connection)
{
    struct ss_http_list l;
    const char *e;
    size_t n;
    ss_http_list_init(&l, f->value, f->value_len);
    while (ss_http_list_next(&l, false, &e, &n)) {
        if (connection) {
            fr->close |= ss_http_eq_nocase(e, n, "close");
            fr->keep_alive |= ss_http_eq_nocase(e, n, "keep-alive");
        } else {
            fr->expect_continue |= ss_http_eq_nocase(e, n, "100-continue");
        }
    }
}

/* The field lines that frame the message or name its host. */
static int interpret(const struct ss_http_field *f, struct framing *fr, struct ss_http_req *req)
{
    const char *name = f->name;
    size_t n = f->name_len;
    if (ss_http_eq_nocase(name, n, "host")) {
        if (++fr->hosts > 1)
            return SS_HTTP_E_HOST_DUPLICATE;
        if (!valid_host(f->value, f->value_len))
            return SS_HTTP_E_HOST_INVALID;
        /* RFC 9112 §3.2.2: absolute-form's authority wins over Host. */
        if (req->target_form != SS_HTTP_FORM_ABSOLUTE) {
            req->host = f->value;
            req->host_len = f->value_len;
        }
    } else if (ss_http_eq_nocase(name, n, "content-length")) {
        return content_length(f, fr, req);
    } else if (ss_http_eq_nocase(name, n, "transfer-encoding")) {
        return transfer_encoding(f, fr);
    } else if (ss_http_eq_nocase(name, n, "connection")) {
        token_flags(f, fr, true);
    } else if (ss_http_eq_nocase(name, n, "expect")) {
        token_flags(f, fr, false);
    }
    return 0;
}

/* RFC 9112 §3.2, §6.1, §6.3, §9.3 and RFC 9110 §10.1.1, once every line is in. */
static int finish(const struct framing *fr, struct ss_http_req *req)
{
    if (req->version == 11 && fr->hosts == 0)
        return SS_HTTP_E_HOST_MISSING;
    if (fr->te_lines) {
        if (fr->content_length)
            return SS_HTTP_E_CL_AND_TE;
        if (req->version == 10)
            return SS_HTTP_E_TE_HTTP10;
        if (!fr->te_last_chunked || fr->te_chunked > 1)
            return SS_HTTP_E_TE_NOT_CHUNKED;
        if (fr->te_unknown)
            return SS_HTTP_E_TE_UNKNOWN;
        req->chunked = 1;
    }
    req->keep_alive = !fr->close && (req->version == 11 || fr->keep_alive);
    /* A 100-continue in HTTP/1.0 MUST be ignored (RFC 9110 §10.1.1). */
    req->expect_100_continue = fr->expect_continue && req->version == 11;
    return 0;
}

static void reset(struct ss_http_req *req)
{
    /* Not the field array: nfields says how much of it is meaningful. */
    memset(req, 0, offsetof(struct ss_http_req, fields));
    req->method = SS_HTTP_M_OTHER;
    req->content_length = -1;
}

/* The field lines from *pos through the blank line. */
static int field_lines(const char *buf, size_t avail, size_t *pos,
                       const struct ss_http_limits *lim, struct ss_http_req *req,
                       struct framing *fr)
{
    for (;;) {
        const char *s = buf + *pos;
        size_t eol;
        int rc = line_end(s, avail - *pos, &eol);
        if (rc <= 0)
            return rc;  /* SCAN_MORE or the error */
        *pos += eol + 2;
        if (eol == 0)
            return SCAN_DONE;
        if ((uint32_t)req->nfields == lim->max_fields)
            return SS_HTTP_E_TOO_MANY_FIELDS;
        struct ss_http_field *f = &req->fields[req->nfields];
        /* Whitespace first is obs-fold after a field line, and RFC 9112
         * §2.2's whitespace after the start-line before the first one:
         * both are refused (with OBS_FOLD) by ss_http_field_line. */
        rc = ss_http_field_line(s, eol, f);
        if (rc == 0)
            rc = interpret(f, fr, req);
        if (rc < 0)
            return rc;
        req->nfields++;
    }
}

int ss_http_parse_head(const char *buf, size_t len, const struct ss_http_limits *lim_in,
                       struct ss_http_req *out)
{
    struct ss_http_limits lim;
    limits_in_force(lim_in, &lim);
    /* Only the first max_head bytes can belong to the head; once that many
     * are in and the head is not done, no more bytes will finish it. */
    size_t avail = len < lim.max_head ? len : lim.max_head;
    bool capped = len >= lim.max_head;
    reset(out);

    /* RFC 9112 §2.2: a server SHOULD ignore empty lines before the request
     * line (left over from a client's previous body). */
    size_t pos = 0, eol = 0;
    int rc;
    while ((rc = line_end(buf + pos, avail - pos, &eol)) == 1 && eol == 0)
        pos += 2;
    if (rc < 0)
        return rc;
    if (rc == 0) {
        if (!capped)
            return 0;
        /* The request line alone does not fit: RFC 9112 §3 has a server
         * answer 414 to a target longer than it will parse. */
        bool in_line = pos < avail && buf[pos] != '\r';
        return in_line ? SS_HTTP_E_URI_TOO_LONG : SS_HTTP_E_HEAD_TOO_LARGE;
    }
    rc = request_line(buf + pos, eol, &lim, out);
    if (rc < 0)
        return rc;
    pos += eol + 2;

    struct framing fr = {0};
    rc = field_lines(buf, avail, &pos, &lim, out, &fr);
    if (rc < 0)
        return rc;
    if (rc == SCAN_MORE)
        return capped ? SS_HTTP_E_HEAD_TOO_LARGE : 0;
    rc = finish(&fr, out);
    return rc < 0 ? rc : (int)pos;
}

const struct ss_http_field *ss_http_header(const struct ss_http_req *req, const char *name)
{
    int i = ss_http_find_field(req->fields, req->nfields, name, 0);
    return i < 0 ? NULL : &req->fields[i];
}

const struct ss_http_field *ss_http_header_next(const struct ss_http_req *req, const char *name,
                                                const struct ss_http_field *after)
{
    int i = ss_http_find_field(req->fields, req->nfields, name,
                               (int)(after - req->fields) + 1);
    return i < 0 ? NULL : &req->fields[i];
}
