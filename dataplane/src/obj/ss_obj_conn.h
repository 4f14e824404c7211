/*
 * ss_obj_conn.h - one HTTP connection's state, shared by the request
 * dispatcher (ss_obj_http.c), the body reader of PUTs (ss_obj_put.c) and
 * the response writer of GETs (ss_obj_get.c).
 *
 * A connection serves one request at a time; pipelined requests wait in
 * the read buffer. Nothing here points into the read buffer once the head
 * has been consumed (the server may move or grow it): what a request needs
 * later (the name, the stored fields) is copied here first.
 */
#ifndef SS_OBJ_CONN_H
#define SS_OBJ_CONN_H

#include "server/ss_conn.h"
#include "ss_obj_internal.h"

enum obj_phase {
    OBJ_IDLE = 0,  /* waiting for (the rest of) a request head */
    OBJ_PUT_BODY,  /* reading a PUT's body into chunks */
    OBJ_GET_BODY,  /* streaming a GET's body from chunks */
    OBJ_WAIT_FILL, /* a cached bucket's GET waiting for a fetch from the origin */
    OBJ_FINISHED,  /* a waiting request's answer is queued: end the request */
};

/* A PUT in progress: the body is cut into chunk items as it arrives. */
struct obj_put {
    uint64_t version;
    uint32_t chunks;         /* chunk items written so far */
    char *buf;               /* chunk_bytes: the chunk being filled */
    uint32_t fill;
    uint64_t size;           /* object bytes received */
    struct ss_md5 md5;
    unsigned char md5_final[16]; /* the body's, once whole */
    /* Body framing: Content-Length bytes left, or chunked. */
    int chunked;
    uint64_t body_left;
    struct ss_http_chunked te;
    char te_trailers[1024];
    /* aws-chunked (S3 clients' streaming uploads) inside the framing. */
    int aws;
    int64_t decoded_length;  /* x-amz-decoded-content-length, -1 when absent */
    struct ss_http_chunked awsd;
    char aws_trailers[1024];
    /* Checksums the client asked us to verify. */
    int want_md5;            /* Content-MD5 given */
    unsigned char content_md5[16];
    int crc_kind;            /* 0 none, 1 crc32, 2 crc32c */
    int crc_in_trailer;      /* the value comes in the aws-chunked trailer */
    uint32_t crc;
    uint32_t crc_expected;
    char fields[OBJ_FIELDS_MAX];
    size_t fields_len;
};

/* A chunk read in flight for a connection; outlives the connection if it
 * closes first (c is then NULL, and the completion only gives the read back). */
struct obj_read {
    struct ss_conn *c;
    struct ss_store_thread *t;
};

struct obj_conn {
    int phase;               /* enum obj_phase */
    int keep_alive;          /* after this request */
    int head_only;           /* HEAD: no body */
    uint64_t started_ms;     /* first byte of the current request (0: idle) */
    struct ss_obj_worker *ow;
    struct obj_bucket *b;
    char name[OBJ_NAME_MAX]; /* bucket '/' key, percent-decoded */
    size_t name_len;
    size_t key_off;          /* where the key starts in name */
    struct obj_put put;
    /* A GET's body: bytes [pos, end) of version, chunk_bytes per chunk; from
     * a fetch in progress `end` follows what is stored, up to `stop` (the
     * end of a range; UINT64_MAX for a whole body). */
    uint64_t g_version;
    uint32_t g_chunk_bytes;
    uint64_t g_pos, g_end, g_stop;
    struct obj_read *reading; /* a chunk read in flight (the GET waits for it) */
    int holding;              /* g_version is held (obj_stream_hold) while streamed */
    struct ss_read *read_done; /* its completed read, to look the chunk up in */
    char meta_buf[OBJ_META_MAX];
    /* A cached bucket's request waiting for (or streaming from) a fetch. */
    struct obj_fill *fill;
    struct obj_conn *wnext, *wprev; /* in the worker's waiting list */
    int have_stale;          /* meta_buf holds the stale copy (stale-if-error) */
    int upload;              /* waiting for a write through (SS_HTTP_M_PUT or _DELETE) */
    int fill_head_sent;      /* the response head is out: the rest is the body */
    int plain_get;           /* a GET with no range or preconditions (see obj_cached_get) */
    int chunked_out;         /* the body goes out chunked (its length is not known yet) */
    struct ss_conn *c;       /* the connection this state belongs to */
    size_t head_len;         /* the request head's bytes, copied below for later */
    char head[SS_HTTP_DEFAULT_MAX_HEAD * 2];
};

