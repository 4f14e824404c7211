/*
 * ss_obj_meta.c - the keys of an object's items and the encoding of its
 * metadata item (see ss_obj_internal.h for the layout of an object).
 *
 * A metadata value is a fixed little-endian header, then the name, then the
 * stored response fields. The header starts with a magic and a format
 * number, so a value that is not ours, or a later format, is refused
 * (treated as no object) instead of misread.
 */
#include <errno.h>
#include <string.h>

#include "ss_obj_internal.h"

#define META_MAGIC 0x424f5353u /* "SSOB" read little-endian */
#define META_FORMAT 1u
/* magic 4, format 2, name_len 2, version 8, size 8, chunk_bytes 4,
 * fields_len 4, mtime 8, stored_at 8, expires_at 8, md5 16, etag_len 2;
 * then the name, the origin's ETag (cached buckets; empty for local ones,
 * whose ETag is the MD5) and the fields. */
#define META_HEADER_BYTES 74u

static void put_le(char *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (char)(v >> (8 * i));
}

static uint64_t get_le(const char *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v |= (uint64_t)(unsigned char)p[i] << (8 * i);
    return v;
}

void obj_meta_key(const char *bucket, size_t nbucket, const char *key, size_t nkey,
                  unsigned char out[OBJ_META_KEY_LEN])
{
    struct ss_md5 x;
    ss_md5_init(&x);
    ss_md5_update(&x, bucket, nbucket);
    ss_md5_update(&x, "", 1); /* NUL: no bucket name contains it */
    ss_md5_update(&x, key, nkey);
    out[0] = 'M';
    ss_md5_final(&x, out + 1);
}

void obj_chunk_key(uint64_t version, uint32_t index, unsigned char out[OBJ_CHUNK_KEY_LEN])
{
    out[0] = 'C';
    /* Big-endian, so one version's chunks sit together in the index, in order. */
    for (int i = 0; i < 8; i++)
        out[1 + i] = (unsigned char)(version >> (56 - 8 * i));
    for (int i = 0; i < 4; i++)
        out[9 + i] = (unsigned char)(index >> (24 - 8 * i));
}

uint32_t obj_nchunks(uint64_t size, uint32_t chunk_bytes)
{
    return (uint32_t)((size + chunk_bytes - 1) / chunk_bytes);
}

long obj_meta_encode(const struct obj_meta *m, char *buf, size_t cap)
{
    size_t need = META_HEADER_BYTES + m->name_len + m->etag_len + m->fields_len;
    if (need > cap || m->name_len > 0xffff || m->etag_len > OBJ_ETAG_MAX ||
        m->fields_len > 0xffffffffu)
        return -ENOSPC;
    char *p = buf;
    put_le(p, META_MAGIC, 4);
    put_le(p + 4, META_FORMAT, 2);
    put_le(p + 6, m->name_len, 2);
    put_le(p + 8, m->version, 8);
    put_le(p + 16, m->size, 8);
    put_le(p + 24, m->chunk_bytes, 4);
    put_le(p + 28, m->fields_len, 4);
    put_le(p + 32, (uint64_t)m->mtime, 8);
    put_le(p + 40, (uint64_t)m->stored_at, 8);
    put_le(p + 48, (uint64_t)m->expires_at, 8);
    memcpy(p + 56, m->md5, 16);
    put_le(p + 72, m->etag_len, 2);
    memcpy(p + META_HEADER_BYTES, m->name, m->name_len);
    memcpy(p + META_HEADER_BYTES + m->name_len, m->etag, m->etag_len);
    memcpy(p + META_HEADER_BYTES + m->name_len + m->etag_len, m->fields, m->fields_len);
    return (long)need;
}

int obj_meta_decode(const char *val, size_t len, struct obj_meta *m)
{
    if (len < META_HEADER_BYTES || get_le(val, 4) != META_MAGIC ||
        get_le(val + 4, 2) != META_FORMAT)
        return -EBADMSG;
    m->name_len = (size_t)get_le(val + 6, 2);
    m->version = get_le(val + 8, 8);
    m->size = get_le(val + 16, 8);
    m->chunk_bytes = (uint32_t)get_le(val + 24, 4);
    m->fields_len = (size_t)get_le(val + 28, 4);
    m->mtime = (int64_t)get_le(val + 32, 8);
    m->stored_at = (int64_t)get_le(val + 40, 8);
    m->expires_at = (int64_t)get_le(val + 48, 8);
    memcpy(m->md5, val + 56, 16);
    m->etag_len = (size_t)get_le(val + 72, 2);
    if (m->chunk_bytes == 0 || m->etag_len > OBJ_ETAG_MAX ||
        META_HEADER_BYTES + m->name_len + m->etag_len + m->fields_len != len)
        return -EBADMSG;
    m->name = val + META_HEADER_BYTES;
    m->etag = m->name + m->name_len;
    m->fields = m->etag + m->etag_len;
    return 0;
}

void obj_hex(const unsigned char *in, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[in[i] >> 4];
        out[2 * i + 1] = hex[in[i] & 15];
    }
    out[2 * n] = '\0';
}

void obj_meta_etag(const struct obj_meta *m, char out[OBJ_ETAG_MAX + 1])
{
    if (m->etag_len) {
        memcpy(out, m->etag, m->etag_len);
        out[m->etag_len] = '\0';
        return;
    }
    out[0] = '"';
    obj_hex(m->md5, 16, out + 1);
    out[33] = '"';
    out[34] = '\0';
}
