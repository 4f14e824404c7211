/*
 * ss_http.h - the HTTP/1.1 protocol toolkit (dataplane/src/http/): a strict
 * request-head parser, an incremental chunked-body decoder, and the field
 * helpers an object cache needs (Range, HTTP-dates, entity-tag lists,
 * Cache-Control, a response-head writer).
 *
 * Everything here is a pure function over caller-owned memory: no I/O, no
 * allocation, no global state, so a worker can call it on a connection's
 * read buffer from its epoll loop. Results point into the caller's buffer
 * (the head parser's slices) or into the input slice (the chunked decoder's
 * data spans); they stay valid while that memory is unchanged.
 *
 * Strictness is deliberate: HTTP request smuggling lives in the gaps where
 * two parsers on one path disagree about where a message ends, so every
 * framing ambiguity RFC 9112 allows a server to reject is rejected (the
 * list is in docs/architecture.md, "HTTP/1.1 parser").
 */
#ifndef SS_HTTP_H
#define SS_HTTP_H

#include <stddef.h>
#include <stdint.h>

/* cffi: begin */
/* Defaults for struct ss_http_limits (a zero member means its default). */
#define SS_HTTP_DEFAULT_MAX_HEAD 8192
#define SS_HTTP_DEFAULT_MAX_FIELDS 100
#define SS_HTTP_DEFAULT_MAX_URI 4096
/* Room for field lines in struct ss_http_req; max_fields is capped at it. */
#define SS_HTTP_FIELDS_MAX 100
/* Trailer field lines struct ss_http_chunked keeps. */
#define SS_HTTP_TRAILERS_MAX 16
/* Bytes of one chunk's extensions kept for the caller (aws-chunked's
 * `;chunk-signature=` plus 64 hex digits fits). */
#define SS_HTTP_CHUNK_EXT_KEEP 128
/* Length of an IMF-fixdate, "Sun, 06 Nov 1994 08:49:37 GMT". */
#define SS_HTTP_DATE_LEN 29

/*
 * Every way a message can be refused: name, code (the enum value is its
 * negative), the status to answer with, and what was wrong. The status
 * and text come from this one list (ss_http_error_status/_text).
 */
#define SS_HTTP_ERRORS(X) \
    X(LINE_ENDING, 1, 400, "a line ends in a bare CR or LF; end every line with CRLF") \
    X(REQUEST_LINE, 2, 400, "the request line is not `method SP target SP version` with one space each") \
    X(METHOD, 3, 501, "the method is longer than any method this server implements") \
    X(TARGET, 4, 400, "the request target has a byte that is not visible ASCII") \
    X(TARGET_FORM, 5, 400, "the request target is not origin-form (/path?query) or absolute-form (http://host/path); `*` is for OPTIONS only") \
    X(URI_TOO_LONG, 6, 414, "the request target is longer than the server's URI limit") \
    X(VERSION, 7, 400, "the version is not HTTP/DIGIT.DIGIT") \
    X(VERSION_UNSUPPORTED, 8, 505, "only HTTP/1.0 and HTTP/1.1 are served") \
    X(FIELD_NAME, 9, 400, "a field name is empty or has a byte that is not a token character") \
    X(FIELD_NAME_SPACE, 10, 400, "whitespace between a field name and its colon") \
    X(FIELD_VALUE, 11, 400, "a field value has a control character (only HTAB is allowed)") \
    X(OBS_FOLD, 12, 400, "a field line starts with whitespace (obsolete line folding); send each field on one line") \
    X(HEAD_TOO_LARGE, 13, 431, "the request head is longer than the server's limit") \
    X(TOO_MANY_FIELDS, 14, 431, "the request has more field lines than the server's limit") \
    X(CONTENT_LENGTH, 15, 400, "Content-Length is not one decimal number, overflows, or its lines disagree") \
    X(CL_AND_TE, 16, 400, "both Content-Length and Transfer-Encoding; send one of them") \
    X(TE_SYNTAX, 17, 400, "Transfer-Encoding is not a list of transfer-coding names") \
    X(TE_NOT_CHUNKED, 18, 400, "the final transfer coding is not chunked, or chunked is applied twice") \
    X(TE_UNKNOWN, 19, 501, "a transfer coding other than chunked") \
    X(TE_HTTP10, 20, 400, "Transfer-Encoding in an HTTP/1.0 request; send HTTP/1.1 or Content-Length") \
    X(HOST_MISSING, 21, 400, "an HTTP/1.1 request without a Host field") \
    X(HOST_DUPLICATE, 22, 400, "more than one Host field") \
    X(HOST_INVALID, 23, 400, "the Host field is not host[:port]") \
    X(CHUNK_SIZE, 24, 400, "a chunk size is not 1 to 16 hex digits") \
    X(CHUNK_EXT, 25, 400, "a chunk extension is malformed or longer than the server's limit") \
    X(CHUNK_CRLF, 26, 400, "chunk data is not followed by CRLF") \
    X(BODY_TOO_LARGE, 27, 413, "the chunked body is longer than the server's limit") \
    X(TRAILER_TOO_LARGE, 28, 431, "the trailer fields do not fit the server's trailer buffer")

