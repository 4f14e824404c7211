/* ss_buf.c - growable byte buffer (see ss_buf.h). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "ss_buf.h"

int ss_buf_reserve(struct ss_buf *b, size_t extra)
{
    if (b->cap - b->len >= extra)
        return 0;
    size_t want = b->len + extra;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < want)
        cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p)
        return -ENOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
}

void ss_buf_free(struct ss_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

void ss_buf_consume(struct ss_buf *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}

int ss_buf_append_u64(struct ss_buf *b, uint64_t v)
{
    char tmp[24];
    char *p = tmp + sizeof(tmp);
    do {
        *--p = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return ss_buf_append(b, p, (size_t)(tmp + sizeof(tmp) - p));
}

int ss_buf_append_i64(struct ss_buf *b, int64_t v)
{
    if (v < 0) {
        int rc = ss_buf_append(b, "-", 1);
        if (rc)
            return rc;
        return ss_buf_append_u64(b, (uint64_t)0 - (uint64_t)v);
    }
    return ss_buf_append_u64(b, (uint64_t)v);
}
