/*
 * ss_obj_http.c - an HTTP connection on the objects listener: request
 * heads parsed (http/ss_http_parse.c, strict), routed to GET, HEAD, PUT,
 * DELETE or PURGE of /<bucket>/<key>, keep-alive and pipelining, timeouts,
 * and S3's XML error bodies.
 *
 * What S3 has and this server does not yet (listing, multipart uploads,
 * copies, SigV4, subresources such as ?acl) is refused with S3's
 * NotImplemented error naming it, never half served.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/ss_clock.h"
#include "server/ss_worker.h"
#include "ss_obj_conn.h"

/* ---- responses ---- */

int obj_head_begin(struct ss_conn *c, struct obj_conn *oc, int status)
{
    char line[64];
    int n = snprintf(line, sizeof(line), "HTTP/1.1 %d %s\r\n", status, ss_http_reason(status));
    int rc = ss_buf_append(&c->out, line, (size_t)n);
    rc |= obj_field_date(c, "Date", ss_clock_unix_seconds());
    rc |= obj_field(c, "Server", "SmartSwitch");
    if (!oc->keep_alive)
        rc |= obj_field(c, "Connection", "close");
    return rc ? -ENOMEM : 0;
}

int obj_field(struct ss_conn *c, const char *name, const char *value)
{
    int rc = ss_buf_append_str(&c->out, name);
    rc |= ss_buf_append(&c->out, ": ", 2);
    rc |= ss_buf_append_str(&c->out, value);
    rc |= ss_buf_append(&c->out, "\r\n", 2);
    return rc ? -ENOMEM : 0;
}

int obj_field_u64(struct ss_conn *c, const char *name, uint64_t v)
{
    char num[24];
    snprintf(num, sizeof(num), "%llu", (unsigned long long)v);
    return obj_field(c, name, num);
}

int obj_field_date(struct ss_conn *c, const char *name, int64_t t)
{
    char date[SS_HTTP_DATE_LEN + 1];
    if (ss_http_date_format(t, date, sizeof(date)) < 0)
        return 0; /* a date out of range: leave the field out */
    return obj_field(c, name, date);
}

/* XML character data: the five characters XML reserves, escaped. */
static int append_xml(struct ss_buf *b, const char *s, size_t n)
{
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        switch (s[i]) {
        case '&': rc = ss_buf_append_str(b, "&amp;"); break;
        case '<': rc = ss_buf_append_str(b, "&lt;"); break;
        case '>': rc = ss_buf_append_str(b, "&gt;"); break;
        case '"': rc = ss_buf_append_str(b, "&quot;"); break;
        case '\'': rc = ss_buf_append_str(b, "&apos;"); break;
        default: rc = ss_buf_append(b, s + i, 1);
        }
    }
    return rc;
}

void obj_error(struct ss_conn *c, struct obj_conn *oc, int status, const char *code,
               const char *message, int keep)
{
    obj_error_field(c, oc, status, code, message, keep, NULL, NULL);
}

