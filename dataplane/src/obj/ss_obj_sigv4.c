/*
 * ss_obj_sigv4.c - AWS Signature Version 4 on the requests an s3 bucket sends
 * its endpoint, so that a cached bucket can front a private bucket (AWS S3,
 * MinIO, Ceph RGW and their like), not only one anybody may read and write.
 *
 * The body is not hashed: x-amz-content-sha256 is UNSIGNED-PAYLOAD, which S3
 * takes on every request. A write through streams its body from the chunks
 * as it sends it, and hashing it first would read it twice. Signed are the
 * Host field, the two x-amz fields the signature adds and every x-amz-*
 * field a PUT carries (S3 refuses a request with an x-amz-* field left out
 * of the signature); the validators of a revalidation are not, as S3 allows.
 * The request target must be sent as the signature canonicalises it: every
 * byte but the unreserved ones and '/' percent-encoded (build_request).
 *
 * SHA-256 and HMAC are OpenSSL's libcrypto.
 */
#include <errno.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "ss_obj_origin.h"

#define SIGNED_FIELDS_MAX 64 /* host, the two added, and the PUT's x-amz-* fields */

struct signed_field {
    char name[64]; /* lower case */
    const char *value;
    size_t value_len;
};

static void hmac(const void *key, size_t nkey, const char *msg, size_t nmsg,
                 unsigned char out[SHA256_DIGEST_LENGTH])
{
    unsigned int len = SHA256_DIGEST_LENGTH;
    HMAC(EVP_sha256(), key, (int)nkey, (const unsigned char *)msg, nmsg, out, &len);
}

/* The PUT's x-amz-* fields ("Name: value\r\n" lines), after the ones given. */
static int add_amz_fields(const char *fields, size_t nfields, struct signed_field *out, int n)
{
    const char *p = fields, *end = fields + nfields;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *line_end = eol ? eol : end;
        const char *colon = memchr(p, ':', (size_t)(line_end - p));
        size_t nname = colon ? (size_t)(colon - p) : 0;
        if (colon && nname > 6 && nname < sizeof(out[0].name) &&
            strncasecmp(p, "x-amz-", 6) == 0 && !(nname == 10 && !strncasecmp(p, "x-amz-date", 10)) &&
            !(nname == 20 && !strncasecmp(p, "x-amz-content-sha256", 20))) {
            if (n == SIGNED_FIELDS_MAX)
                return -E2BIG;
            for (size_t i = 0; i < nname; i++) {
                char ch = p[i];
                out[n].name[i] = ch >= 'A' && ch <= 'Z' ? (char)(ch - 'A' + 'a') : ch;
            }
            out[n].name[nname] = '\0';
            const char *v = colon + 1, *ve = line_end;
            if (ve > v && ve[-1] == '\r')
                ve--;
            out[n].value = v;
            out[n].value_len = (size_t)(ve - v);
            n++;
        }
        p = eol ? eol + 1 : end;
    }
    return n;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const struct signed_field *)a)->name, ((const struct signed_field *)b)->name);
}

/* name ':' value '\n' with the value trimmed and inner runs of spaces made one. */
static size_t canonical_field(char *out, const struct signed_field *f)
{
    size_t n = strlen(f->name), len = n + 1;
    memcpy(out, f->name, n);
    out[n] = ':';
    const char *v = f->value, *ve = f->value + f->value_len;
    while (v < ve && (*v == ' ' || *v == '\t'))
        v++;
    while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
        ve--;
    int space = 0;
    for (; v < ve; v++) {
        if (*v == ' ' || *v == '\t') {
            space = 1;
            continue;
        }
        if (space)
            out[len++] = ' ';
        space = 0;
        out[len++] = *v;
    }
    out[len++] = '\n';
    return len;
}

