/*
 * ss_http_fuzz.c - a seeded mutation fuzzer for the http plane
 * (dataplane/src/http/), built with ASan and UBSan by
 * tests/unit/test_http_fuzz.py, which says how to run it longer.
 *
 *   ss_http_fuzz SEED ITERATIONS SECONDS FILE...   fuzz from a corpus
 *   ss_http_fuzz --selftest                        read past a buffer (the
 *                                                  test checks ASan says so)
 *
 * A corpus file's name says which function it feeds: head-*, chunked-*,
 * range-*, date-*, etag-* (list, LF, etag) or cc-*. Each iteration takes
 * one entry, stacks a few random mutations, copies the result into a heap
 * block of exactly its length (so a read past it is an ASan report), and
 * checks the invariants beside each target below. A broken invariant
 * prints the seed, the iteration and the input, writes the input to
 * crash-SEED-ITERATION.bin, and aborts. The run is deterministic for a
 * seed; SECONDS only cuts it short.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ss_http.h"

#define MAX_INPUT (16 * 1024)
#define MAX_ENTRIES 256

enum kind { K_HEAD, K_CHUNKED, K_RANGE, K_DATE, K_ETAG, K_CC, K__COUNT };
static const char *const kind_prefix[K__COUNT] = {"head-", "chunked-", "range-",
                                                  "date-", "etag-", "cc-"};

struct entry {
    enum kind kind;
    char *data;
    size_t len;
};

static struct entry corpus[MAX_ENTRIES];
static int ncorpus;
static uint64_t run_seed, iteration;
static const unsigned char *cur_input;
static size_t cur_len;
static enum kind cur_kind;

/* ---- failure ------------------------------------------------------------------------ */

static void fail(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "FAIL seed=%" PRIu64 " iteration=%" PRIu64 " kind=%s: ", run_seed,
            iteration, kind_prefix[cur_kind]);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\ninput (%zu bytes):", cur_len);
    for (size_t i = 0; i < cur_len; i++)
        fprintf(stderr, "%s%02x", i % 32 ? " " : "\n  ", cur_input[i]);
    fputc('\n', stderr);
    char name[96];
    snprintf(name, sizeof(name), "crash-%" PRIu64 "-%" PRIu64 ".bin", run_seed, iteration);
    FILE *f = fopen(name, "wb");
    if (f) {
        fwrite(cur_input, 1, cur_len, f);
        fclose(f);
    }
    abort();
}

#define CHECK(cond, ...) do { if (!(cond)) fail(__VA_ARGS__); } while (0)

/* ---- randomness (xorshift64*: fast, and the same stream on every machine) ---------------- */

static uint64_t rng_state;

static uint64_t rnd(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * UINT64_C(2685821657736338717);
}

static size_t below(size_t n)
{
    return n ? (size_t)(rnd() % n) : 0;
}

/* A heap copy of exactly n bytes (malloc(0) may be NULL: keep one byte). */
static char *exact_copy(const void *p, size_t n)
{
    char *c = malloc(n ? n : 1);
    if (c == NULL) {
        perror("malloc");
        exit(2);
    }
    memcpy(c, p, n);
    return c;
}

/* ---- mutations --------------------------------------------------------------------------- */

static const char interesting[] = "\r\n \t:;,=\"-0123456789abcdefABCDEFW/*?#%@[]\\\x00\x7f\x80\xff";
static const char *const dictionary[] = {
    "\r\n", "\r\n\r\n", "\r", "\n", "Transfer-Encoding: chunked\r\n", "Content-Length: 5\r\n",
    "Host: h\r\n", " HTTP/1.1", "HTTP/1.0", "GET ", "OPTIONS * ", "http://h", ";ext=\"q\"",
    ";chunk-signature=", "0\r\n\r\n", "5\r\nhello\r\n", "bytes=", "-", "GMT", ", ", "W/\"",
    "max-age=", "\"", "ffffffffffffffff", "99999999999999999999", "Sunday, ", " Nov ",
    "Connection: close\r\n", "Expect: 100-continue\r\n", "x-amz-checksum-crc32: a\r\n",
};

