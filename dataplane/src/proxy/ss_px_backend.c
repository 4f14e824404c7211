/*
 * ss_px_backend.c - a worker's connections to back-end memcached nodes:
 * on-demand non-blocking connect with a deadline, output batching (flushed
 * once per loop turn), reply framing, the FIFO of outstanding ops, per-op
 * deadlines, and failure handling.
 *
 * Framing: every op sent ends with `mn`, so its reply ends at an `MN` line
 * (except text storage and arithmetic commands, whose reply is one line);
 * `VA <n> ...` and `VALUE <k> <f> <n> ...` lines carry n bytes and CRLF.
 * Anything else that is not a memcached reply line is garbage. A timeout, a
 * connection error or garbage fails every op outstanding on the connection,
 * closes it (reopened on demand) and counts one failure of the back end.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/ss_base64.h"

#include "common/ss_clock.h"
#include "ss_px_internal.h"
#include "server/ss_server.h"

struct px_bconn {
    struct px_bconn *next, *prev; /* px_worker.all */
    int fd;                       /* -1: closed */
    uint32_t backend;
    bool connecting;
    bool retiring;                /* not in the pool any more: close once idle */
    bool orphan;                  /* its back end left the routing table: drains its
                                     ops, counted nowhere (bc->backend is stale) */
    char orphan_name[64];         /* that back end's name, for error lines */
    bool dirty;                   /* output to flush at the end of the turn */
    const char *fail_why;         /* failed synchronously: handled at the tick */
    uint32_t events;
    uint64_t connect_deadline;
    struct ss_buf out;
    size_t wpos;
    struct ss_buf in;
    size_t rpos;
    struct px_op *head, *tail;
    uint32_t nops;
};

static inline struct px_worker *pxw(struct ss_worker *w)
{
    return w->px;
}

/* A numeric IPv4/IPv6 host and port. Returns 0 or -EINVAL. */
int ss_px_parse_addr(const char *host, int port, struct sockaddr_storage *ss, socklen_t *len)
{
    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in *sin = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
    char buf[64];
    size_t n = strlen(host);
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']' && n - 2 < sizeof(buf)) {
        memcpy(buf, host + 1, n - 2);
        buf[n - 2] = '\0';
        host = buf;
    }
    if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)port);
        *len = sizeof(*sin);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)port);
        *len = sizeof(*sin6);
        return 0;
    }
    return -EINVAL;
}

static void bc_rearm(struct ss_worker *w, struct px_bconn *bc)
{
    if (bc->fd < 0)
        return;
    uint32_t want = EPOLLIN | (bc->connecting || bc->wpos < bc->out.len ? EPOLLOUT : 0);
    if (want == bc->events)
        return;
    struct epoll_event ev = { .events = want, .data.ptr = (char *)bc + 1 };
    if (epoll_ctl(w->epfd, EPOLL_CTL_MOD, bc->fd, &ev) == 0)
        bc->events = want;
}

/* Start a non-blocking connect. Returns 0 or -errno (the caller fails ops). */
static int bc_connect(struct ss_worker *w, struct px_bconn *bc)
{
    struct px_routing *r = pxw(w)->r;
    struct px_backend *be = &r->backends[bc->backend];
    struct sockaddr_storage ss;
    socklen_t sl;
    if (ss_px_parse_addr(be->host, be->port, &ss, &sl))
        return -EINVAL;
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    int rc = connect(fd, (struct sockaddr *)&ss, sl);
    if (rc < 0 && errno != EINPROGRESS) {
        rc = -errno;
        close(fd);
        return rc;
    }
    struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT, .data.ptr = (char *)bc + 1 };
    if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        rc = -errno;
        close(fd);
        return rc;
    }
    bc->fd = fd;
    bc->events = EPOLLIN | EPOLLOUT;
    bc->connecting = true;
    bc->connect_deadline = ss_clock_mono_ms() + be->s.connect_timeout_ms;
    return 0;
}