void obj_error_field(struct ss_conn *c, struct obj_conn *oc, int status, const char *code,
                     const char *message, int keep, const char *field, const char *value)
{
    if (!keep)
        oc->keep_alive = 0;
    if (oc->b)
        atomic_fetch_add_explicit(&oc->b->stats.errors, status != 404, memory_order_relaxed);
    struct ss_buf body = {0};
    int rc = ss_buf_append_str(&body, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>");
    rc |= ss_buf_append_str(&body, code);
    rc |= ss_buf_append_str(&body, "</Code><Message>");
    rc |= append_xml(&body, message, strlen(message));
    rc |= ss_buf_append_str(&body, "</Message>");
    if (oc->name_len) {
        size_t nb = oc->key_off ? oc->key_off - 1 : oc->name_len;
        rc |= ss_buf_append_str(&body, "<BucketName>");
        rc |= append_xml(&body, oc->name, nb);
        rc |= ss_buf_append_str(&body, "</BucketName>");
        if (oc->key_off && oc->key_off < oc->name_len) {
            rc |= ss_buf_append_str(&body, "<Key>");
            rc |= append_xml(&body, oc->name + oc->key_off, oc->name_len - oc->key_off);
            rc |= ss_buf_append_str(&body, "</Key>");
        }
    }
    rc |= ss_buf_append_str(&body, "</Error>\n");
    rc |= obj_head_begin(c, oc, status);
    rc |= obj_field(c, "Content-Type", "application/xml");
    if (field)
        rc |= obj_field(c, field, value);
    rc |= obj_field_u64(c, "Content-Length", oc->head_only ? 0 : body.len);
    rc |= ss_buf_append(&c->out, "\r\n", 2);
    if (!oc->head_only)
        rc |= ss_buf_append(&c->out, body.data, body.len);
    ss_buf_free(&body);
    if (rc)
        oc->keep_alive = 0; /* out of memory: the response may be cut; end here */
}

/* ---- the request target ---- */

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/*
 * "/bucket/key" percent-decoded into oc->name as "bucket/key". Returns 0,
 * -EINVAL for a bad escape, a NUL, or a key that does not fit.
 */
static int parse_path(struct obj_conn *oc, const char *p, size_t n)
{
    oc->name_len = 0;
    oc->key_off = 0;
    size_t i = 1; /* past the leading '/' */
    while (i < n) {
        char ch = p[i++];
        if (ch == '%') {
            if (i + 2 > n || hexval(p[i]) < 0 || hexval(p[i + 1]) < 0)
                return -EINVAL;
            ch = (char)(hexval(p[i]) << 4 | hexval(p[i + 1]));
            i += 2;
            if (ch == '\0')
                return -EINVAL;
        } else if (ch == '/' && !oc->key_off) {
            oc->key_off = oc->name_len + 1; /* the first '/' ends the bucket */
        }
        if (oc->name_len == sizeof(oc->name))
            return -EINVAL;
        oc->name[oc->name_len++] = ch;
    }
    if (oc->key_off && oc->name_len - oc->key_off > 1024)
        return -EINVAL; /* S3's limit on a key */
    return 0;
}

/* Query parameters naming an S3 operation this server does not have yet. */
static const char *unsupported_query(const char *q, size_t n)
{
    static const char *const ops[] = {"uploads", "uploadId", "partNumber", "acl", "tagging",
                                      "versioning", "versionId", "list-type", "delete",
                                      "policy", "lifecycle", "cors", "location", "restore",
                                      "select", "retention", "legal-hold", "torrent",
                                      "attributes", "encryption", "website", "logging"};
    const char *end = q + n;
    while (q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        const char *stop = amp ? amp : end;
        const char *eq = memchr(q, '=', (size_t)(stop - q));
        size_t klen = (size_t)((eq ? eq : stop) - q);
        for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
            if (strlen(ops[i]) == klen && memcmp(ops[i], q, klen) == 0)
                return ops[i];
        q = stop + 1;
    }
    return NULL;
}

static int header_starts(const struct ss_http_req *req, const char *name, const char *prefix)
{
    const struct ss_http_field *f = ss_http_header(req, name);
    size_t n = strlen(prefix);
    return f && f->value_len >= n && strncasecmp(f->value, prefix, n) == 0;
}

/* ---- dispatch ---- */

static int bucket_request(struct ss_conn *c, struct obj_conn *oc, const struct ss_http_req *req)
{
    /* HEAD /bucket is S3's HeadBucket: whether it exists. */
    if (req->method == SS_HTTP_M_HEAD && (!req->query || req->query_len == 0)) {
        obj_head_begin(c, oc, 200);
        obj_field_u64(c, "Content-Length", 0);
        ss_buf_append(&c->out, "\r\n", 2);
        return 0;
    }
    obj_error(c, oc, 501, "NotImplemented", req->method == SS_HTTP_M_GET
              ? "listing a bucket is not implemented yet; address objects by key"
              : "bucket operations are not implemented; buckets are made in the config's "
                "objects.buckets", 1);
    return 0;
}

static int dispatch(struct ss_conn *c, struct obj_conn *oc, const struct ss_http_req *req)
{
    if (req->target_form == SS_HTTP_FORM_ASTERISK || req->path_len == 0 || req->path[0] != '/') {
        obj_error(c, oc, 400, "InvalidURI", "the request target must be /<bucket>/<key>", 1);
        return 0;
    }
    if (parse_path(oc, req->path, req->path_len)) {
        oc->name_len = 0;
        obj_error(c, oc, 400, "InvalidURI", "the path has a bad percent-escape, a NUL, or a "
                  "key longer than 1024 bytes", 1);
        return 0;
    }
    if (oc->name_len == 0) {
        obj_error(c, oc, 501, "NotImplemented", "listing buckets is not implemented", 1);
        return 0;
    }
    size_t nbucket = oc->key_off ? oc->key_off - 1 : oc->name_len;
    oc->b = obj_bucket_find(obj_of(oc), oc->name, nbucket);
    if (!oc->b) {
        obj_error(c, oc, 404, "NoSuchBucket", "the bucket does not exist: buckets are the "
                  "config's objects.buckets", 1);
        return 0;
    }
    atomic_fetch_add_explicit(&oc->b->stats.requests, 1, memory_order_relaxed);
    const char *op = req->query ? unsupported_query(req->query, req->query_len) : NULL;
    if (op) {
        char msg[320];
        /* `aws s3 cp` goes multipart above 8 MB: say how to keep it to one PUT. */
        int multipart = !strcmp(op, "uploads") || !strcmp(op, "uploadId");
        snprintf(msg, sizeof(msg), "the S3 subresource or operation '%s' is not implemented "
                 "yet (single objects only: GET, HEAD, PUT, DELETE)%s", op,
                 multipart ? "; send the object in one PUT (the AWS CLI: aws configure set "
                             "default.s3.multipart_threshold 5GB)" : "");
        obj_error(c, oc, 501, "NotImplemented", msg, req->method != SS_HTTP_M_PUT);
        return 0;
    }
    if (header_starts(req, "authorization", "AWS4-HMAC-SHA256") ||
        header_starts(req, "authorization", "AWS ")) {
        obj_error(c, oc, 501, "NotImplemented", "signed requests (SigV4) are not implemented "
                  "yet; send unsigned requests (aws --no-sign-request, botocore UNSIGNED)",
                  req->method != SS_HTTP_M_PUT);
        return 0;
    }
    if (!oc->key_off || oc->key_off == oc->name_len)
        return bucket_request(c, oc, req);
    switch (req->method) {
    case SS_HTTP_M_GET:
    case SS_HTTP_M_HEAD:
        return obj_get(c, oc, req);
    case SS_HTTP_M_DELETE:
        if (oc->b->kind != SS_BUCKET_LOCAL)
            return obj_write_through(c, oc, SS_HTTP_M_DELETE);
        return obj_delete(c, oc, 0);
    case SS_HTTP_M_PUT:
        if (ss_http_header(req, "x-amz-copy-source")) {
            obj_error(c, oc, 501, "NotImplemented", "copying objects is not implemented yet", 0);
            return 0;
        }
        return obj_put_start(c, oc, req);
    case SS_HTTP_M_PURGE:
        return obj_delete(c, oc, 1);
    case SS_HTTP_M_POST:
        obj_error(c, oc, 501, "NotImplemented", "POST (multipart uploads, form uploads) is "
                  "not implemented yet", 0);
        return 0;
    default:
        obj_error(c, oc, 405, "MethodNotAllowed", "objects take GET, HEAD, PUT, DELETE and "
                  "PURGE", req->content_length <= 0 && !req->chunked);
        return 0;
    }
}

static struct obj_conn *conn_state(struct ss_conn *c)
{
    if (c->pstate)
        return c->pstate;
    struct ss_obj_worker *ow = c->w->obj;
    if (!ow)
        return NULL;
    struct obj_conn *oc = calloc(1, sizeof(*oc));
    if (!oc)
        return NULL;
    oc->ow = ow;
    c->pstate = oc;
    return oc;
}

/* A request answered: ready for the next one, or the connection ends. */
static int request_done(struct ss_conn *c, struct obj_conn *oc)
{
    obj_release(oc);
    oc->phase = OBJ_IDLE;
    oc->started_ms = 0;
    oc->b = NULL;
    oc->name_len = 0;
    oc->key_off = 0;
    oc->head_only = 0;
    c->produce = 0;
    return oc->keep_alive ? 0 : SS_OBJ_CLOSE;
}

int ss_obj_http_process(struct ss_conn *c)
{
    struct obj_conn *oc = conn_state(c);
    if (!oc)
        return SS_OBJ_CLOSE;
    const struct ss_objects_settings *s = &obj_of(oc)->s;
    for (;;) {
        if (oc->phase == OBJ_WAIT_FILL)
            return 0; /* the fetch's progress resumes it (ss_obj_worker_tick) */
        if (oc->phase == OBJ_FINISHED) {
            if (request_done(c, oc))
                return SS_OBJ_CLOSE;
            continue;
        }
        if (oc->phase == OBJ_PUT_BODY) {
            int rc = obj_put_body(c, oc);
            if (rc)
                return rc;
            if (oc->phase == OBJ_PUT_BODY || oc->phase == OBJ_WAIT_FILL)
                return 0; /* the rest of the body, or the origin's answer to it */
            if (request_done(c, oc))
                return SS_OBJ_CLOSE;
            continue;
        }
        if (oc->phase == OBJ_GET_BODY) {
            int rc = obj_get_body(c, oc);
            if (rc)
                return rc;
            if (oc->phase == OBJ_GET_BODY || oc->phase == OBJ_WAIT_FILL)
                return 0; /* more once the socket drains, or the fetch moves on */
            if (request_done(c, oc))
                return SS_OBJ_CLOSE;
            continue;
        }
        if (c->rpos == c->rlen)
            return 0;
        /* Replies queue in order; past the high-water mark, let them drain. */
        if (c->out.len + c->out_ref_bytes >= OBJ_STREAM_HIGH_WATER)
            return 0;
        if (!oc->started_ms)
            oc->started_ms = ss_clock_mono_ms();
        struct ss_http_limits lim = {s->max_head_bytes, s->max_fields, s->max_uri_bytes};
        struct ss_http_req req;
        int n = ss_http_parse_head(c->rbuf + c->rpos, c->rlen - c->rpos, &lim, &req);
        if (n == 0)
            return 0;
        oc->keep_alive = 1;
        if (n < 0) {
            /* The framing is unknown now: answer and close. */
            oc->name_len = 0;
            char msg[256];
            snprintf(msg, sizeof(msg), "%s", ss_http_error_text(n));
            int status = ss_http_error_status(n);
            const char *code = status == 431 ? "RequestHeaderSectionTooLarge"
                               : status == 414 ? "KeyTooLongError"
                               : status == 501 ? "NotImplemented"
                               : status == 505 ? "HttpVersionNotSupported" : "BadRequest";
            obj_error(c, oc, status, code, msg, 0);
            c->rpos = c->rlen;
            return SS_OBJ_CLOSE;
        }
        oc->keep_alive = req.keep_alive;
        oc->head_only = req.method == SS_HTTP_M_HEAD;
        oc->head_len = (size_t)n;
        int rc = dispatch(c, oc, &req);
        c->rpos += (size_t)n; /* after dispatch: req points into rbuf */
        if (rc)
            return rc;
        if (oc->phase == OBJ_IDLE && request_done(c, oc))
            return SS_OBJ_CLOSE;
        if (oc->phase == OBJ_GET_BODY)
            c->produce = 1;
    }
}

void ss_obj_conn_closed(struct ss_conn *c)
{
    struct obj_conn *oc = c->pstate;
    if (!oc)
        return;
    if (oc->phase == OBJ_PUT_BODY)
        obj_put_abort(oc);
    obj_cached_conn_closed(oc);
    obj_release(oc);
    if (oc->reading)
        oc->reading->c = NULL; /* its completion gives the read back */
    if (oc->read_done)
        ss_store_read_release(&oc->ow->st, oc->read_done);
    free(oc->put.buf);
    free(oc);
    c->pstate = NULL;
}

int ss_obj_conn_expired(struct ss_conn *c, uint64_t quiet_ms)
{
    struct obj_conn *oc = c->pstate;
    const struct ss_obj_worker *ow = c->w->obj;
    if (!ow)
        return 1;
    const struct ss_objects_settings *s = &ow->o->s;
    int mid_request = (oc && oc->phase != OBJ_IDLE) || c->rlen > c->rpos;
    if (oc && oc->phase == OBJ_GET_BODY)
        return quiet_ms >= s->request_timeout_ms; /* a client that stopped reading */
    if (mid_request)
        return quiet_ms >= s->request_timeout_ms;
    return quiet_ms >= s->keepalive_timeout_ms;
}