enum ss_http_error {
    SS_HTTP_OK = 0,
#define SS_HTTP_ERROR_ENUM(name, code, status, text) SS_HTTP_E_##name = -code,
    SS_HTTP_ERRORS(SS_HTTP_ERROR_ENUM)
#undef SS_HTTP_ERROR_ENUM
};

/* The status code to answer a negative ss_http_* result with (500 for a
 * code that is not an ss_http_error). */
int ss_http_error_status(int rc);
/* What was wrong, for a log line or a response body. */
const char *ss_http_error_text(int rc);

/* Methods this server knows by name; anything else that is a token is
 * OTHER (the method slice holds it), answered 501 by the server. */
#define SS_HTTP_METHODS(X) \
    X(GET, "GET") X(HEAD, "HEAD") X(PUT, "PUT") X(DELETE, "DELETE") \
    X(POST, "POST") X(OPTIONS, "OPTIONS") X(PURGE, "PURGE")

enum ss_http_method {
#define SS_HTTP_METHOD_ENUM(name, str) SS_HTTP_M_##name,
    SS_HTTP_METHODS(SS_HTTP_METHOD_ENUM)
#undef SS_HTTP_METHOD_ENUM
    SS_HTTP_M_OTHER
};

/* "GET" ... , or "OTHER". */
const char *ss_http_method_name(int method);

enum ss_http_target_form {
    SS_HTTP_FORM_ORIGIN = 0,   /* /path?query */
    SS_HTTP_FORM_ABSOLUTE = 1, /* http://host/path?query (RFC 9112 §3.2.2) */
    SS_HTTP_FORM_ASTERISK = 2, /* OPTIONS * */
};

struct ss_http_limits {
    uint32_t max_head;   /* bytes through the blank line; over it: 431 */
    uint32_t max_fields; /* field lines; over it: 431 (capped at SS_HTTP_FIELDS_MAX) */
    uint32_t max_uri;    /* request-target bytes; over it: 414 */
};

/* One field line: name and value point into the parsed buffer, the value
 * without leading or trailing whitespace. */
struct ss_http_field {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
};

struct ss_http_req {
    int method;             /* enum ss_http_method */
    int version;            /* 10 or 11 */
    int target_form;        /* enum ss_http_target_form */
    const char *method_str; size_t method_len;
    const char *target; size_t target_len;  /* as sent */
    const char *path; size_t path_len;      /* "/" when absolute-form has no path */
    const char *query; size_t query_len;    /* after '?'; NULL when there is no '?' */
    const char *host; size_t host_len;      /* the Host field, or absolute-form's authority */
    int64_t content_length; /* -1 without Content-Length */
    int chunked;            /* Transfer-Encoding: chunked */
    int keep_alive;         /* 1.1: unless Connection: close; 1.0: only with keep-alive */
    int expect_100_continue;
    int nfields;
    struct ss_http_field fields[SS_HTTP_FIELDS_MAX];
};

/* The limits in force when a member is 0 (or lim is NULL). */
void ss_http_limits_default(struct ss_http_limits *lim);

/*
 * Parse a request head from the start of buf (a connection's read buffer).
 * Call again with more bytes when it returns 0: the head is parsed from the
 * start each time, which costs at most max_head bytes of scanning.
 *
 * Returns the bytes of the head (leading empty lines, request line, field
 * lines, blank line) when it is complete and valid; 0 when more bytes are
 * needed; or a negative enum ss_http_error. A result depends only on the
 * bytes up to where it was decided, so for any prefix of buf the result is
 * 0 or the same as for buf. *out is complete only on a positive result.
 */
int ss_http_parse_head(const char *buf, size_t len, const struct ss_http_limits *lim,
                       struct ss_http_req *out);

/* The first field named name (case-insensitive), or NULL; _next gives the
 * ones after `after` (repeated fields such as If-None-Match). */
const struct ss_http_field *ss_http_header(const struct ss_http_req *req, const char *name);
const struct ss_http_field *ss_http_header_next(const struct ss_http_req *req, const char *name,
                                                const struct ss_http_field *after);