static size_t mutate(unsigned char *b, size_t n)
{
    int rounds = 1 + (int)below(4);
    for (int r = 0; r < rounds; r++) {
        size_t at = below(n + 1);
        switch (below(9)) {
        case 0: /* flip a bit */
            if (n)
                b[below(n)] ^= (unsigned char)(1u << below(8));
            break;
        case 1: /* overwrite with an interesting byte */
            if (n)
                b[below(n)] = (unsigned char)interesting[below(sizeof(interesting) - 1)];
            break;
        case 2: /* insert a byte */
            if (n < MAX_INPUT) {
                memmove(b + at + 1, b + at, n - at);
                b[at] = below(2) ? (unsigned char)rnd()
                                 : (unsigned char)interesting[below(sizeof(interesting) - 1)];
                n++;
            }
            break;
        case 3: { /* delete a run */
            size_t k = 1 + below(8);
            if (at < n) {
                k = k > n - at ? n - at : k;
                memmove(b + at, b + at + k, n - at - k);
                n -= k;
            }
            break;
        }
        case 4: { /* copy a run elsewhere */
            if (!n)
                break;
            size_t from = below(n), k = 1 + below(n - from);
            if (n + k <= MAX_INPUT) {
                unsigned char tmp[MAX_INPUT];
                memcpy(tmp, b + from, k);
                memmove(b + at + k, b + at, n - at);
                memcpy(b + at, tmp, k);
                n += k;
            }
            break;
        }
        case 5: { /* insert a dictionary word */
            const char *w = dictionary[below(sizeof(dictionary) / sizeof(dictionary[0]))];
            size_t k = strlen(w);
            if (n + k <= MAX_INPUT) {
                memmove(b + at + k, b + at, n - at);
                memcpy(b + at, w, k);
                n += k;
            }
            break;
        }
        case 6: { /* splice in the tail of another entry */
            const struct entry *e = &corpus[below((size_t)ncorpus)];
            size_t from = below(e->len + 1), k = e->len - from;
            if (at + k <= MAX_INPUT) {
                memcpy(b + at, e->data + from, k);
                n = at + k;
            }
            break;
        }
        case 7: /* truncate */
            n = at;
            break;
        default: { /* repeat a run many times (long lines, many fields) */
            if (!n)
                break;
            size_t from = below(n), k = 1 + below(n - from > 32 ? 32 : n - from);
            size_t times = 1 + below(400);
            while (times-- && n + k <= MAX_INPUT) {
                memmove(b + from + k, b + from, n - from);
                n += k;
            }
            break;
        }
        }
    }
    return n;
}

/* ---- the head parser --------------------------------------------------------------------- */

static bool inside(const char *base, size_t n, const char *p, size_t len)
{
    return p >= base && len <= n && (size_t)(p - base) <= n - len;
}

#define OFF(p, base) ((p) ? (ptrdiff_t)((p) - (base)) : (ptrdiff_t)-1)

static bool same_req(const struct ss_http_req *a, const char *ba, const struct ss_http_req *b,
                     const char *bb)
{
    if (a->method != b->method || a->version != b->version ||
        a->target_form != b->target_form || a->content_length != b->content_length ||
        a->chunked != b->chunked || a->keep_alive != b->keep_alive ||
        a->expect_100_continue != b->expect_100_continue || a->nfields != b->nfields ||
        OFF(a->target, ba) != OFF(b->target, bb) || a->target_len != b->target_len ||
        OFF(a->query, ba) != OFF(b->query, bb) || a->query_len != b->query_len ||
        OFF(a->host, ba) != OFF(b->host, bb) || a->host_len != b->host_len ||
        a->path_len != b->path_len)
        return false;
    for (int i = 0; i < a->nfields; i++) {
        const struct ss_http_field *x = &a->fields[i], *y = &b->fields[i];
        if (OFF(x->name, ba) != OFF(y->name, bb) || x->name_len != y->name_len ||
            OFF(x->value, ba) != OFF(y->value, bb) || x->value_len != y->value_len)
            return false;
    }
    return true;
}

