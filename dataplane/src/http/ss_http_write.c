/*
 * ss_http_write.c - response heads into a caller's buffer (RFC 9112 §4,
 * §5). The writer refuses what would let a value end the line early (CR,
 * LF, other controls) so that no stored object's metadata can split a
 * response; the first failure sticks and is returned by ss_http_write_end.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "ss_http_internal.h"

const char *ss_http_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "";
    }
}

void ss_http_writer_init(struct ss_http_writer *w, char *buf, size_t cap)
{
    w->buf = buf;
    w->cap = cap;
    w->len = 0;
    w->error = 0;
}

static void put(struct ss_http_writer *w, const char *p, size_t n)
{
    if (w->error)
        return;
    if (w->cap - w->len < n) {
        w->error = -ENOSPC;
        return;
    }
    memcpy(w->buf + w->len, p, n);
    w->len += n;
}

static void put_str(struct ss_http_writer *w, const char *s)
{
    put(w, s, strlen(s));
}

void ss_http_write_status(struct ss_http_writer *w, int status)
{
    char line[32];
    if (status < 100 || status > 999) {
        w->error = w->error ? w->error : -EINVAL;
        return;
    }
    /* A server sends its own version, 1.1, whatever the request said
     * (RFC 9110 §2.5). The reason phrase may be empty, not absent. */
    snprintf(line, sizeof(line), "HTTP/1.1 %d ", status);
    put_str(w, line);
    put_str(w, ss_http_reason(status));
    put(w, "\r\n", 2);
}

static bool valid_field(const char *name, const char *value, size_t value_len)
{
    size_t n = strlen(name);
    if (n == 0 || ss_http_token_len(name, n) != n)
        return false;
    for (size_t i = 0; i < value_len; i++)
        if (!ss_http_is((unsigned char)value[i], SS_HTTP_C_FIELD))
            return false;
    return true;
}

void ss_http_write_field(struct ss_http_writer *w, const char *name, const char *value,
                         size_t value_len)
{
    if (!valid_field(name, value, value_len)) {
        w->error = w->error ? w->error : -EINVAL;
        return;
    }
    put_str(w, name);
    put(w, ": ", 2);
    put(w, value, value_len);
    put(w, "\r\n", 2);
}

void ss_http_write_field_u64(struct ss_http_writer *w, const char *name, uint64_t value)
{
    char digits[24];
    int n = snprintf(digits, sizeof(digits), "%" PRIu64, value);
    ss_http_write_field(w, name, digits, (size_t)n);
}

void ss_http_write_field_date(struct ss_http_writer *w, const char *name, int64_t t)
{
    char date[SS_HTTP_DATE_LEN + 1];
    int n = ss_http_date_format(t, date, sizeof(date));
    if (n < 0) {
        w->error = w->error ? w->error : n;
        return;
    }
    ss_http_write_field(w, name, date, (size_t)n);
}

int ss_http_write_end(struct ss_http_writer *w)
{
    put(w, "\r\n", 2);
    return w->error ? w->error : (int)w->len;
}