/* ---- chunked bodies (RFC 9112 §7.1; also aws-chunked) ---------------------------------- */

enum ss_http_chunked_result {
    SS_HTTP_CHUNKED_MORE = 0, /* keep feeding: a data span, or all input eaten */
    SS_HTTP_CHUNKED_DONE = 1, /* the last chunk and trailer are in; body complete */
};

struct ss_http_chunked {
    /* Decoder state: set by ss_http_chunked_init, read-only to callers. */
    int state;
    int error;             /* sticky once set */
    uint32_t size_digits;
    uint64_t chunk_left;   /* data bytes still to come in this chunk */
    uint64_t body_len;     /* data bytes decoded so far */
    uint64_t max_body;
    uint32_t max_ext;
    uint32_t ext_len;      /* extension bytes seen in this chunk-size line */
    size_t line_start;     /* where the current trailer line starts in trailer_buf */
    /* The current chunk's size line after its digits (its extensions), when it fits. */
    char ext[SS_HTTP_CHUNK_EXT_KEEP];
    uint32_t ext_kept;
    int ext_truncated;
    /* Trailer fields, pointing into the caller's trailer buffer. */
    char *trailer_buf;
    size_t trailer_cap;
    size_t trailer_len;
    int ntrailers;
    struct ss_http_field trailers[SS_HTTP_TRAILERS_MAX];
};

/* One call's output: a run of decoded data (inside the input slice, or
 * NULL/0) and the input bytes consumed, data included. */
struct ss_http_chunk_out {
    const char *data;
    size_t data_len;
    size_t consumed;
};

/*
 * Start decoding a body: at most max_body data bytes (0: no limit but
 * 2^64-1), at most max_ext bytes of extensions per chunk (0: 4096), and
 * trailer fields stored in trailer_buf (cap bytes; 0 refuses any trailer
 * field with TRAILER_TOO_LARGE).
 */
void ss_http_chunked_init(struct ss_http_chunked *c, uint64_t max_body, uint32_t max_ext,
                          char *trailer_buf, size_t trailer_cap);

/*
 * Feed the next len bytes of the body. Framing is consumed into the state;
 * the call stops after the first run of data (out->data, out->data_len) or
 * when the input is used up or the body ends. Bytes after the body's end
 * are not consumed (they belong to the next request).
 *
 * Returns SS_HTTP_CHUNKED_MORE, SS_HTTP_CHUNKED_DONE (then trailers are
 * complete and later calls consume nothing), or a negative enum
 * ss_http_error, which every later call returns too.
 */
int ss_http_chunked_feed(struct ss_http_chunked *c, const char *in, size_t len,
                         struct ss_http_chunk_out *out);

/* The first trailer field named name (case-insensitive), or NULL. */
const struct ss_http_field *ss_http_chunked_trailer(const struct ss_http_chunked *c,
                                                    const char *name);

/*
 * The value of extension `name` of the current chunk (after its size line
 * was read, e.g. "chunk-signature"), unquoted when it was a plain token.
 * Returns 0 and the value, -ENOENT when absent, or -E2BIG when the
 * extensions were longer than SS_HTTP_CHUNK_EXT_KEEP and so not kept.
 */
int ss_http_chunked_ext(const struct ss_http_chunked *c, const char *name,
                        const char **value, size_t *value_len);

/* ---- field helpers ------------------------------------------------------------------- */

enum ss_http_range_result {
    SS_HTTP_RANGE_OK = 0,            /* serve 206 bytes first..last */
    SS_HTTP_RANGE_IGNORE = 1,        /* invalid, several ranges, other unit: serve 200 */
    SS_HTTP_RANGE_UNSATISFIABLE = 2, /* 416, with ss_http_content_range_unsatisfied */
};

/* A Range field value against a representation of size bytes (RFC 9110
 * §14.1.2, one range only). On OK, 0 <= first <= last < size. */
int ss_http_range_parse(const char *value, size_t len, uint64_t size, uint64_t *first,
                        uint64_t *last);

/* Content-Range values, NUL-terminated: "bytes first-last/size", and for a
 * 416 "bytes", a space, "*", "/" and size. Return the length written
 * (without the NUL) or -ENOSPC. */
int ss_http_content_range(char *out, size_t cap, uint64_t first, uint64_t last, uint64_t size);
int ss_http_content_range_unsatisfied(char *out, size_t cap, uint64_t size);

/*
 * An HTTP-date in any of its three forms (IMF-fixdate, RFC 850, asctime;
 * RFC 9110 §5.6.7) to seconds since the epoch. now (seconds) places a two-
 * digit RFC 850 year within 50 years of it. Returns 0 or -EINVAL.
 */