static void check_req(const struct ss_http_req *q, const char *buf, size_t r)
{
    CHECK(q->nfields >= 0 && q->nfields <= SS_HTTP_FIELDS_MAX, "nfields %d", q->nfields);
    CHECK(q->version == 10 || q->version == 11, "version %d", q->version);
    CHECK(q->method >= 0 && q->method <= SS_HTTP_M_OTHER, "method %d", q->method);
    CHECK(q->content_length >= -1, "content_length %" PRId64, q->content_length);
    CHECK(!q->chunked || q->content_length == -1, "chunked with a content length");
    CHECK(inside(buf, r, q->method_str, q->method_len), "method outside the head");
    CHECK(inside(buf, r, q->target, q->target_len), "target outside the head");
    bool static_slash = q->target_form == SS_HTTP_FORM_ABSOLUTE && q->path_len == 1 &&
                        !inside(buf, r, q->path, 1);
    CHECK(static_slash || inside(buf, r, q->path, q->path_len), "path outside the head");
    CHECK(!q->query || inside(buf, r, q->query, q->query_len), "query outside the head");
    CHECK(!q->host || inside(buf, r, q->host, q->host_len), "host outside the head");
    CHECK(q->version == 10 || q->host, "HTTP/1.1 head without a host");
    for (int i = 0; i < q->nfields; i++) {
        const struct ss_http_field *f = &q->fields[i];
        CHECK(f->name_len > 0 && inside(buf, r, f->name, f->name_len), "field name %d", i);
        CHECK(inside(buf, r, f->value, f->value_len), "field value %d", i);
        /* The lookup finds this field or an earlier one of the same name. */
        char name[256];
        if (f->name_len < sizeof(name)) {
            memcpy(name, f->name, f->name_len);
            name[f->name_len] = '\0';
            const struct ss_http_field *g = ss_http_header(q, name);
            CHECK(g && g <= f && g->name_len == f->name_len, "lookup of field %d", i);
        }
    }
}

static int parse_copy(const char *data, size_t n, const struct ss_http_limits *lim,
                      struct ss_http_req *q, char **copy)
{
    *copy = exact_copy(data, n);
    return ss_http_parse_head(*copy, n, lim, q);
}

static void fuzz_head(const char *data, size_t n)
{
    struct ss_http_limits lim_small, *lim = NULL;
    if (below(4) == 0) {
        lim_small.max_head = (uint32_t)(1 + below(512));
        lim_small.max_fields = (uint32_t)below(9);
        lim_small.max_uri = (uint32_t)below(256);
        lim = &lim_small;
    }
    static struct ss_http_req whole, part;
    char *wbuf;
    int r = parse_copy(data, n, lim, &whole, &wbuf);
    CHECK(r <= (int)n, "consumed %d of %zu", r, n);
    CHECK(r >= 0 || ss_http_error_status(r) != 500, "unknown error code %d", r);
    if (r > 0)
        check_req(&whole, wbuf, (size_t)r);

    /* parse(prefix) is 0 or parse(whole); once the head is in, the same head. */
    size_t tries = n <= 96 ? n + 1 : 12;
    for (size_t t = 0; t < tries; t++) {
        size_t k = n <= 96 ? t : below(n + 1);
        if (t == 0 && r > 0 && n > 96)
            k = (size_t)r - 1;
        if (t == 1 && r > 0 && n > 96)
            k = (size_t)r;
        char *pbuf;
        int rk = parse_copy(data, k, lim, &part, &pbuf);
        CHECK(rk == 0 || rk == r, "prefix of %zu gives %d, whole gives %d", k, rk, r);
        if (r > 0)
            CHECK((k < (size_t)r) == (rk == 0), "prefix of %zu gives %d, head is %d", k, rk, r);
        if (r > 0 && rk > 0)
            CHECK(same_req(&whole, wbuf, &part, pbuf), "prefix of %zu parses differently", k);
        free(pbuf);
    }
    free(wbuf);
}

/* ---- the chunked decoder ----------------------------------------------------------------- */

struct decoded {
    int rc;
    size_t consumed, body_len;
    char body[MAX_INPUT];
    int ntrailers;
    char trailers[512];
    size_t trailers_len;
};

