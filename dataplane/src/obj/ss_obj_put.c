/*
 * ss_obj_put.c - PUT of an object: the body, whatever its framing
 * (Content-Length or chunked) and encoding (aws-chunked, the streaming
 * upload S3 clients send with a checksum in a trailer), is cut into chunk
 * items as it arrives, so an object of any size passes through one chunk
 * buffer. The metadata item is written last and is the commit point; the
 * 200 goes out only once both are on the device (ss_store_sync).
 *
 * The body's checksums are verified before the commit: Content-MD5, and
 * x-amz-checksum-crc32 / -crc32c from a field or the aws-chunked trailer.
 * A mismatch, a short body or a framing error deletes what was written and
 * leaves the previous object in place.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

#include "common/ss_base64.h"
#include "common/ss_crc32c.h"
#include "common/ss_clock.h"
#include "server/ss_worker.h"
#include "ss_obj_conn.h"

/* Local buckets are the store of record: their items are never evicted. */
static unsigned write_flags(const struct obj_conn *oc)
{
    return oc->b->kind == SS_BUCKET_LOCAL ? SS_WRITE_PINNED : 0;
}

/* Fields a PUT may set that GET sends back (S3 keeps the same ones). */
static int kept_field(const struct ss_http_field *f)
{
    static const char *const names[] = {"content-type", "cache-control", "content-disposition",
                                        "content-language", "expires"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (f->name_len == strlen(names[i]) && strncasecmp(f->name, names[i], f->name_len) == 0)
            return 1;
    return f->name_len > 11 && strncasecmp(f->name, "x-amz-meta-", 11) == 0;
}

static int add_field(struct obj_put *p, const char *name, size_t nname, const char *value,
                     size_t nvalue)
{
    if (p->fields_len + nname + nvalue + 4 > sizeof(p->fields))
        return -ENOSPC;
    char *d = p->fields + p->fields_len;
    memcpy(d, name, nname);
    d[nname] = ':';
    d[nname + 1] = ' ';
    memcpy(d + nname + 2, value, nvalue);
    memcpy(d + nname + 2 + nvalue, "\r\n", 2);
    p->fields_len += nname + nvalue + 4;
    return 0;
}

/* Content-Encoding without aws-chunked (which only frames the upload). */
static int content_encoding(struct obj_put *p, const struct ss_http_field *f)
{
    const char *v = f->value, *end = f->value + f->value_len;
    char kept[256];
    size_t nkept = 0;
    while (v < end) {
        const char *comma = memchr(v, ',', (size_t)(end - v));
        const char *stop = comma ? comma : end;
        while (v < stop && (*v == ' ' || *v == '\t'))
            v++;
        const char *e = stop;
        while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        size_t n = (size_t)(e - v);
        if (n == 11 && strncasecmp(v, "aws-chunked", 11) == 0) {
            p->aws = 1;
        } else if (n) {
            if (nkept + n + 2 > sizeof(kept))
                return -ENOSPC;
            if (nkept)
                kept[nkept++] = ',';
            memcpy(kept + nkept, v, n);
            nkept += n;
        }
        v = stop + 1;
    }
    return nkept ? add_field(p, "Content-Encoding", 16, kept, nkept) : 0;
}

/* A base64 checksum of n raw bytes; 0 or -EINVAL. */
static int b64_exact(const char *v, size_t len, unsigned char *out, size_t n)
{
    unsigned char tmp[64];
    if (len > sizeof(tmp) * 4 / 3)
        return -EINVAL;
    return ss_base64_decode(v, len, tmp) == n ? (memcpy(out, tmp, n), 0) : -EINVAL;
}

static int crc_value(const char *v, size_t len, uint32_t *out)
{
    unsigned char b[4];
    if (b64_exact(v, len, b, 4))
        return -EINVAL;
    *out = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
    return 0;
}

/* Which checksum the client sends, and where. 0, or an error answered. */
static int checksums(struct ss_conn *c, struct obj_conn *oc, const struct ss_http_req *req)
{
    struct obj_put *p = &oc->put;
    const struct ss_http_field *f;
    if ((f = ss_http_header(req, "content-md5"))) {
        if (b64_exact(f->value, f->value_len, p->content_md5, 16)) {
            obj_error(c, oc, 400, "InvalidDigest", "Content-MD5 is not the base64 of 16 bytes",
                      0);
            return -EINVAL;
        }
        p->want_md5 = 1;
    }
    static const char *const other[] = {"x-amz-checksum-sha1", "x-amz-checksum-sha256",
                                        "x-amz-checksum-crc64nvme"};
    for (size_t i = 0; i < sizeof(other) / sizeof(other[0]); i++) {
        const struct ss_http_field *t = ss_http_header(req, "x-amz-trailer");
        if (ss_http_header(req, other[i]) ||
            (t && t->value_len == strlen(other[i]) &&
             strncasecmp(t->value, other[i], t->value_len) == 0)) {
            char msg[160];
            snprintf(msg, sizeof(msg), "the checksum %s is not supported yet; use CRC32, "
                     "CRC32C or Content-MD5", other[i] + 15);
            obj_error(c, oc, 501, "NotImplemented", msg, 0);
            return -ENOTSUP;
        }
    }
    static const char *const names[] = {"x-amz-checksum-crc32", "x-amz-checksum-crc32c"};
    for (int k = 0; k < 2; k++) {
        if ((f = ss_http_header(req, names[k]))) {
            if (crc_value(f->value, f->value_len, &p->crc_expected)) {
                obj_error(c, oc, 400, "InvalidRequest", "the x-amz-checksum value is not the "
                          "base64 of 4 bytes", 0);
                return -EINVAL;
            }
            p->crc_kind = k + 1;
        }
    }
    if ((f = ss_http_header(req, "x-amz-trailer"))) {
        for (int k = 0; k < 2; k++)
            if (f->value_len == strlen(names[k]) &&
                strncasecmp(f->value, names[k], f->value_len) == 0) {
                p->crc_kind = k + 1;
                p->crc_in_trailer = 1;
            }
    }
    return 0;
}

int obj_put_start(struct ss_conn *c, struct obj_conn *oc, const struct ss_http_req *req)
{
    struct ss_obj *o = obj_of(oc);
    struct obj_put *p = &oc->put;
    char *buf = p->buf; /* kept across requests of this connection */
    memset(p, 0, sizeof(*p));
    p->buf = buf;
    p->decoded_length = -1;
    if (req->content_length < 0 && !req->chunked) {
        obj_error(c, oc, 411, "MissingContentLength", "a PUT needs Content-Length or "
                  "Transfer-Encoding: chunked", 1);
        return 0;
    }
    p->chunked = req->chunked;
    p->body_left = req->content_length > 0 ? (uint64_t)req->content_length : 0;
    for (int i = 0; i < req->nfields; i++) {
        const struct ss_http_field *f = &req->fields[i];
        int rc = 0;
        if (f->name_len == 16 && strncasecmp(f->name, "content-encoding", 16) == 0)
            rc = content_encoding(p, f);
        else if (kept_field(f))
            rc = add_field(p, f->name, f->name_len, f->value, f->value_len);
        if (rc) {
            obj_error(c, oc, 400, "MetadataTooLarge", "the object's fields (Content-Type, "
                      "x-amz-meta-*, ...) are larger than 8 KiB", 0);
            return 0;
        }
    }
    if (!ss_http_header(req, "content-type"))
        add_field(p, "Content-Type", 12, "binary/octet-stream", 19); /* S3's default */
    const struct ss_http_field *f = ss_http_header(req, "x-amz-decoded-content-length");
    if (f) {
        char num[24] = {0};
        memcpy(num, f->value, f->value_len < 23 ? f->value_len : 23);
        char *end;
        unsigned long long v = strtoull(num, &end, 10);
        if (!f->value_len || *end) {
            obj_error(c, oc, 400, "InvalidRequest", "x-amz-decoded-content-length is not a "
                      "number", 0);
            return 0;
        }
        p->decoded_length = (int64_t)v;
    }
    uint64_t declared = p->aws ? (uint64_t)(p->decoded_length < 0 ? 0 : p->decoded_length)
                               : p->body_left;
    if (declared > o->s.max_object_bytes) {
        char msg[128];
        snprintf(msg, sizeof(msg), "the object is larger than this server's limit of %llu "
                 "bytes (objects.max_object_size)", (unsigned long long)o->s.max_object_bytes);
        obj_error(c, oc, 413, "EntityTooLarge", msg, 0);
        return 0;
    }
    if (checksums(c, oc, req))
        return 0;
    if (!p->buf && !(p->buf = malloc(o->chunk_data))) {
        obj_error(c, oc, 503, "SlowDown", "out of memory for the upload; retry", 0);
        return 0;
    }
    if (p->chunked)
        ss_http_chunked_init(&p->te, o->s.max_object_bytes * 2 + 65536, 0, p->te_trailers,
                             sizeof(p->te_trailers));
    if (p->aws)
        ss_http_chunked_init(&p->awsd, o->s.max_object_bytes, 0, p->aws_trailers,
                             sizeof(p->aws_trailers));
    ss_md5_init(&p->md5);
    p->version = ss_store_next_cas(o->store);
    if (req->expect_100_continue)
        ss_buf_append_str(&c->out, "HTTP/1.1 100 Continue\r\n\r\n");
    oc->phase = OBJ_PUT_BODY;
    return 0;
}

/* Write the filled chunk buffer as chunk item p->chunks. 0 or -errno. */
static int flush_chunk(struct obj_conn *oc)
{
    struct obj_put *p = &oc->put;
    struct ss_store_thread *t = &oc->ow->st;
    unsigned char key[OBJ_CHUNK_KEY_LEN];
    obj_chunk_key(p->version, p->chunks, key);
    struct iovec iov = {p->buf, p->fill};
    int rc = obj_put_item(t, key, sizeof(key), &iov, 1, write_flags(oc));
    if (rc == 0) {
        p->chunks++;
        p->fill = 0;
    }
    return rc;
}

/* Object bytes, after every framing and encoding. 0 or -errno. */
static int object_data(struct obj_conn *oc, const char *d, size_t n)
{
    struct obj_put *p = &oc->put;
    uint32_t cb = obj_of(oc)->chunk_data;
    if (p->size + n > obj_of(oc)->s.max_object_bytes)
        return -EFBIG;
    ss_md5_update(&p->md5, d, n);
    if (p->crc_kind == 1)
        p->crc = (uint32_t)crc32_z(p->crc, (const unsigned char *)d, n);
    else if (p->crc_kind == 2)
        p->crc = ss_crc32c(p->crc, d, n);
    p->size += n;
    while (n) {
        size_t take = cb - p->fill < n ? cb - p->fill : n;
        memcpy(p->buf + p->fill, d, take);
        p->fill += (uint32_t)take;
        d += take;
        n -= take;
        if (p->fill == cb) {
            int rc = flush_chunk(oc);
            if (rc)
                return rc;
        }
    }
    return 0;
}

/* Payload bytes (inside the HTTP framing): through the aws-chunked layer
 * when there is one. Returns 0, 1 when the aws-chunked body ended, -errno. */
static int payload(struct obj_conn *oc, const char *d, size_t n)
{
    struct obj_put *p = &oc->put;
    if (!p->aws)
        return object_data(oc, d, n);
    while (n) {
        struct ss_http_chunk_out out;
        int rc = ss_http_chunked_feed(&p->awsd, d, n, &out);
        if (rc < 0)
            return -EPROTO;
        int wrc = out.data_len ? object_data(oc, out.data, out.data_len) : 0;
        if (wrc < 0)
            return wrc;
        d += out.consumed;
        n -= out.consumed;
        if (rc == SS_HTTP_CHUNKED_DONE)
            return n ? -EPROTO : 1; /* bytes after the last chunk: not aws-chunked */
        if (!out.consumed)
            break;
    }
    return 0;
}

static int aws_done(struct obj_put *p)
{
    struct ss_http_chunk_out out;
    return ss_http_chunked_feed(&p->awsd, "", 0, &out) == SS_HTTP_CHUNKED_DONE;
}

/* Delete what this PUT wrote; the previous object stays. */
void obj_put_abort(struct obj_conn *oc)
{
    struct obj_put *p = &oc->put;
    obj_delete_chunks(&oc->ow->st, p->version, 0, p->chunks);
    p->chunks = 0;
    p->fill = 0;
}

static int fail(struct ss_conn *c, struct obj_conn *oc, int status, const char *code,
                const char *msg)
{
    obj_put_abort(oc);
    oc->phase = OBJ_IDLE;
    obj_error(c, oc, status, code, msg, 0);
    return SS_OBJ_CLOSE;
}

/* The whole body is in: verify, commit, answer. */
static int finish(struct ss_conn *c, struct obj_conn *oc)
{
    struct obj_put *p = &oc->put;
    struct ss_obj *o = obj_of(oc);
    if (p->aws && p->decoded_length >= 0 && (uint64_t)p->decoded_length != p->size)
        return fail(c, oc, 400, "IncompleteBody", "the aws-chunked body's length differs from "
                    "x-amz-decoded-content-length");
    unsigned char md5[16];
    ss_md5_final(&p->md5, md5);
    if (p->want_md5 && memcmp(md5, p->content_md5, 16) != 0)
        return fail(c, oc, 400, "BadDigest", "the body's MD5 differs from Content-MD5");
    if (p->crc_kind && p->crc_in_trailer) {
        const char *name = p->crc_kind == 1 ? "x-amz-checksum-crc32" : "x-amz-checksum-crc32c";
        const struct ss_http_field *t = ss_http_chunked_trailer(p->aws ? &p->awsd : &p->te, name);
        if (!t || crc_value(t->value, t->value_len, &p->crc_expected))
            return fail(c, oc, 400, "InvalidRequest", "x-amz-trailer names a checksum the "
                        "body's trailer does not carry");
    }
    if (p->crc_kind && p->crc != p->crc_expected)
        return fail(c, oc, 400, "BadDigest", "the body's checksum differs from the "
                    "x-amz-checksum value sent");
    if (p->fill && flush_chunk(oc))
        return fail(c, oc, 507, "InsufficientStorage", "the objects pool is full");
    memcpy(p->md5_final, md5, 16);
    if (oc->b->kind != SS_BUCKET_LOCAL) {
        oc->phase = OBJ_IDLE;
        return obj_write_through(c, oc, SS_HTTP_M_PUT); /* the origin first */
    }

    struct obj_meta m = {.version = p->version, .size = p->size, .chunk_bytes = o->chunk_data,
                         .mtime = ss_clock_unix_seconds(), .name = oc->name,
                         .name_len = oc->name_len, .fields = p->fields,
                         .fields_len = p->fields_len};
    m.stored_at = m.mtime;
    memcpy(m.md5, md5, 16);
    struct ss_store_thread *t = &oc->ow->st;
    int rc = obj_meta_replace(t, o, oc->b, &m, write_flags(oc));
    if (rc == -ENOSPC && obj_meta_encode(&m, oc->meta_buf, sizeof(oc->meta_buf)) < 0)
        return fail(c, oc, 400, "MetadataTooLarge", "the object's fields do not fit");
    if (rc)
        return fail(c, oc, rc == -ENOSPC ? 507 : 500, rc == -ENOSPC ? "InsufficientStorage"
                    : "InternalError", rc == -ENOSPC ? "the objects pool is full"
                    : "the object could not be stored");
    struct obj_bucket_stats *bs = &oc->b->stats;
    atomic_fetch_add_explicit(&bs->puts, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&bs->bytes_in, p->size, memory_order_relaxed);
    oc->phase = OBJ_IDLE;
    if (ss_store_sync(t)) {
        obj_error(c, oc, 500, "InternalError", "the object could not be written to the device",
                  0);
        return SS_OBJ_CLOSE;
    }
    char etag[OBJ_ETAG_MAX + 1];
    obj_meta_etag(&m, etag);
    obj_head_begin(c, oc, 200);
    obj_field(c, "ETag", etag);
    if (p->crc_kind) {
        unsigned char b[4] = {(unsigned char)(p->crc >> 24), (unsigned char)(p->crc >> 16),
                              (unsigned char)(p->crc >> 8), (unsigned char)p->crc};
        char v[9] = {0};
        ss_base64_encode(b, 4, v);
        obj_field(c, p->crc_kind == 1 ? "x-amz-checksum-crc32" : "x-amz-checksum-crc32c", v);
    }
    obj_field_u64(c, "Content-Length", 0);
    ss_buf_append(&c->out, "\r\n", 2);
    return 0;
}

static int data_error(struct ss_conn *c, struct obj_conn *oc, int rc)
{
    if (rc == -EFBIG)
        return fail(c, oc, 413, "EntityTooLarge", "the object is larger than this server's "
                    "limit (objects.max_object_size)");
    if (rc == -ENOSPC)
        return fail(c, oc, 507, "InsufficientStorage", "the objects pool is full: delete "
                    "objects or grow the pool");
    if (rc == -EPROTO)
        return fail(c, oc, 400, "IncompleteBody", "the aws-chunked body is malformed");
    return fail(c, oc, 500, "InternalError", "the object could not be stored");
}

int obj_put_body(struct ss_conn *c, struct obj_conn *oc)
{
    struct obj_put *p = &oc->put;
    for (;;) {
        const char *in = c->rbuf + c->rpos;
        size_t avail = c->rlen - c->rpos;
        int ended = 0, rc = 0;
        if (!p->chunked) {
            size_t n = avail < p->body_left ? avail : (size_t)p->body_left;
            if (n)
                rc = payload(oc, in, n);
            if (rc < 0)
                return data_error(c, oc, rc);
            c->rpos += n;
            p->body_left -= n;
            ended = p->body_left == 0;
            if (!ended)
                return 0;
        } else {
            struct ss_http_chunk_out out;
            int fr = ss_http_chunked_feed(&p->te, in, avail, &out);
            if (fr < 0)
                return fail(c, oc, ss_http_error_status(fr), "BadRequest",
                            ss_http_error_text(fr));
            if (out.data_len && (rc = payload(oc, out.data, out.data_len)) < 0) {
                c->rpos += out.consumed;
                return data_error(c, oc, rc);
            }
            c->rpos += out.consumed;
            ended = fr == SS_HTTP_CHUNKED_DONE;
            if (!ended) {
                if (out.consumed == 0)
                    return 0;
                continue;
            }
        }
        if (p->aws && !aws_done(p))
            return fail(c, oc, 400, "IncompleteBody", "the body ended before the aws-chunked "
                        "encoding did");
        return finish(c, oc);
    }
}
