/*
 * ss_obj_origin_tls.c - https origins: TLS on the origin client's
 * non-blocking connections, through OpenSSL.
 *
 * Each https bucket has one client context: TLS 1.2 or later, the peer's
 * certificate verified against the system's trust store or the bucket's
 * origin_ca_file, and its name (or address) checked against the origin's
 * host, which is also sent as SNI. There is no switch to turn verification
 * off: an origin with a certificate of its own making is trusted by naming
 * its CA file. Each connection has its own session; the handshake runs in
 * the worker's loop like the rest of the exchange (ORG_TLS), and reads and
 * writes go through org_recv and org_send, which say which readiness to
 * wait for when TLS needs the other direction.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include "ss_obj_origin.h"

static void tls_reason(char *out, size_t cap)
{
    unsigned long e = ERR_get_error();
    if (e)
        ERR_error_string_n(e, out, cap);
    else
        snprintf(out, cap, "unknown error");
    ERR_clear_error();
}

int obj_tls_context(struct obj_bucket *ob, const char *name, const char *ca_file, char *err,
                    size_t errlen)
{
    char why[256];
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        tls_reason(why, sizeof(why));
        snprintf(err, errlen, "bucket %s: no TLS context: %s", ob->name, why);
        return -ENOMEM;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    int ok = ca_file ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL)
                     : SSL_CTX_set_default_verify_paths(ctx);
    if (ok != 1) {
        tls_reason(why, sizeof(why));
        snprintf(err, errlen, "bucket %s: cannot load the CA certificates %s: %s", ob->name,
                 ca_file ? ca_file : "of the system", why);
        SSL_CTX_free(ctx);
        return -EINVAL;
    }
    ob->tls = ctx;
    ob->tls_name = strdup(name);
    if (!ob->tls_name) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    return 0;
}

void obj_tls_context_free(struct obj_bucket *ob)
{
    if (ob->tls)
        SSL_CTX_free(ob->tls);
    free(ob->tls_name);
    ob->tls = NULL;
    ob->tls_name = NULL;
}

int obj_tls_start(struct obj_origin *org)
{
    const struct obj_bucket *b = org->b;
    SSL *ssl = SSL_new(b->tls);
    if (!ssl)
        return -ENOMEM;
    struct in6_addr ip;
    int literal = inet_pton(AF_INET, b->tls_name, &ip) == 1 ||
                  inet_pton(AF_INET6, b->tls_name, &ip) == 1;
    X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
    int ok = SSL_set_fd(ssl, org->fd) == 1 &&
             (literal ? X509_VERIFY_PARAM_set1_ip_asc(param, b->tls_name) == 1
                      : SSL_set1_host(ssl, b->tls_name) == 1 &&
                            SSL_set_tlsext_host_name(ssl, b->tls_name) == 1);
    if (!ok) {
        SSL_free(ssl);
        return -ENOMEM;
    }
    SSL_set_connect_state(ssl);
    org->ssl = ssl;
    return 0;
}

void obj_tls_end(struct obj_origin *org)
{
    if (org->ssl)
        SSL_free(org->ssl); /* no close_notify: the connection is being dropped */
    org->ssl = NULL;
}

/* What an SSL call's failure means: the readiness to wait for, or an error. */
static ssize_t tls_wait(struct obj_origin *org, int rc, uint32_t *want)
{
    switch (SSL_get_error(org->ssl, rc)) {
    case SSL_ERROR_WANT_READ:
        *want = EPOLLIN;
        return -EAGAIN;
    case SSL_ERROR_WANT_WRITE:
        *want = EPOLLOUT;
        return -EAGAIN;
    case SSL_ERROR_ZERO_RETURN:
        return 0; /* the origin's close_notify */
    case SSL_ERROR_SYSCALL:
        ERR_clear_error();
        return errno ? -errno : 0; /* 0: closed without close_notify */
    default:
        ERR_clear_error();
        return -EPROTO; /* a failed handshake (the certificate) or a bad record */
    }
}

int obj_tls_handshake(struct obj_origin *org, uint32_t *want)
{
    int rc = SSL_do_handshake(org->ssl);
    if (rc == 1)
        return 1;
    ssize_t w = tls_wait(org, rc, want);
    return w == -EAGAIN ? 0 : (int)(w ? w : -ECONNRESET);
}

ssize_t org_recv(struct obj_origin *org, void *buf, size_t len, uint32_t *want)
{
    *want = EPOLLIN;
    if (!org->ssl) {
        ssize_t n = recv(org->fd, buf, len, MSG_DONTWAIT);
        return n >= 0 ? n : -errno;
    }
    int n = SSL_read(org->ssl, buf, len > INT32_MAX ? INT32_MAX : (int)len);
    return n > 0 ? n : tls_wait(org, n, want);
}

ssize_t org_send(struct obj_origin *org, const void *buf, size_t len, uint32_t *want)
{
    *want = EPOLLOUT;
    if (!org->ssl) {
        ssize_t n = send(org->fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
        return n >= 0 ? n : -errno;
    }
    int n = SSL_write(org->ssl, buf, len > INT32_MAX ? INT32_MAX : (int)len);
    ssize_t r = n > 0 ? n : tls_wait(org, n, want);
    return r == 0 ? -EPIPE : r;
}

int org_pending(const struct obj_origin *org)
{
    return org->ssl && SSL_pending(org->ssl) > 0;
}
