/*
 * ss_obj_origin.h - private to the origin client (ss_obj_origin.c: the
 * connection, the request, its events; ss_obj_origin_answer.c: what is done
 * with the answer).
 */
#ifndef SS_OBJ_ORIGIN_H
#define SS_OBJ_ORIGIN_H

#include <sys/types.h>

#include "ss_obj_internal.h"

#define ORIGIN_IDLE_MAX 32u   /* kept-alive connections per worker */
#define ORIGIN_RBUF 65536u    /* read buffer; a head must fit in it */

enum { ORG_CONNECTING = 0, ORG_TLS, ORG_SENDING, ORG_UPLOAD, ORG_HEAD, ORG_BODY };

struct obj_origin {
    struct obj_origin *next;
    int fd;
    struct ssl_st *ssl;            /* an https origin's session, else NULL */
    uint32_t watching;             /* the epoll events asked for */
    int state;
    struct obj_bucket *b;
    struct obj_fill *f;            /* NULL while idle */
    int reused;                    /* a kept-alive connection: the origin may have closed it */
    int got_bytes;                 /* any byte of the answer arrived */
    int conditional;               /* validators were sent (a revalidation) */
    uint64_t deadline_ms;
    int method;                    /* SS_HTTP_M_GET, or a write through: PUT, DELETE */
    uint32_t up_next;              /* PUT: the next chunk to send */
    uint32_t up_off, up_len;       /* PUT: the part of org->chunk still to send */
    char req[OBJ_FIELDS_MAX + 4096];
    size_t req_len, req_sent;
    char rbuf[ORIGIN_RBUF];
    size_t rlen;
    struct ss_http_resp resp;
    uint64_t body_left;            /* SS_HTTP_BODY_LENGTH */
    struct ss_http_chunked te;
    char trailers[512];
    int cacheable;
    int dram_first;                /* chunks kept in DRAM only (obj_dram_first) */
    int64_t lifetime, age;
    char *chunk;
    uint32_t fill;
    uint32_t chunks;
    uint64_t total;
    char name[OBJ_NAME_MAX];       /* bucket '/' key */
    size_t name_len, key_off;
};

/* ss_obj_origin.c */
/* The fetch failed: its chunks deleted, the fill failed with status. */
void org_fail(struct ss_obj_worker *ow, struct obj_origin *org, int status);
/* The fetch ends; the connection is kept when keep and the answer allow it. */
void org_finish(struct ss_obj_worker *ow, struct obj_origin *org, int keep);

/* ss_obj_origin_tls.c */
/* b's client context: peers verified against ca_file (NULL: the system's
 * trust store) and against name (a host name, sent as SNI, or an address).
 * 0, or -errno with err naming the bucket and the reason. */
int obj_tls_context(struct obj_bucket *b, const char *name, const char *ca_file, char *err,
                    size_t errlen);
void obj_tls_context_free(struct obj_bucket *b);
/* A session on org->fd (connecting): 0 or -ENOMEM. */
int obj_tls_start(struct obj_origin *org);
void obj_tls_end(struct obj_origin *org);
/* One handshake step: 1 done, 0 to wait for *want, -errno (a bad certificate). */
int obj_tls_handshake(struct obj_origin *org, uint32_t *want);
/* recv and send on the connection, through TLS when it has it: bytes moved,
 * 0 (recv: the origin closed), -EAGAIN to wait for *want, -errno. */
ssize_t org_recv(struct obj_origin *org, void *buf, size_t len, uint32_t *want);
ssize_t org_send(struct obj_origin *org, const void *buf, size_t len, uint32_t *want);
/* Decrypted bytes are waiting inside TLS (no epoll event will say so). */
int org_pending(const struct obj_origin *org);

/* ss_obj_sigv4.c */
/* The fields that sign a request to b's S3 endpoint (AWS Signature Version
 * 4: x-amz-date, x-amz-content-sha256, Authorization), written to out as
 * header lines: their length, or -ENAMETOOLONG, -E2BIG (too many x-amz-*
 * fields), -ENOMEM. target: the request target as sent; fields: the other
 * header lines sent (a PUT's), whose x-amz-* ones are signed too. */
int obj_sigv4_fields(const struct obj_bucket *b, const char *method, const char *target,
                     size_t ntarget, const char *fields, size_t nfields, int64_t now,
                     char *out, size_t cap);

/* ss_obj_origin_answer.c */
/* A write through's answer (PUT, DELETE): the local copy follows it. */
void org_write_answer(struct ss_obj_worker *ow, struct obj_origin *org);
/* The answer's head is in org->rbuf[0, n). 1 when the fetch ended, else 0. */
int org_on_head(struct ss_obj_worker *ow, struct obj_origin *org, int n);
/* Body bytes in org->rbuf: 1 when the body ended, 0 for more, -errno. */
int org_body_bytes(struct ss_obj_worker *ow, struct obj_origin *org);
/* Where the next body bytes can be received straight into the chunk being
 * filled (a Content-Length body, nothing buffered), saving a copy through
 * rbuf: the address and *room bytes, or NULL. */
char *org_body_window(struct obj_origin *org, size_t *room);
/* got bytes were received at org_body_window: 1 when the body ended, 0 for
 * more, -errno. */
int org_body_received(struct ss_obj_worker *ow, struct obj_origin *org, size_t got);
/* The whole body is in: store it when it may be; the waiters finish. */
void org_complete(struct ss_obj_worker *ow, struct obj_origin *org);

#endif
