/*
 * ss_http_internal.h - what the http plane's files share: character classes
 * (RFC 9110 §5.6), one field line's syntax (used by the head parser and the
 * chunked decoder's trailer), case-insensitive matching and a walk over
 * comma-separated lists. Only dataplane/src/http/ includes it; other planes
 * use include/ss_http.h.
 *
 * Dependency order: ss_http_lex.c depends on nothing; ss_http_parse.c,
 * ss_http_chunked.c, ss_http_fields.c and ss_http_write.c depend on it and
 * not on each other (the writer uses the date formatter through the public
 * header).
 */
#ifndef SS_HTTP_INTERNAL_H
#define SS_HTTP_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ss_http.h"

/* Bits of ss_http_class[byte]. */
#define SS_HTTP_C_TCHAR 0x01  /* token: ! # $ % & ' * + - . ^ _ ` | ~ DIGIT ALPHA */
#define SS_HTTP_C_VCHAR 0x02  /* %x21-7E */
#define SS_HTTP_C_OBS 0x04    /* obs-text, %x80-FF */
#define SS_HTTP_C_WS 0x08     /* SP / HTAB */
#define SS_HTTP_C_DIGIT 0x10
#define SS_HTTP_C_HEX 0x20
/* Bytes a field value may hold: VCHAR, obs-text, SP, HTAB (RFC 9110 §5.5). */
#define SS_HTTP_C_FIELD (SS_HTTP_C_VCHAR | SS_HTTP_C_OBS | SS_HTTP_C_WS)

extern const uint8_t ss_http_class[256];

static inline bool ss_http_is(unsigned char ch, uint8_t cls)
{
    return (ss_http_class[ch] & cls) != 0;
}

static inline unsigned char ss_http_lower(unsigned char ch)
{
    return (ch >= 'A' && ch <= 'Z') ? (unsigned char)(ch | 0x20) : ch;
}

/* a[0..n) equals the NUL-terminated lit, ignoring ASCII case. */
bool ss_http_eq_nocase(const char *a, size_t n, const char *lit);

/*
 * One field line without its CRLF: field-name ":" OWS field-value OWS.
 * Fills f with the name and the trimmed value. Returns 0 or
 * SS_HTTP_E_FIELD_NAME / _FIELD_NAME_SPACE / _FIELD_VALUE / _OBS_FOLD.
 */
int ss_http_field_line(const char *line, size_t n, struct ss_http_field *f);

/* The first of nfields fields named name (case-insensitive) at or after
 * index from, or -1. */
int ss_http_find_field(const struct ss_http_field *fields, int nfields, const char *name,
                       int from);

/*
 * A walk over a comma-separated list (RFC 9110 §5.6.1, `#rule`): each call
 * yields the next element with surrounding OWS trimmed, skipping empty
 * elements unless keep_empty (then "" is one empty element and "a," two). Commas inside a quoted-string do not split.
 * Returns false at the end.
 */
struct ss_http_list {
    const char *pos;
    const char *end;
    bool done;
};

static inline void ss_http_list_init(struct ss_http_list *l, const char *s, size_t n)
{
    l->pos = s;
    l->end = s + n;
    l->done = false;
}

bool ss_http_list_next(struct ss_http_list *l, bool keep_empty, const char **elem,
                       size_t *elem_len);

/* Bytes of a token at s[0..n) (0 when s does not start with one). */
size_t ss_http_token_len(const char *s, size_t n);

/*
 * A quoted-string at s[0..n) (RFC 9110 §5.6.4), s[0] being DQUOTE. Returns
 * its length with both quotes, or 0 when it is unterminated or has a byte
 * a quoted-string may not hold.
 */
size_t ss_http_quoted_len(const char *s, size_t n);

/*
 * 1*DIGIT at s[0..n) into *v, saturating at cap. Returns false on an empty
 * or non-digit string.
 */
bool ss_http_parse_digits(const char *s, size_t n, uint64_t cap, uint64_t *v);

#endif