static struct px_bconn *bc_new(struct px_worker *pw, uint32_t backend)
{
    struct px_bconn *bc = calloc(1, sizeof(*bc));
    if (!bc)
        return NULL;
    bc->fd = -1;
    bc->backend = backend;
    bc->next = pw->all;
    if (pw->all)
        pw->all->prev = bc;
    pw->all = bc;
    return bc;
}

static void bc_unlink_free(struct px_worker *pw, struct px_bconn *bc)
{
    if (bc->prev)
        bc->prev->next = bc->next;
    else
        pw->all = bc->next;
    if (bc->next)
        bc->next->prev = bc->prev;
    ss_buf_free(&bc->out);
    ss_buf_free(&bc->in);
    free(bc);
}

/* The pooled connection that carries this client's requests to backend. */
struct px_bconn *ss_px_bconn_for(struct ss_worker *w, uint32_t backend, const void *client)
{
    struct px_worker *pw = pxw(w);
    uint32_t i = (uint32_t)(((uintptr_t)client >> 4) % pw->cpb);
    struct px_bconn **slot = &pw->pool[(size_t)backend * pw->cpb + i];
    if (!*slot)
        *slot = bc_new(pw, backend);
    return *slot;
}

/* Close the socket, keep the struct (reopened on demand). */
static void bc_close_fd(struct px_bconn *bc)
{
    if (bc->fd >= 0)
        close(bc->fd);
    bc->fd = -1;
    bc->connecting = false;
    bc->events = 0;
    bc->out.len = bc->wpos = 0;
    bc->in.len = bc->rpos = 0;
}

/*
 * Fail every op outstanding on bc with "SERVER_ERROR backend <name> <why>",
 * close the socket, count one failure of the back end.
 */
static void bc_fail(struct ss_worker *w, struct px_bconn *bc, const char *why)
{
    struct px_worker *pw = pxw(w);
    struct px_routing *r = pw->r;
    char line[320];
    snprintf(line, sizeof(line), "SERVER_ERROR backend %s %s\r\n",
             bc->orphan ? bc->orphan_name : r ? r->backends[bc->backend].name : "?", why);
    bc_close_fd(bc);
    bc->fail_why = NULL;
    /* An idle connection the back end closed is not a failed request: the
     * next request reconnects, and counts if that fails. */
    if (!bc->head)
        return;
    if (r && !bc->orphan) {
        struct px_bstat *st = ss_px_bstat(r, bc->backend, w->id);
        if (strcmp(why, "timeout") == 0)
            st->timeouts++;
        else
            st->errors++;
        st->in_flight -= bc->nops;
        ss_px_backend_failed(r, bc->backend);
    }
    struct px_op *op = bc->head;
    bc->head = bc->tail = NULL;
    pw->outstanding -= bc->nops;
    bc->nops = 0;
    while (op) {
        struct px_op *next = op->next;
        ss_px_op_done(w, op, line);
        op = next;
    }
}

/* Queue op with its request bytes; sent at the end of this loop turn. */
void ss_px_bconn_send(struct ss_worker *w, struct px_bconn *bc, struct px_op *op,
                      const char *req, size_t n)
{
    struct px_worker *pw = pxw(w);
    struct px_routing *r = pw->r;
    struct px_backend *be = &r->backends[bc->backend];
    op->backend = bc->backend;
    op->sent_us = w->now_ns / 1000u; /* it goes out at the end of this turn */
    op->deadline_ms = w->now_ns / 1000000u + be->s.request_timeout_ms;
    op->next = NULL;
    if (bc->tail)
        bc->tail->next = op;
    else
        bc->head = op;
    bc->tail = op;
    bc->nops++;
    pw->outstanding++;
    struct px_bstat *st = ss_px_bstat(r, bc->backend, w->id);
    st->requests++;
    st->in_flight++;
    if (bc->fail_why)
        return; /* the whole FIFO fails at the tick */
    if (bc->fd < 0) {
        int rc = bc_connect(w, bc);
        if (rc) {
            /* Never complete a slot inside the client's own dispatch. */
            bc->fail_why = "unreachable";
            pw->fail_pending = true;
            return;
        }
    }
    if (ss_buf_append(&bc->out, req, n)) {
        bc->fail_why = "unreachable";
        pw->fail_pending = true;
        return;
    }
    bc->dirty = true;
}