static void decode(const char *data, size_t n, const size_t *cuts, int ncuts, uint64_t max_body,
                   uint32_t max_ext, size_t tcap, struct decoded *d)
{
    struct ss_http_chunked c;
    char *tbuf = tcap ? malloc(tcap) : NULL;
    ss_http_chunked_init(&c, max_body, max_ext, tbuf, tcap);
    d->rc = SS_HTTP_CHUNKED_MORE;
    d->consumed = d->body_len = 0;
    size_t start = 0;
    for (int p = 0; p <= ncuts && d->rc == SS_HTTP_CHUNKED_MORE; p++) {
        size_t end = p < ncuts ? cuts[p] : n;
        char *piece = exact_copy(data + start, end - start);
        size_t len = end - start, pos = 0;
        while (d->rc == SS_HTTP_CHUNKED_MORE && pos < len) {
            struct ss_http_chunk_out out;
            d->rc = ss_http_chunked_feed(&c, piece + pos, len - pos, &out);
            CHECK(out.consumed <= len - pos, "consumed %zu of %zu", out.consumed, len - pos);
            if (out.data) {
                CHECK(out.data >= piece + pos && out.data_len <= out.consumed &&
                      (size_t)(out.data - (piece + pos)) <= out.consumed - out.data_len,
                      "data span outside the input");
                memcpy(d->body + d->body_len, out.data, out.data_len);
                d->body_len += out.data_len;
            }
            CHECK(d->rc != SS_HTTP_CHUNKED_MORE || out.consumed > 0, "no progress");
            pos += out.consumed;
            d->consumed += out.consumed;
        }
        free(piece);
        start = end;
    }
    CHECK(d->rc >= -28 && d->rc <= 1 && (d->rc >= 0 || ss_http_error_status(d->rc) != 500),
          "result %d", d->rc);
    CHECK(c.body_len == d->body_len, "body_len %" PRIu64 " vs %zu", c.body_len, d->body_len);
    CHECK(d->body_len <= (max_body ? max_body : UINT64_MAX), "body over max_body");
    d->ntrailers = c.ntrailers;
    d->trailers_len = 0;
    for (int i = 0; i < c.ntrailers; i++) {
        const struct ss_http_field *f = &c.trailers[i];
        CHECK(inside(tbuf, c.trailer_len, f->name, f->name_len) &&
              inside(tbuf, c.trailer_len, f->value, f->value_len), "trailer %d outside", i);
        if (d->trailers_len + f->name_len + f->value_len + 2 <= sizeof(d->trailers)) {
            memcpy(d->trailers + d->trailers_len, f->name, f->name_len);
            d->trailers_len += f->name_len;
            d->trailers[d->trailers_len++] = ':';
            memcpy(d->trailers + d->trailers_len, f->value, f->value_len);
            d->trailers_len += f->value_len;
            d->trailers[d->trailers_len++] = '\n';
        }
    }
    const char *v;
    size_t vn;
    if (ss_http_chunked_ext(&c, "chunk-signature", &v, &vn) == 0)
        CHECK(v >= c.ext && v + vn <= c.ext + c.ext_kept, "extension value outside");
    free(tbuf);
}

static bool same_decoded(const struct decoded *a, const struct decoded *b)
{
    return a->rc == b->rc && a->consumed == b->consumed && a->body_len == b->body_len &&
           memcmp(a->body, b->body, a->body_len) == 0 && a->ntrailers == b->ntrailers &&
           a->trailers_len == b->trailers_len &&
           memcmp(a->trailers, b->trailers, a->trailers_len) == 0;
}

static int cmp_size(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return x < y ? -1 : x > y;
}

static void fuzz_chunked(const char *data, size_t n)
{
    static struct decoded whole, split;
    uint64_t max_body = below(3) ? 0 : below(4096);
    uint32_t max_ext = below(3) ? 0 : (uint32_t)below(64);
    size_t tcap = below(4) ? 256 : below(32);
    decode(data, n, NULL, 0, max_body, max_ext, tcap, &whole);

    static size_t cuts[MAX_INPUT];
    int ncuts = 0;
    if (below(8) == 0 && n <= 2048) {
        for (size_t i = 1; i < n; i++)
            cuts[ncuts++] = i;  /* byte by byte */
    } else {
        ncuts = (int)(1 + below(4));
        for (int i = 0; i < ncuts; i++)
            cuts[i] = below(n + 1);
        qsort(cuts, (size_t)ncuts, sizeof(cuts[0]), cmp_size);
    }
    decode(data, n, cuts, ncuts, max_body, max_ext, tcap, &split);
    CHECK(same_decoded(&whole, &split), "split decode differs: rc %d/%d consumed %zu/%zu "
          "body %zu/%zu", whole.rc, split.rc, whole.consumed, split.consumed, whole.body_len,
          split.body_len);
}

