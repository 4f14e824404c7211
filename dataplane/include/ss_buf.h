/*
 * ss_buf.h - a growable byte buffer.
 *
 * Used for connection output and for the store's per-thread value scratch.
 * Growth happens off the steady state: a buffer keeps its capacity between
 * requests, so a loop that reuses it does not allocate per request.
 */
#ifndef SS_BUF_H
#define SS_BUF_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct ss_buf {
    char *data;
    size_t len;   /* bytes in use */
    size_t cap;   /* bytes allocated */
};

/* Make room for `extra` more bytes. Returns 0 or -ENOMEM. */
int ss_buf_reserve(struct ss_buf *b, size_t extra);
void ss_buf_free(struct ss_buf *b);
/* Drop the first n bytes (after a partial write). */
void ss_buf_consume(struct ss_buf *b, size_t n);

static inline int ss_buf_append(struct ss_buf *b, const void *p, size_t n)
{
    if (b->cap - b->len < n) {
        int rc = ss_buf_reserve(b, n);
        if (rc)
            return rc;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

static inline int ss_buf_append_str(struct ss_buf *b, const char *s)
{
    return ss_buf_append(b, s, strlen(s));
}

/* Append the decimal form of v. Returns 0 or -ENOMEM. */
int ss_buf_append_u64(struct ss_buf *b, uint64_t v);
int ss_buf_append_i64(struct ss_buf *b, int64_t v);

#endif