int obj_sigv4_fields(const struct obj_bucket *b, const char *method, const char *target,
                     size_t ntarget, const char *fields, size_t nfields, int64_t now,
                     char *out, size_t cap)
{
    char amz_date[17], day[9];
    time_t t = (time_t)now;
    struct tm gm;
    gmtime_r(&t, &gm);
    strftime(amz_date, sizeof(amz_date), "%Y%m%dT%H%M%SZ", &gm);
    memcpy(day, amz_date, 8);
    day[8] = '\0';

    struct signed_field sf[SIGNED_FIELDS_MAX] = {
        {"host", b->origin_host, strlen(b->origin_host)},
        {"x-amz-content-sha256", "UNSIGNED-PAYLOAD", 16},
        {"x-amz-date", amz_date, 16},
    };
    int n = add_amz_fields(fields, nfields, sf, 3);
    if (n < 0)
        return n;
    qsort(sf, (size_t)n, sizeof(sf[0]), by_name);

    /* The canonical request: method, target, no query, fields, their names, payload. */
    size_t cap_req = strlen(method) + ntarget + nfields + strlen(b->origin_host) +
                     (size_t)n * 72 + 256;
    char *creq = malloc(cap_req);
    if (!creq)
        return -ENOMEM;
    size_t len = (size_t)snprintf(creq, cap_req, "%s\n%.*s\n\n", method, (int)ntarget, target);
    for (int i = 0; i < n; i++)
        len += canonical_field(creq + len, &sf[i]);
    creq[len++] = '\n';
    char names[SIGNED_FIELDS_MAX * 65];
    size_t nnames = 0;
    for (int i = 0; i < n; i++) {
        size_t k = strlen(sf[i].name);
        if (i)
            names[nnames++] = ';';
        memcpy(names + nnames, sf[i].name, k);
        nnames += k;
    }
    names[nnames] = '\0';
    len += (size_t)snprintf(creq + len, cap_req - len, "%s\nUNSIGNED-PAYLOAD", names);

    unsigned char digest[SHA256_DIGEST_LENGTH];
    char creq_hex[2 * SHA256_DIGEST_LENGTH + 1];
    SHA256((const unsigned char *)creq, len, digest);
    free(creq);
    obj_hex(digest, sizeof(digest), creq_hex);

    char scope[128], to_sign[512];
    snprintf(scope, sizeof(scope), "%s/%s/s3/aws4_request", day, b->s3_region);
    int nsign = snprintf(to_sign, sizeof(to_sign), "AWS4-HMAC-SHA256\n%s\n%s\n%s", amz_date,
                         scope, creq_hex);

    /* The signing key: the secret through the day, region, service and "aws4_request". */
    char first[8 + 256];
    int nfirst = snprintf(first, sizeof(first), "AWS4%s", b->s3_secret);
    unsigned char k[SHA256_DIGEST_LENGTH], k2[SHA256_DIGEST_LENGTH];
    hmac(first, (size_t)nfirst, day, 8, k);
    hmac(k, sizeof(k), b->s3_region, strlen(b->s3_region), k2);
    hmac(k2, sizeof(k2), "s3", 2, k);
    hmac(k, sizeof(k), "aws4_request", 12, k2);
    hmac(k2, sizeof(k2), to_sign, (size_t)nsign, digest);
    char signature[2 * SHA256_DIGEST_LENGTH + 1];
    obj_hex(digest, sizeof(digest), signature);
    OPENSSL_cleanse(first, sizeof(first));
    OPENSSL_cleanse(k, sizeof(k));
    OPENSSL_cleanse(k2, sizeof(k2));

    int w = snprintf(out, cap,
                     "x-amz-date: %s\r\nx-amz-content-sha256: UNSIGNED-PAYLOAD\r\n"
                     "Authorization: AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, "
                     "Signature=%s\r\n",
                     amz_date, b->s3_key_id, scope, names, signature);
    return w < 0 || (size_t)w >= cap ? -ENAMETOOLONG : w;
}