/* ---- field helpers ----------------------------------------------------------------------- */

static void fuzz_range(const char *data, size_t n)
{
    static const uint64_t sizes[] = {0, 1, 2, 1000, UINT64_MAX};
    uint64_t size = below(2) ? sizes[below(5)] : rnd() >> below(64);
    uint64_t first = 7, last = 7;
    char *buf = exact_copy(data, n);
    int rc = ss_http_range_parse(buf, n, size, &first, &last);
    CHECK(rc == SS_HTTP_RANGE_OK || rc == SS_HTTP_RANGE_IGNORE ||
          rc == SS_HTTP_RANGE_UNSATISFIABLE, "result %d", rc);
    if (rc == SS_HTTP_RANGE_OK) {
        CHECK(first <= last && last < size, "range %" PRIu64 "-%" PRIu64 " of %" PRIu64, first,
              last, size);
        size_t cap = below(64);
        char *out = malloc(cap ? cap : 1);
        int w = ss_http_content_range(out, cap, first, last, size);
        CHECK(w == -ENOSPC || (w > 0 && (size_t)w < cap && out[w] == '\0'), "format %d", w);
        free(out);
    }
    free(buf);
}

static void fuzz_date(const char *data, size_t n)
{
    /* A sane clock mostly, now and then any 64-bit value. */
    int64_t now = below(8) ? (int64_t)(rnd() % UINT64_C(253402300800)) : (int64_t)rnd();
    int64_t t = 0, back = 0;
    char out[SS_HTTP_DATE_LEN + 1];
    char *buf = exact_copy(data, n);
    if (ss_http_date_parse(buf, n, now, &t) == 0) {
        /* Years 0..9999, or for RFC 850's two digits up to 100 years before
         * or 50 after a clock that is itself held to years 0..9999. */
        CHECK(t >= INT64_C(-65400000000) && t <= INT64_C(255000000000), "date %" PRId64, t);
        if (ss_http_date_format(t, out, sizeof(out)) == SS_HTTP_DATE_LEN) {
            CHECK(ss_http_date_parse(out, SS_HTTP_DATE_LEN, now, &back) == 0 && back == t,
                  "%" PRId64 " formats as %s, which parses as %" PRId64, t, out, back);
        }
    }
    free(buf);
    /* Any instant IMF-fixdate can spell survives a round trip. */
    t = (int64_t)(rnd() % UINT64_C(315569520000)) - INT64_C(62167219200);
    CHECK(ss_http_date_format(t, out, sizeof(out)) == SS_HTTP_DATE_LEN, "format %" PRId64, t);
    CHECK(ss_http_date_parse(out, SS_HTTP_DATE_LEN, now, &back) == 0 && back == t,
          "round trip of %" PRId64 " via %s", t, out);
    /* Any 64-bit instant: formatted when a four-digit year can spell it. */
    t = (int64_t)rnd();
    int w = ss_http_date_format(t, out, sizeof(out));
    bool spellable = t >= INT64_C(-62167219200) && t <= INT64_C(253402300799);
    CHECK(spellable ? w == SS_HTTP_DATE_LEN : w == -EINVAL, "format of %" PRId64 ": %d", t, w);
}

static void fuzz_etag(const char *data, size_t n)
{
    const char *lf = memchr(data, '\n', n);
    size_t ln = lf ? (size_t)(lf - data) : n;
    char *list = exact_copy(data, ln);
    char *etag = lf ? exact_copy(lf + 1, n - ln - 1) : NULL;
    size_t en = lf ? n - ln - 1 : 0;
    int m = ss_http_if_match(list, ln, etag, en);
    int nm = ss_http_if_none_match(list, ln, etag, en);
    CHECK(m == 0 || m == 1 || m == -EINVAL, "if-match %d", m);
    CHECK(nm == 0 || nm == 1 || nm == -EINVAL, "if-none-match %d", nm);
    CHECK((m < 0) == (nm < 0), "only one of the two found the list malformed");
    CHECK(m != 1 || nm == 1, "a strong match that is not a weak match");
    free(list);
    free(etag);
}