int ss_http_date_parse(const char *value, size_t len, int64_t now, int64_t *t);
/* t as an IMF-fixdate, NUL-terminated (SS_HTTP_DATE_LEN + 1 bytes). Returns
 * SS_HTTP_DATE_LEN, -ENOSPC, or -EINVAL for a year outside 0..9999. */
int ss_http_date_format(int64_t t, char *out, size_t cap);

/*
 * Entity-tag list conditions (RFC 9110 §13.1.1, §13.1.2). etag is the
 * selected representation's tag as sent in ETag ("\"abc\"" or "W/\"abc\""),
 * NULL when there is none. Each returns 1 when the list matches (If-Match:
 * strong comparison; If-None-Match: weak comparison; `*` matches any
 * current representation), 0 when it does not, -EINVAL when the list or
 * etag is malformed.
 */
int ss_http_if_match(const char *list, size_t len, const char *etag, size_t etag_len);
int ss_http_if_none_match(const char *list, size_t len, const char *etag, size_t etag_len);

/* Cache-Control directives (RFC 9111 §5.2); -1 for a number not given. */
struct ss_http_cache_control {
    int no_store, no_cache, private, public, must_revalidate, proxy_revalidate;
    int64_t max_age, s_maxage, stale_while_revalidate, stale_if_error;
};

void ss_http_cache_control_init(struct ss_http_cache_control *cc);
/*
 * Add one Cache-Control field value to cc (call once per field line, after
 * _init). Unknown directives are skipped, a quoted number is read, a
 * malformed number leaves its directive unset, a repeated number keeps the
 * first, and one over 2^31 reads as 2^31 (RFC 9111 §1.2.2). Returns the
 * number of directives recognised.
 */
int ss_http_cache_control_parse(const char *value, size_t len, struct ss_http_cache_control *cc);

/* ---- responses from an origin (http/ss_http_response.c) ------------------------------ */

/* How a response's body ends (RFC 9112 section 6.3). */
enum ss_http_body {
    SS_HTTP_BODY_NONE = 0,        /* 1xx, 204, 304, or the answer to HEAD */
    SS_HTTP_BODY_LENGTH = 1,      /* Content-Length bytes */
    SS_HTTP_BODY_CHUNKED = 2,     /* chunked (ss_http_chunked_*) */
    SS_HTTP_BODY_UNTIL_CLOSE = 3, /* everything until the server closes */
};

struct ss_http_resp {
    int status;             /* 100..999 */
    int version;            /* 10 or 11 */
    int framing;            /* enum ss_http_body */
    int keep_alive;         /* the connection may carry another request after this one */
    int64_t content_length; /* SS_HTTP_BODY_LENGTH: the body's bytes; else -1 */
    int nfields;
    struct ss_http_field fields[SS_HTTP_FIELDS_MAX];
};

/*
 * Parse a response head from the start of buf; head_request: it answers a
 * HEAD (no body whatever the fields say). Returns the head's length when
 * complete, 0 when more bytes are needed, or a negative enum ss_http_error
 * (a malformed or ambiguous head: the response must not be used).
 */
int ss_http_parse_response_head(const char *buf, size_t len, int head_request,
                                const struct ss_http_limits *lim, struct ss_http_resp *out);
/* The first field named name (case-insensitive), or NULL. */
const struct ss_http_field *ss_http_resp_header(const struct ss_http_resp *r, const char *name);

/* ---- response heads ------------------------------------------------------------------ */

/* A response head built into a caller's buffer; the first failure sticks. */
struct ss_http_writer {
    char *buf;
    size_t cap;
    size_t len;
    int error;  /* 0, -ENOSPC, or -EINVAL (a name or value that would break framing) */
};

/* The reason phrase for status ("" for one not known). */
const char *ss_http_reason(int status);
void ss_http_writer_init(struct ss_http_writer *w, char *buf, size_t cap);
/* "HTTP/1.1 <status> <reason>\r\n" */
void ss_http_write_status(struct ss_http_writer *w, int status);
/* "<name>: <value>\r\n"; a name that is not a token, or a value with CR, LF
 * or another control character but HTAB, sets -EINVAL. */
void ss_http_write_field(struct ss_http_writer *w, const char *name, const char *value,
                         size_t value_len);
void ss_http_write_field_u64(struct ss_http_writer *w, const char *name, uint64_t value);
/* Date-valued field (Date, Last-Modified, Expires) as an IMF-fixdate. */
void ss_http_write_field_date(struct ss_http_writer *w, const char *name, int64_t t);
/* The blank line. Returns the head's length, or the error that stuck. */
int ss_http_write_end(struct ss_http_writer *w);
/* cffi: end */

#endif