/* Write queued output. Returns 0 or -errno. */
static int bc_flush(struct ss_worker *w, struct px_bconn *bc)
{
    bc->dirty = false;
    if (bc->fd < 0 || bc->connecting)
        return 0;
    while (bc->wpos < bc->out.len) {
        ssize_t n = send(bc->fd, bc->out.data + bc->wpos, bc->out.len - bc->wpos,
                         MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0) {
            bc->wpos += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        return n < 0 ? -errno : -EIO;
    }
    if (bc->wpos == bc->out.len)
        bc->out.len = bc->wpos = 0;
    bc_rearm(w, bc);
    return 0;
}

static uint32_t latency_bucket(uint64_t us)
{
    uint32_t i = us ? (uint32_t)(64 - __builtin_clzll(us)) : 0;
    return i < SS_BACKEND_LATENCY_BUCKETS ? i : SS_BACKEND_LATENCY_BUCKETS - 1;
}

/* The head op has its whole reply: pop and complete it. */
static void bc_pop_done(struct ss_worker *w, struct px_bconn *bc)
{
    struct px_worker *pw = pxw(w);
    struct px_op *op = bc->head;
    bc->head = op->next;
    if (!bc->head)
        bc->tail = NULL;
    /* Queued ops and the copies that sets among them will rewrite have long
     * left the cache (the copy was withdrawn when the set was sent). Each pop
     * prefetches the op three on, and what the reply of the op two on will
     * touch (read from the line the previous pop prefetched): the held copy,
     * its key's write slot, and the first item a get's reply is matched
     * with (its key sits 16 bytes in). So no miss stalls here or in the
     * match. */
    struct px_op *second = bc->head ? bc->head->next : NULL;
    if (second) {
        if (second->held)
            ss_store_held_prefetch(second->held);
        if (second->in_flight)
            __builtin_prefetch(second->in_flight, 1); /* its key slot, epoch beside */
        if (second->nitems)
            __builtin_prefetch(second->items);
        if (second->next)
            __builtin_prefetch(second->next);
    }
    bc->nops--;
    pw->outstanding--;
    if (!bc->orphan) {
        struct px_bstat *st = ss_px_bstat(pw->r, bc->backend, w->id);
        st->in_flight--;
        uint64_t now_us = w->now_ns / 1000u;
        st->latency_us[latency_bucket(now_us > op->sent_us ? now_us - op->sent_us : 0)]++;
        ss_px_backend_ok(pw->r, bc->backend);
    }
    ss_px_op_done(w, op, NULL);
}

static bool starts(const char *p, size_t n, const char *lit)
{
    size_t l = strlen(lit);
    return n >= l && memcmp(p, lit, l) == 0;
}

/* Is [p, p + n) (no CRLF) a line a memcached could answer? */
static bool reply_line_ok(const char *p, size_t n)
{
    static const char *const words[] = {
        "STORED", "NOT_STORED", "EXISTS", "NOT_FOUND", "DELETED", "TOUCHED", "OK", "END",
        "HD", "EN", "NF", "NS", "EX", "MN", "ERROR", "CLIENT_ERROR", "SERVER_ERROR",
        "VERSION",
    };
    size_t wl = 0;
    while (wl < n && p[wl] != ' ')
        wl++;
    if (wl == 0)
        return false;
    bool digits = true;
    for (size_t i = 0; i < wl; i++)
        if (p[i] < '0' || p[i] > '9')
            digits = false;
    if (digits) /* incr/decr */
        return true;
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
        if (strlen(words[i]) == wl && memcmp(p, words[i], wl) == 0)
            return true;
    return false;
}

/* Parse the mg reply flags of "VA <n> f.. c.. t.. k.." for a batch item. */
static int gets_value(struct ss_worker *w, struct px_op *op, const char *line, size_t n,
                      const char *val, size_t vlen)
{
    struct ss_mc_tok tok[SS_MC_META_MAX_TOKENS + 2];
    size_t ntok = ss_mc_tokenize(line, n, tok, SS_MC_META_MAX_TOKENS + 2);
    uint32_t flags = 0;
    uint64_t cas = 0;
    int64_t ttl = -1;
    const char *key = NULL;
    size_t nkey = 0;
    bool binary = false, keep = true;
    for (size_t i = 2; i + 1 < ntok; i++) {
        const char *a = tok[i].p + 1;
        size_t al = tok[i].len - 1;
        switch (tok[i].p[0]) {
        case 'f':
            if (!ss_mc_parse_u32(a, al, &flags))
                return -EPROTO;
            break;
        case 'c':
            if (!ss_mc_parse_u64(a, al, &cas))
                return -EPROTO;
            break;
        case 't': {
            int32_t t;
            if (!ss_mc_parse_i32(a, al, &t))
                return -EPROTO;
            ttl = t;
            break;
        }
        case 'k':
            key = a;
            nkey = al;
            break;
        case 'b': /* an item stored with a binary key (ms b): k is its base64 */
            binary = al == 0;
            keep = false; /* a copy would answer mg's k with the key as text */
            break;
        default:
            if (ss_px_owner_state_flag(tok[i].p, tok[i].len))
                keep = false;
            break;
        }
    }
    if (!key)
        return -EPROTO;
    unsigned char raw[SS_KEY_MAX_LENGTH + 4];
    if (binary) {
        if (nkey > SS_BASE64_ENCODED_LEN(SS_KEY_MAX_LENGTH))
            return -EPROTO;
        size_t got = ss_base64_decode(key, nkey, raw);
        if (got == 0 || got > SS_KEY_MAX_LENGTH)
            return -EPROTO;
        key = (const char *)raw;
        nkey = got;
    }
    for (uint32_t i = op->matched; i < op->nitems; i++) {
        struct px_item *it = &op->items[i];
        if (it->nkey == nkey && memcmp(it->key, key, nkey) == 0) {
            op->matched = i + 1;
            ss_px_item_value(w, op, it, flags, cas, ttl, val, vlen, keep);
            return 0;
        }
    }
    return -EPROTO;
}

/*
 * The value length of a "VA <n> <flags>*" or "VALUE <key> <flags> <n> [<cas>]"
 * line. memcached writes one space between words, so VA's length (every
 * forwarded get's reply) is read straight off the line; gets_value reads
 * its flags. The rare VALUE line is split like any other.
 */
static bool value_length(const char *line, size_t n, bool va, uint32_t *v)
{
    if (va) {
        size_t e = 3;
        while (e < n && line[e] != ' ')
            e++;
        return e > 3 && ss_mc_parse_u32(line + 3, e - 3, v);
    }
    struct ss_mc_tok tok[8];
    size_t ntok = ss_mc_tokenize(line, n, tok, 8);
    return ntok > 4 && ss_mc_parse_u32(tok[3].p, tok[3].len, v);
}

/*
 * Consume complete replies from bc->in. Returns 0, or -EPROTO on garbage
 * (the caller fails the connection).
 */
static int bc_parse(struct ss_worker *w, struct px_bconn *bc)
{
    while (bc->rpos < bc->in.len) {
        const char *start = bc->in.data + bc->rpos;
        size_t avail = bc->in.len - bc->rpos;
        const char *nl = memchr(start, '\n', avail);
        if (!nl)
            return avail > PX_LINE_MAX ? -EPROTO : 0;
        size_t lb = (size_t)(nl - start) + 1;
        if (lb < 2 || nl[-1] != '\r')
            return -EPROTO;
        size_t n = lb - 2;
        struct px_op *op = bc->head;
        if (!op)
            return -EPROTO; /* a reply nobody asked for */
        size_t data = 0;
        bool va = starts(start, n, "VA ");
        bool has_data = va || starts(start, n, "VALUE ");
        if (has_data) {
            uint32_t v;
            if (!value_length(start, n, va, &v))
                return -EPROTO;
            data = (size_t)v + 2;
            if (avail < lb + data)
                return 0; /* the value is still arriving */
            if (start[lb + v] != '\r' || start[lb + v + 1] != '\n')
                return -EPROTO;
        } else if (!reply_line_ok(start, n)) {
            return -EPROTO;
        }
        bool mn = n == 2 && start[0] == 'M' && start[1] == 'N';
        if (op->kind == PX_OP_GETS) {
            if (va) {
                if (gets_value(w, op, start, n, start + lb, data - 2))
                    return -EPROTO;
            } else if (!mn && !starts(start, n, "EN")) {
                /* A per-key error (SERVER_ERROR ...): keep it for the client. */
                if (!op->reply.len && ss_buf_append(&op->reply, start, lb))
                    return -EPROTO;
            }
        } else if (!mn) {
            if (op->one_line && has_data)
                return -EPROTO; /* a value where one status line belongs */
            if (ss_buf_append(&op->reply, start, lb + data))
                return -EPROTO;
        }
        bc->rpos += lb + data;
        if (mn || (op->kind == PX_OP_RAW && op->one_line))
            bc_pop_done(w, bc);
    }
    bc->in.len = bc->rpos = 0;
    return 0;
}

static void bc_read(struct ss_worker *w, struct px_bconn *bc)
{
    for (int i = 0; i < 16; i++) {
        if (bc->rpos && bc->rpos == bc->in.len)
            bc->in.len = bc->rpos = 0;
        if (bc->in.cap - bc->in.len < 16384 && ss_buf_reserve(&bc->in, 65536)) {
            bc_fail(w, bc, "unreachable");
            return;
        }
        size_t room = bc->in.cap - bc->in.len;
        ssize_t n = recv(bc->fd, bc->in.data + bc->in.len, room, MSG_DONTWAIT);
        if (n > 0) {
            bc->in.len += (size_t)n;
            if (bc_parse(w, bc)) {
                bc_fail(w, bc, "protocol error");
                return;
            }
            /* A short read emptied the socket: asking again would only say
             * EAGAIN (a syscall per reply batch); epoll is level-triggered
             * and reports what arrives next. */
            if (bc->fd < 0 || (size_t)n < room)
                return;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        bc_fail(w, bc, "unreachable"); /* closed or reset */
        return;
    }
}

/* epoll event on a back-end connection. */
void ss_px_bconn_on_event(struct ss_worker *w, struct px_bconn *bc, uint32_t events)
{
    if (bc->fd < 0)
        return;
    if (bc->connecting) {
        int e = 0;
        socklen_t l = sizeof(e);
        if (getsockopt(bc->fd, SOL_SOCKET, SO_ERROR, &e, &l) < 0)
            e = errno;
        if (e || (events & (EPOLLERR | EPOLLHUP))) {
            bc_fail(w, bc, "unreachable");
            return;
        }
        if (!(events & EPOLLOUT))
            return;
        bc->connecting = false;
    }
    if (events & EPOLLIN) {
        bc_read(w, bc);
        if (bc->fd < 0)
            return;
    } else if (events & (EPOLLERR | EPOLLHUP)) {
        bc_fail(w, bc, "unreachable");
        return;
    }
    if (bc_flush(w, bc) < 0)
        bc_fail(w, bc, "unreachable");
}

/*
 * Once per loop turn: send what was queued, fail connections that failed
 * synchronously or whose deadlines passed, close idle retiring ones.
 */
void ss_px_worker_check(struct ss_worker *w, uint64_t now)
{
    struct px_worker *pw = pxw(w);
    bool scan = pw->fail_pending || pw->outstanding;
    pw->fail_pending = false;
    struct px_bconn *bc = pw->all;
    while (bc) {
        struct px_bconn *next = bc->next;
        if (bc->fail_why) {
            bc_fail(w, bc, bc->fail_why);
        } else if (bc->dirty) {
            if (bc_flush(w, bc) < 0)
                bc_fail(w, bc, "unreachable");
        }
        if (scan && bc->fd >= 0) {
            if (bc->connecting && now >= bc->connect_deadline)
                bc_fail(w, bc, "timeout");
            else if (bc->head && now >= bc->head->deadline_ms)
                bc_fail(w, bc, "timeout");
        }
        if (bc->retiring && !bc->head) {
            bc_close_fd(bc);
            bc_unlink_free(pw, bc);
        }
        bc = next;
    }
}

/*
 * Adopt routing table r (may be NULL): connections to a back end whose
 * host:port is in r move to the new pool with their ops; the others fail
 * what they carry (the back end left the table) and close.
 */
void ss_px_worker_adopt(struct ss_worker *w, struct px_routing *r)
{
    struct px_worker *pw = pxw(w);
    struct px_routing *old = pw->r;
    struct px_bconn **oldpool = pw->pool;
    uint32_t oldcpb = pw->cpb;

    pw->pool = NULL;
    pw->cpb = 0;
    if (r) {
        pw->cpb = r->s.connections_per_backend;
        pw->pool = calloc((size_t)r->nbackends * pw->cpb, sizeof(*pw->pool));
        if (!pw->pool)
            r = NULL, pw->cpb = 0; /* stay standalone rather than crash */
    }
    if (old) {
        for (uint32_t b = 0; b < old->nbackends; b++) {
            int nb = ss_px_backend_index(r, old->backends[b].host, old->backends[b].port);
            for (uint32_t i = 0; i < oldcpb; i++) {
                struct px_bconn *bc = oldpool[(size_t)b * oldcpb + i];
                if (!bc)
                    continue;
                if (nb >= 0 && i < pw->cpb) {
                    struct px_bstat *os = ss_px_bstat(old, b, w->id);
                    os->in_flight -= bc->nops;
                    ss_px_bstat(r, (uint32_t)nb, w->id)->in_flight += bc->nops;
                    bc->backend = (uint32_t)nb;
                    for (struct px_op *op = bc->head; op; op = op->next)
                        op->backend = (uint32_t)nb;
                    pw->pool[(size_t)nb * pw->cpb + i] = bc;
                } else if (nb < 0 && bc->fd >= 0 && !bc->connecting && !bc->fail_why) {
                    /* The back end left the table: let what it was asked finish
                     * (each op keeps its deadline), then close. */
                    snprintf(bc->orphan_name, sizeof(bc->orphan_name), "%s",
                             old->backends[b].name);
                    bc->orphan = true;
                    bc->retiring = true;
                } else {
                    pw->r = old; /* names for the error lines */
                    if (bc->head)
                        bc_fail(w, bc, "unavailable");
                    bc->retiring = true;
                }
            }
        }
    }
    free(oldpool);
    pw->r = r;
    /* Routed from now on, or standalone again: the connections' executor. */
    ss_worker_set_executors(w, r ? ss_px_execute : NULL, r ? ss_px_execute_udp : NULL);
    ss_px_worker_check(w, ss_clock_mono_ms());
}

/* On stop: fail (orphaned) ops, close every back-end connection. */
void ss_px_worker_close_all(struct ss_worker *w)
{
    struct px_worker *pw = pxw(w);
    while (pw->all) {
        struct px_bconn *bc = pw->all;
        if (bc->head)
            bc_fail(w, bc, "unavailable");
        bc_close_fd(bc);
        bc_unlink_free(pw, bc);
    }
    free(pw->pool);
    pw->pool = NULL;
    pw->cpb = 0;
    pw->r = NULL;
}