static void fuzz_cc(const char *data, size_t n)
{
    struct ss_http_cache_control cc;
    ss_http_cache_control_init(&cc);
    char *buf = exact_copy(data, n);
    int known = ss_http_cache_control_parse(buf, n, &cc);
    CHECK(known >= 0 && (size_t)known <= n, "known %d", known);
    int flags[] = {cc.no_store, cc.no_cache, cc.private, cc.public, cc.must_revalidate,
                   cc.proxy_revalidate};
    for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++)
        CHECK(flags[i] == 0 || flags[i] == 1, "flag %zu is %d", i, flags[i]);
    int64_t nums[] = {cc.max_age, cc.s_maxage, cc.stale_while_revalidate, cc.stale_if_error};
    for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++)
        CHECK(nums[i] >= -1 && nums[i] <= (INT64_C(1) << 31), "number %zu is %" PRId64, i,
              nums[i]);
    free(buf);
}

/* ---- the driver -------------------------------------------------------------------------- */

static void load(const char *path)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    int kind = -1;
    for (int k = 0; k < K__COUNT; k++)
        if (strncmp(base, kind_prefix[k], strlen(kind_prefix[k])) == 0)
            kind = k;
    if (kind < 0 || ncorpus == MAX_ENTRIES) {
        fprintf(stderr, "%s: name it head-, chunked-, range-, date-, etag- or cc-*, "
                "at most %d files\n", path, MAX_ENTRIES);
        exit(2);
    }
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        perror(path);
        exit(2);
    }
    static char tmp[MAX_INPUT];
    size_t n = fread(tmp, 1, sizeof(tmp), f);
    fclose(f);
    corpus[ncorpus++] = (struct entry){(enum kind)kind, exact_copy(tmp, n), n};
}

static int selftest(void)
{
    /* One byte past a heap block: the fuzz test checks that ASan reports
     * it, so a build without the sanitizer cannot pass for a clean run. */
    char *p = exact_copy("abc", 3);
    volatile char c = p[3];
    free(p);
    return c == 'x';
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--selftest") == 0)
        return selftest();
    if (argc < 5) {
        fprintf(stderr, "usage: %s SEED ITERATIONS SECONDS FILE...\n", argv[0]);
        return 2;
    }
    run_seed = strtoull(argv[1], NULL, 0);
    uint64_t iterations = strtoull(argv[2], NULL, 0);
    double seconds = strtod(argv[3], NULL);
    for (int i = 4; i < argc; i++)
        load(argv[i]);

    static unsigned char input[MAX_INPUT];
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    uint64_t counts[K__COUNT] = {0};
    for (iteration = 0; iteration < iterations; iteration++) {
        if ((iteration & 255) == 0) {
            clock_gettime(CLOCK_MONOTONIC, &t1);
            if ((double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9 > seconds)
                break;
        }
        /* Each iteration has its own stream: a failure replays from its number. */
        rng_state = (run_seed + 1) * UINT64_C(0x9E3779B97F4A7C15) ^ (iteration + 1);
        for (int warm = 0; warm < 4; warm++)
            rnd();
        const struct entry *e = &corpus[below((size_t)ncorpus)];
        memcpy(input, e->data, e->len);
        size_t n = below(8) ? mutate(input, e->len) : e->len;
        cur_input = input;
        cur_len = n;
        cur_kind = e->kind;
        counts[e->kind]++;
        const char *data = (const char *)input;
        switch (e->kind) {
        case K_HEAD: fuzz_head(data, n); break;
        case K_CHUNKED: fuzz_chunked(data, n); break;
        case K_RANGE: fuzz_range(data, n); break;
        case K_DATE: fuzz_date(data, n); break;
        case K_ETAG: fuzz_etag(data, n); break;
        default: fuzz_cc(data, n); break;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("seed=%" PRIu64 " iterations=%" PRIu64 " seconds=%.2f", run_seed, iteration,
           (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
    for (int k = 0; k < K__COUNT; k++)
        printf(" %.*s=%" PRIu64, (int)strlen(kind_prefix[k]) - 1, kind_prefix[k], counts[k]);
    printf("\n");
    for (int i = 0; i < ncorpus; i++)
        free(corpus[i].data);
    return 0;
}
