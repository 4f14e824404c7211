/*
 * ss_http_lex.c - the lexical layer of the http plane: character classes,
 * one field line, lists, tokens, quoted strings, digits, and the error
 * table (see ss_http_internal.h).
 */
#include <string.h>

#include "ss_http_internal.h"

#define T (SS_HTTP_C_TCHAR | SS_HTTP_C_VCHAR)
#define V SS_HTTP_C_VCHAR
#define D (SS_HTTP_C_TCHAR | SS_HTTP_C_VCHAR | SS_HTTP_C_DIGIT | SS_HTTP_C_HEX)
#define H (SS_HTTP_C_TCHAR | SS_HTTP_C_VCHAR | SS_HTTP_C_HEX)

/* RFC 9110 §5.6.2: the visible characters that are not delimiters
 * ("(),/:;<=>?@[\]{} and DQUOTE) are token characters. Each byte appears
 * once, so no initializer overrides another. */
const uint8_t ss_http_class[256] = {
    ['\t'] = SS_HTTP_C_WS, [' '] = SS_HTTP_C_WS,
    ['!'] = T, ['"'] = V, ['#' ... '\''] = T, ['('] = V, [')'] = V,
    ['*'] = T, ['+'] = T, [','] = V, ['-'] = T, ['.'] = T, ['/'] = V,
    ['0' ... '9'] = D, [':' ... '@'] = V,
    ['A' ... 'F'] = H, ['G' ... 'Z'] = T, ['[' ... ']'] = V, ['^' ... '`'] = T,
    ['a' ... 'f'] = H, ['g' ... 'z'] = T, ['{'] = V, ['|'] = T, ['}'] = V, ['~'] = T,
    [0x80 ... 0xff] = SS_HTTP_C_OBS,
};

#undef T
#undef V
#undef D
#undef H

bool ss_http_eq_nocase(const char *a, size_t n, const char *lit)
{
    size_t i = 0;
    for (; i < n; i++)
        if (lit[i] == '\0' ||
            ss_http_lower((unsigned char)a[i]) != ss_http_lower((unsigned char)lit[i]))
            return false;
    return lit[i] == '\0';
}

int ss_http_field_line(const char *line, size_t n, struct ss_http_field *f)
{
    if (n > 0 && ss_http_is((unsigned char)line[0], SS_HTTP_C_WS))
        return SS_HTTP_E_OBS_FOLD;
    size_t name_len = ss_http_token_len(line, n);
    if (name_len == n)
        return SS_HTTP_E_FIELD_NAME;  /* no colon at all */
    if (line[name_len] != ':')
        /* RFC 9112 §5.1: whitespace before the colon MUST be rejected, since
         * intermediaries disagree on whether it belongs to the name. */
        return ss_http_is((unsigned char)line[name_len], SS_HTTP_C_WS)
            ? SS_HTTP_E_FIELD_NAME_SPACE : SS_HTTP_E_FIELD_NAME;
    if (name_len == 0)
        return SS_HTTP_E_FIELD_NAME;

    size_t start = name_len + 1, end = n;
    for (size_t i = start; i < n; i++)
        if (!ss_http_is((unsigned char)line[i], SS_HTTP_C_FIELD))
            return SS_HTTP_E_FIELD_VALUE;
    while (start < end && ss_http_is((unsigned char)line[start], SS_HTTP_C_WS))
        start++;
    while (end > start && ss_http_is((unsigned char)line[end - 1], SS_HTTP_C_WS))
        end--;
    f->name = line;
    f->name_len = name_len;
    f->value = line + start;
    f->value_len = end - start;
    return 0;
}

int ss_http_find_field(const struct ss_http_field *fields, int nfields, const char *name,
                       int from)
{
    size_t want = strlen(name);
    for (int i = from < 0 ? 0 : from; i < nfields; i++) {
        const struct ss_http_field *f = &fields[i];
        if (f->name_len != want)
            continue;
        size_t j = 0;
        while (j < want && ss_http_lower((unsigned char)f->name[j]) ==
                               ss_http_lower((unsigned char)name[j]))
            j++;
        if (j == want)
            return i;
    }
    return -1;
}

size_t ss_http_token_len(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n && ss_http_is((unsigned char)s[i], SS_HTTP_C_TCHAR))
        i++;
    return i;
}

size_t ss_http_quoted_len(const char *s, size_t n)
{
    /* qdtext = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text, and
     * quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text ). */
    for (size_t i = 1; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"')
            return i + 1;
        if (ch == '\\') {
            if (++i == n || !ss_http_is((unsigned char)s[i], SS_HTTP_C_FIELD))
                return 0;
        } else if (!ss_http_is(ch, SS_HTTP_C_FIELD)) {
            return 0;
        }
    }
    return 0;
}

bool ss_http_list_next(struct ss_http_list *l, bool keep_empty, const char **elem,
                       size_t *elem_len)
{
    while (!l->done) {
        const char *p = l->pos;
        const char *start = p;
        while (p < l->end && *p != ',') {
            if (*p == '"') {
                size_t q = ss_http_quoted_len(p, (size_t)(l->end - p));
                /* An unterminated quote runs to the end of the list, so the
                 * caller sees that element whole and can reject it. */
                p = q ? p + q : l->end;
            } else {
                p++;
            }
        }
        const char *end = p;
        if (p < l->end)
            l->pos = p + 1;
        else
            l->done = true;
        while (start < end && ss_http_is((unsigned char)*start, SS_HTTP_C_WS))
            start++;
        while (end > start && ss_http_is((unsigned char)end[-1], SS_HTTP_C_WS))
            end--;
        if (start == end && !keep_empty)
            continue;
        *elem = start;
        *elem_len = (size_t)(end - start);
        return true;
    }
    return false;
}

bool ss_http_parse_digits(const char *s, size_t n, uint64_t cap, uint64_t *v)
{
    if (n == 0)
        return false;
    uint64_t acc = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned d = (unsigned char)s[i] - '0';
        if (d > 9)
            return false;
        acc = acc > (cap - d) / 10 ? cap : acc * 10 + d;
    }
    *v = acc;
    return true;
}

/* ---- the error table ---------------------------------------------------------------------- */

int ss_http_error_status(int rc)
{
    switch (rc) {
#define SS_HTTP_ERROR_STATUS(name, code, status, text) case -code: return status;
    SS_HTTP_ERRORS(SS_HTTP_ERROR_STATUS)
#undef SS_HTTP_ERROR_STATUS
    default:
        return 500;
    }
}

const char *ss_http_error_text(int rc)
{
    switch (rc) {
    case 0:
        return "no error";
#define SS_HTTP_ERROR_TEXT(name, code, status, text) case -code: return text;
    SS_HTTP_ERRORS(SS_HTTP_ERROR_TEXT)
#undef SS_HTTP_ERROR_TEXT
    default:
        return "not an ss_http error code";
    }
}