static inline struct ss_obj *obj_of(const struct obj_conn *oc)
{
    return oc->ow->o;
}

/* ss_obj_http.c: responses */
/* An S3 error response (code like "NoSuchKey"), closing after it unless
 * keep. HEAD gets the status without the XML body. */
void obj_error(struct ss_conn *c, struct obj_conn *oc, int status, const char *code,
               const char *message, int keep);
/* The same with one more field (a 416's Content-Range). */
void obj_error_field(struct ss_conn *c, struct obj_conn *oc, int status, const char *code,
                     const char *message, int keep, const char *field, const char *value);
/* Status line and the fields every response has (Date, Server, Connection). */
int obj_head_begin(struct ss_conn *c, struct obj_conn *oc, int status);
int obj_field(struct ss_conn *c, const char *name, const char *value);
int obj_field_u64(struct ss_conn *c, const char *name, uint64_t v);
int obj_field_date(struct ss_conn *c, const char *name, int64_t t);

/* ss_obj_put.c */
/* Start a PUT from its head; the body follows in the read buffer. Returns
 * 0 (phase is OBJ_PUT_BODY, or a refusal was answered). */
int obj_put_start(struct ss_conn *c, struct obj_conn *oc, const struct ss_http_req *req);
/* Consume body bytes from c's read buffer. Returns 0 (wait for more, or
 * the PUT finished: phase is OBJ_IDLE) or SS_OBJ_CLOSE. */
int obj_put_body(struct ss_conn *c, struct obj_conn *oc);
/* The connection went away mid-PUT: delete what was written. */
void obj_put_abort(struct obj_conn *oc);

/* ss_obj_get.c */
int obj_get(struct ss_conn *c, struct obj_conn *oc, const struct ss_http_req *req);
/* Look the object up and hold its version against deletion (under the
 * metadata's stripe lock, so a PUT that replaces it dooms it after the
 * hold). 0 (oc->holding set), -ENOENT or -errno. */
int obj_lookup_held(struct obj_conn *oc, struct obj_meta *m);
/* The stream of the held version ended (or never started). */
void obj_release(struct obj_conn *oc);
/* Answer req from the stored object m (preconditions, range, head; the body
 * then streams in obj_get_body). */
int obj_serve(struct ss_conn *c, struct obj_conn *oc, const struct ss_http_req *req,
              const struct obj_meta *m);

/* ss_obj_cached.c: GET and HEAD in a cached bucket (fresh copy, or a fetch) */
int obj_cached_get(struct ss_conn *c, struct obj_conn *oc, const struct ss_http_req *req);
/* A GET streaming from a fill reached what is committed so far: wait for
 * more, or end the body. Returns 0. */
int obj_fill_caught_up(struct ss_conn *c, struct obj_conn *oc);
/* A PUT (its chunks stored, verified) or DELETE in a cached bucket goes to
 * the origin first; the request waits for its answer. Returns 0. */
int obj_write_through(struct ss_conn *c, struct obj_conn *oc, int method);
/* The connection closes: leave the waiting list, drop the fill. */
void obj_cached_conn_closed(struct obj_conn *oc);
/* Queue more of a GET's body. Returns 0 or SS_OBJ_CLOSE (the rest is gone). */
int obj_get_body(struct ss_conn *c, struct obj_conn *oc);
int obj_delete(struct ss_conn *c, struct obj_conn *oc, int purge);

#endif
