/*
 * loadgen.c - closed-loop memcached text-protocol load generator for bench/.
 *
 * T threads, each driving its share of C TCP connections through its own
 * epoll set. Every connection keeps a pipeline of D requests in flight: it
 * sends a batch of D requests in one write, reads the D replies, and only
 * then sends the next batch (closed loop, so a slow server gets less load
 * rather than an unbounded queue). A request's latency runs from the moment
 * its batch was handed to the kernel to the moment its own reply was parsed.
 *
 * Latencies go into a log-bucketed histogram (128 sub-buckets per power of
 * two, so a bucket is < 0.8% wide) kept per thread and merged at the end.
 * The result is one JSON object on stdout; diagnostics go to stderr.
 *
 * Every phase is bounded in time: sockets are non-blocking, epoll_wait has a
 * short timeout, and an alarm() kills the process (after printing a JSON
 * error) if the run overstays prefill + warmup + duration + grace.
 *
 * Build: cc -O2 -pthread -o bench/out/loadgen bench/loadgen.c -lm
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "lg_hist.h"

/* memcached's text protocol caps keys at 250 bytes (protocol.txt). */
#define LG_KEY_MAX 250
#define LG_DEPTH_MAX 1024
#define LG_GRACE_S 5

enum lg_phase { LG_PREFILL, LG_WARMUP, LG_MEASURE, LG_STOP };
enum lg_op { LG_GET, LG_SET };

struct lg_opts {
    const char *host;
    int port;
    int threads;
    int conns;
    int depth;
    double get_ratio;
    int key_size;
    uint64_t keys;
    int value_size;
    double zipf;            /* 0 = uniform */
    double duration;
    double warmup;
    int prefill;
    double prefill_timeout;
    uint64_t seed;
};

struct lg_stats {
    uint64_t ops, gets, sets, hits, misses;
    uint64_t err_lines;     /* ERROR / CLIENT_ERROR / SERVER_ERROR / NOT_STORED */
    uint64_t err_bad_reply; /* unparsable reply, wrong value length */
    uint64_t err_conn;      /* connections lost or never made */
    uint64_t prefill_sets, prefill_errors;
};

struct lg_conn {
    int fd;
    int dead;
    uint64_t rng;
    /* outgoing batch */
    char *wbuf;
    size_t wlen, wpos;
    /* replies */
    char *rbuf;
    size_t rcap, rlen, rpos;
    enum lg_op ops[LG_DEPTH_MAX];
    int nsent, nrecv;
    uint64_t batch_ns;
    /* prefill: this connection sets keys [pf_next, pf_end) */
    uint64_t pf_next, pf_end;
};

struct lg_thread {
    pthread_t tid;
    int idx;
    int nconns;
    struct lg_conn *conns;
    int epfd;
    struct lg_hist hist;
    struct lg_stats st;
};

static struct lg_opts g_opt = {
    .host = "127.0.0.1", .port = 11211, .threads = 1, .conns = 50,
    .depth = 1, .get_ratio = 0.9, .key_size = 32, .keys = 100000,
    .value_size = 100, .zipf = 0.0, .duration = 10.0, .warmup = 2.0,
    .prefill = 0, .prefill_timeout = 300.0, .seed = 42,
};
static _Atomic int g_phase = LG_PREFILL;
static pthread_barrier_t g_barrier;
static char *g_value;       /* value bytes + "\r\n" shared by all sets */
static double g_prefill_deadline;
/* scrambled zipf (Gray et al., as YCSB does it): constants for the key space */
static double g_zeta_n, g_zeta2, g_alpha, g_eta;

/* lg_now_ns: monotonic clock in ns. */
static uint64_t lg_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* lg_rand: xorshift64*; one state per connection so threads share nothing. */
static uint64_t lg_rand(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1Dull;
}

/* lg_rand01: uniform double in [0, 1). */
static double lg_rand01(uint64_t *s)
{
    return (double)(lg_rand(s) >> 11) * (1.0 / 9007199254740992.0);
}

/* lg_zipf_init: precompute the zipf constants for n keys; O(n) once. */
static void lg_zipf_init(uint64_t n, double theta)
{
    double z = 0.0;
    for (uint64_t i = 1; i <= n; i++)
        z += 1.0 / pow((double)i, theta);
    g_zeta_n = z;
    g_zeta2 = 1.0 + 1.0 / pow(2.0, theta);
    g_alpha = 1.0 / (1.0 - theta);
    g_eta = (1.0 - pow(2.0 / (double)n, 1.0 - theta)) / (1.0 - g_zeta2 / g_zeta_n);
}

/* lg_pick_key: a key number in [0, keys), uniform or scrambled zipf (the
 * rank is hashed so hot keys are spread over the key space, not clustered
 * at its start). */
static uint64_t lg_pick_key(uint64_t *rng)
{
    uint64_t n = g_opt.keys;
    if (g_opt.zipf <= 0.0)
        return lg_rand(rng) % n;
    double u = lg_rand01(rng);
    double uz = u * g_zeta_n;
    uint64_t rank;
    if (uz < 1.0)
        rank = 0;
    else if (uz < g_zeta2)
        rank = 1;
    else
        rank = (uint64_t)((double)n * pow(g_eta * u - g_eta + 1.0, g_alpha));
    if (rank >= n)
        rank = n - 1;
    /* FNV-1a over the rank's bytes */
    uint64_t hsh = 0xcbf29ce484222325ull;
    for (int i = 0; i < 8; i++) {
        hsh ^= (rank >> (8 * i)) & 0xff;
        hsh *= 0x100000001b3ull;
    }
    return hsh % n;
}

/* lg_put_key: write key number k, padded to exactly key_size bytes, at p;
 * returns the bytes written. */
static size_t lg_put_key(char *p, uint64_t k)
{
    int digits = g_opt.key_size - 4;
    memcpy(p, "key:", 4);
    char *d = p + 4 + digits;
    for (int i = 0; i < digits; i++) {
        *--d = (char)('0' + k % 10);
        k /= 10;
    }
    return (size_t)g_opt.key_size;
}

/* lg_append_req: append one get or set of key k to the connection's batch. */
static void lg_append_req(struct lg_conn *c, enum lg_op op, uint64_t k)
{
    char *p = c->wbuf + c->wlen;
    if (op == LG_GET) {
        memcpy(p, "get ", 4);
        p += 4;
        p += lg_put_key(p, k);
        memcpy(p, "\r\n", 2);
        p += 2;
    } else {
        memcpy(p, "set ", 4);
        p += 4;
        p += lg_put_key(p, k);
        p += sprintf(p, " 0 0 %d\r\n", g_opt.value_size);
        memcpy(p, g_value, (size_t)g_opt.value_size + 2);
        p += g_opt.value_size + 2;
    }
    c->ops[c->nsent++] = op;
    c->wlen = (size_t)(p - c->wbuf);
}

/* lg_flush: write what is left of the batch; 0, or -errno on a dead socket.
 * Leftovers stay queued for EPOLLOUT. */
static int lg_flush(struct lg_thread *t, struct lg_conn *c)
{
    while (c->wpos < c->wlen) {
        ssize_t n = send(c->fd, c->wbuf + c->wpos, c->wlen - c->wpos, MSG_NOSIGNAL);
        if (n > 0) {
            c->wpos += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT, .data.ptr = c };
            epoll_ctl(t->epfd, EPOLL_CTL_MOD, c->fd, &ev);
            return 0;
        }
        return n < 0 ? -errno : -EPIPE;
    }
    return 0;
}

/* lg_next_batch: build and send the connection's next batch: prefill sets
 * while its prefill range lasts, else the measured get/set mix. Returns 0,
 * or -errno. An exhausted prefill range sends nothing. */
static int lg_next_batch(struct lg_thread *t, struct lg_conn *c, int phase)
{
    c->wlen = c->wpos = 0;
    c->nsent = c->nrecv = 0;
    for (int i = 0; i < g_opt.depth; i++) {
        if (phase == LG_PREFILL) {
            if (c->pf_next >= c->pf_end)
                break;
            lg_append_req(c, LG_SET, c->pf_next++);
        } else {
            enum lg_op op = lg_rand01(&c->rng) < g_opt.get_ratio ? LG_GET : LG_SET;
            lg_append_req(c, op, lg_pick_key(&c->rng));
        }
    }
    if (c->nsent == 0)
        return 0;
    c->batch_ns = lg_now_ns();
    return lg_flush(t, c);
}

/* lg_find_crlf: the '\n' ending the line at p, or NULL if not buffered yet. */
static const char *lg_find_crlf(const char *p, const char *end)
{
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    return nl;
}

/*
 * lg_parse_one: parse one complete reply for an op from [p, end).
 * Returns the bytes consumed, 0 if the reply is not all buffered yet, or -1
 * if the bytes are not a memcached reply we can resynchronise from.
 * *kind is set to 0 ok-miss/stored, 1 hit, 2 error line, 3 bad reply.
 */
static ssize_t lg_parse_one(enum lg_op op, const char *p, const char *end, int *kind)
{
    const char *nl = lg_find_crlf(p, end);
    if (!nl)
        return (end - p) > 8192 ? -1 : 0;
    size_t len = (size_t)(nl - p) + 1;
    if (!strncmp(p, "ERROR", 5) || !strncmp(p, "CLIENT_ERROR", 12) ||
        !strncmp(p, "SERVER_ERROR", 12)) {
        *kind = 2;
        return (ssize_t)len;
    }
    if (op == LG_SET) {
        if (len == 8 && !memcmp(p, "STORED\r\n", 8))
            *kind = 0;
        else if (!strncmp(p, "NOT_STORED", 10))
            *kind = 2;
        else
            return -1;
        return (ssize_t)len;
    }
    if (len == 5 && !memcmp(p, "END\r\n", 5)) {
        *kind = 0;
        return (ssize_t)len;
    }
    if (strncmp(p, "VALUE ", 6))
        return -1;
    /* VALUE <key> <flags> <bytes>[ <cas>]\r\n<data>\r\nEND\r\n */
    const char *q = p + 6;
    int field = 0;
    long bytes = -1;
    while (q < nl && field < 3) {
        while (q < nl && *q == ' ')
            q++;
        const char *s = q;
        while (q < nl && *q != ' ' && *q != '\r')
            q++;
        if (field == 2) {
            char *e;
            bytes = strtol(s, &e, 10);
            if (e != q)
                bytes = -1;
        }
        field++;
    }
    if (bytes < 0)
        return -1;
    size_t need = len + (size_t)bytes + 2 + 5;
    if ((size_t)(end - p) < need)
        return 0;
    const char *tail = p + len + bytes;
    if (memcmp(tail, "\r\nEND\r\n", 7))
        return -1;
    *kind = bytes == g_opt.value_size ? 1 : 3;
    return (ssize_t)need;
}

/* lg_conn_kill: give up on a connection (server closed it or garbled it). */
static void lg_conn_kill(struct lg_thread *t, struct lg_conn *c)
{
    if (c->dead)
        return;
    c->dead = 1;
    epoll_ctl(t->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    t->st.err_conn++;
}

/*
 * lg_on_readable: read what the socket has, account every complete reply,
 * and start the next batch once the current one is fully answered.
 * Returns 0, or -errno when the connection must be dropped.
 */
static int lg_on_readable(struct lg_thread *t, struct lg_conn *c)
{
    for (;;) {
        if (c->rcap - c->rlen < 4096 && c->rpos > 0) {
            memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
            c->rlen -= c->rpos;
            c->rpos = 0;
        }
        ssize_t n = recv(c->fd, c->rbuf + c->rlen, c->rcap - c->rlen, 0);
        if (n == 0)
            return -ECONNRESET;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            return -errno;
        }
        c->rlen += (size_t)n;
        int phase = atomic_load_explicit(&g_phase, memory_order_relaxed);
        uint64_t now = lg_now_ns();
        while (c->nrecv < c->nsent) {
            int kind = 0;
            enum lg_op op = c->ops[c->nrecv];
            ssize_t used = lg_parse_one(op, c->rbuf + c->rpos, c->rbuf + c->rlen, &kind);
            if (used < 0) {
                t->st.err_bad_reply++;
                return -EPROTO;
            }
            if (used == 0)
                break;
            c->rpos += (size_t)used;
            c->nrecv++;
            if (phase == LG_PREFILL) {
                t->st.prefill_sets++;
                if (kind != 0)
                    t->st.prefill_errors++;
            } else if (phase == LG_MEASURE) {
                struct lg_stats *s = &t->st;
                s->ops++;
                if (op == LG_GET)
                    s->gets++;
                else
                    s->sets++;
                if (kind == 1)
                    s->hits++;
                else if (kind == 0 && op == LG_GET)
                    s->misses++;
                else if (kind == 2)
                    s->err_lines++;
                else if (kind == 3)
                    s->err_bad_reply++;
                lg_hist_add(&t->hist, now - c->batch_ns);
            }
        }
        if (c->rpos == c->rlen)
            c->rpos = c->rlen = 0;
        if (c->nrecv == c->nsent && c->wpos == c->wlen) {
            if (c->rlen != 0) {
                t->st.err_bad_reply++;  /* bytes nobody asked for */
                return -EPROTO;
            }
            if (phase == LG_STOP)
                return 0;
            if (phase == LG_PREFILL && c->pf_next >= c->pf_end) {
                c->nsent = c->nrecv = 0;
                return 0;
            }
            int rc = lg_next_batch(t, c, phase);
            if (rc)
                return rc;
        }
        if ((size_t)n < 4096)
            return 0;   /* short read: the socket is most likely drained */
    }
}

/* lg_connect: a non-blocking TCP connection to the server, or -errno. */
static int lg_connect(const struct sockaddr_in *sa)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -errno;
    /* connect() honours the send timeout, so a wedged server cannot hang us */
    struct timeval tv = { .tv_sec = 5 };
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (const struct sockaddr *)sa, sizeof *sa) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    return fd;
}

/* lg_conn_idle: nothing left to send or receive on this connection. */
static int lg_conn_idle(const struct lg_conn *c)
{
    return c->dead || (c->nrecv == c->nsent && c->wpos == c->wlen);
}

/*
 * lg_poll: one epoll round over the thread's connections (50 ms at most),
 * dispatching writes and reads; dead connections are dropped and counted.
 */
static void lg_poll(struct lg_thread *t)
{
    struct epoll_event evs[64];
    int n = epoll_wait(t->epfd, evs, 64, 50);
    for (int i = 0; i < n; i++) {
        struct lg_conn *c = evs[i].data.ptr;
        if (c->dead)
            continue;
        int rc = 0;
        if (evs[i].events & EPOLLOUT) {
            rc = lg_flush(t, c);
            if (!rc && c->wpos == c->wlen) {
                struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
                epoll_ctl(t->epfd, EPOLL_CTL_MOD, c->fd, &ev);
            }
        }
        if (!rc && (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
            rc = lg_on_readable(t, c);
        if (rc)
            lg_conn_kill(t, c);
    }
}

/* lg_thread_main: connect, prefill, then drive the measured load until the
 * main thread says stop. */
static void *lg_thread_main(void *arg)
{
    struct lg_thread *t = arg;
    t->epfd = epoll_create1(0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)g_opt.port) };
    inet_pton(AF_INET, g_opt.host, &sa.sin_addr);
    for (int i = 0; i < t->nconns; i++) {
        struct lg_conn *c = &t->conns[i];
        int fd = lg_connect(&sa);
        if (fd < 0) {
            c->dead = 1;
            t->st.err_conn++;
            continue;
        }
        c->fd = fd;
        struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
        epoll_ctl(t->epfd, EPOLL_CTL_ADD, fd, &ev);
    }

    if (g_opt.prefill) {
        for (int i = 0; i < t->nconns; i++) {
            struct lg_conn *c = &t->conns[i];
            if (!c->dead && lg_next_batch(t, c, LG_PREFILL))
                lg_conn_kill(t, c);
        }
        for (;;) {
            int busy = 0;
            for (int i = 0; i < t->nconns; i++) {
                const struct lg_conn *c = &t->conns[i];
                if (!c->dead && (!lg_conn_idle(c) || c->pf_next < c->pf_end))
                    busy = 1;
            }
            if (!busy)
                break;
            if ((double)lg_now_ns() / 1e9 > g_prefill_deadline) {
                fprintf(stderr, "loadgen: prefill timed out\n");
                for (int i = 0; i < t->nconns; i++)
                    if (!lg_conn_idle(&t->conns[i]))
                        lg_conn_kill(t, &t->conns[i]);
                break;
            }
            lg_poll(t);
        }
    }
    pthread_barrier_wait(&g_barrier);   /* prefill done everywhere */
    pthread_barrier_wait(&g_barrier);   /* main has switched to warmup */

    int phase = atomic_load(&g_phase);
    for (int i = 0; i < t->nconns; i++) {
        struct lg_conn *c = &t->conns[i];
        if (!c->dead && lg_next_batch(t, c, phase))
            lg_conn_kill(t, c);
    }
    while (atomic_load_explicit(&g_phase, memory_order_relaxed) != LG_STOP)
        lg_poll(t);
    for (int i = 0; i < t->nconns; i++)
        if (!t->conns[i].dead)
            close(t->conns[i].fd);
    close(t->epfd);
    return NULL;
}

/* lg_sleep: sleep s seconds, resuming after signals. */
static void lg_sleep(double s)
{
    struct timespec ts = { .tv_sec = (time_t)s, .tv_nsec = (long)((s - (double)(time_t)s) * 1e9) };
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* lg_on_alarm: the run overstayed its bound; say so in JSON and leave. */
static void lg_on_alarm(int sig)
{
    (void)sig;
    static const char msg[] = "{\"error\": \"loadgen hard time limit reached\"}\n";
    ssize_t r = write(1, msg, sizeof msg - 1);
    (void)r;
    _exit(3);
}

/* lg_usage: the options, on stderr. */
static void lg_usage(void)
{
    fprintf(stderr,
            "usage: loadgen [options]\n"
            "  --host A --port P        server (numeric IPv4; default 127.0.0.1:11211)\n"
            "  --threads T --conns C    threads, connections in all (1, 50)\n"
            "  --depth D                requests in flight per connection (1)\n"
            "  --get-ratio R            share of gets, rest sets (0.9)\n"
            "  --key-size K             key length in bytes (32)\n"
            "  --keys S                 key space (100000)\n"
            "  --value-size V           value length in bytes (100)\n"
            "  --zipf THETA             zipf skew, 0 = uniform (0)\n"
            "  --duration S --warmup S  measured and unmeasured seconds (10, 2)\n"
            "  --prefill                set every key once before measuring\n"
            "  --prefill-timeout S      bound on the prefill (300)\n"
            "  --seed N                 random seed (42)\n");
}

/* lg_parse_args: fill g_opt from argv; 0, or -EINVAL after printing why. */
static int lg_parse_args(int argc, char **argv)
{
    static const struct option lo[] = {
        {"host", 1, 0, 'h'}, {"port", 1, 0, 'p'}, {"threads", 1, 0, 't'},
        {"conns", 1, 0, 'c'}, {"depth", 1, 0, 'd'}, {"get-ratio", 1, 0, 'r'},
        {"key-size", 1, 0, 'k'}, {"keys", 1, 0, 's'}, {"value-size", 1, 0, 'v'},
        {"zipf", 1, 0, 'z'}, {"duration", 1, 0, 'D'}, {"warmup", 1, 0, 'W'},
        {"prefill", 0, 0, 'P'}, {"prefill-timeout", 1, 0, 'T'}, {"seed", 1, 0, 'S'},
        {"help", 0, 0, '?'}, {0, 0, 0, 0},
    };
    int o;
    while ((o = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (o) {
        case 'h': g_opt.host = optarg; break;
        case 'p': g_opt.port = atoi(optarg); break;
        case 't': g_opt.threads = atoi(optarg); break;
        case 'c': g_opt.conns = atoi(optarg); break;
        case 'd': g_opt.depth = atoi(optarg); break;
        case 'r': g_opt.get_ratio = atof(optarg); break;
        case 'k': g_opt.key_size = atoi(optarg); break;
        case 's': g_opt.keys = strtoull(optarg, NULL, 10); break;
        case 'v': g_opt.value_size = atoi(optarg); break;
        case 'z': g_opt.zipf = atof(optarg); break;
        case 'D': g_opt.duration = atof(optarg); break;
        case 'W': g_opt.warmup = atof(optarg); break;
        case 'P': g_opt.prefill = 1; break;
        case 'T': g_opt.prefill_timeout = atof(optarg); break;
        case 'S': g_opt.seed = strtoull(optarg, NULL, 10); break;
        default: lg_usage(); return -EINVAL;
        }
    }
    struct in_addr a;
    int digits = 1;
    for (uint64_t k = g_opt.keys > 0 ? g_opt.keys - 1 : 0; k >= 10; k /= 10)
        digits++;
    const char *why = NULL;
    if (inet_pton(AF_INET, g_opt.host, &a) != 1)
        why = "--host must be a numeric IPv4 address";
    else if (g_opt.port <= 0 || g_opt.port > 65535)
        why = "--port out of range";
    else if (g_opt.threads < 1 || g_opt.conns < g_opt.threads)
        why = "need 1 <= threads <= conns";
    else if (g_opt.depth < 1 || g_opt.depth > LG_DEPTH_MAX)
        why = "--depth must be 1..1024";
    else if (g_opt.get_ratio < 0.0 || g_opt.get_ratio > 1.0)
        why = "--get-ratio must be in [0, 1]";
    else if (g_opt.keys < 1)
        why = "--keys must be >= 1";
    else if (g_opt.key_size > LG_KEY_MAX || g_opt.key_size < 4 + digits)
        why = "--key-size must fit \"key:\" plus the key number, at most 250";
    else if (g_opt.value_size < 0 || g_opt.value_size > 64 * 1024 * 1024)
        why = "--value-size must be 0..64MiB";
    else if (g_opt.zipf < 0.0 || g_opt.zipf >= 1.0)
        why = "--zipf must be in [0, 1)";
    else if (g_opt.duration <= 0.0 || g_opt.warmup < 0.0)
        why = "--duration must be > 0 and --warmup >= 0";
    if (why) {
        fprintf(stderr, "loadgen: %s\n", why);
        return -EINVAL;
    }
    return 0;
}

/*
 * main: parse options, start the threads, run prefill -> warmup -> measure
 * on the clock, stop, merge per-thread histograms and counters, print JSON.
 * Exit 0 after a run (errors are in the JSON), 2 on bad options, 3 when the
 * hard time limit fires.
 */
int main(int argc, char **argv)
{
    if (lg_parse_args(argc, argv))
        return 2;
    signal(SIGPIPE, SIG_IGN);

    g_value = malloc((size_t)g_opt.value_size + 2);
    for (int i = 0; i < g_opt.value_size; i++)
        g_value[i] = (char)('a' + i % 26);
    memcpy(g_value + g_opt.value_size, "\r\n", 2);
    if (g_opt.zipf > 0.0)
        lg_zipf_init(g_opt.keys, g_opt.zipf);

    double bound = g_opt.warmup + g_opt.duration + LG_GRACE_S + 10.0 /* connects */;
    if (g_opt.prefill)
        bound += g_opt.prefill_timeout;
    signal(SIGALRM, lg_on_alarm);
    alarm((unsigned)ceil(bound));

    int T = g_opt.threads, C = g_opt.conns;
    struct lg_thread *th = calloc((size_t)T, sizeof *th);
    size_t req_max = (size_t)g_opt.key_size + (size_t)g_opt.value_size + 64;
    size_t rcap = (size_t)g_opt.value_size + LG_KEY_MAX + 128;
    rcap = rcap * 2 < 65536 ? 65536 : rcap * 2;
    for (int i = 0; i < T; i++) {
        th[i].idx = i;
        th[i].conns = calloc((size_t)(C / T + 1), sizeof(struct lg_conn));
    }
    for (int g = 0; g < C; g++) {
        struct lg_thread *t = &th[g % T];
        struct lg_conn *c = &t->conns[t->nconns++];
        c->fd = -1;
        c->rng = g_opt.seed * 0x9E3779B97F4A7C15ull + (uint64_t)g * 0xBF58476D1CE4E5B9ull + 1;
        c->wbuf = malloc(req_max * (size_t)g_opt.depth);
        c->rcap = rcap;
        c->rbuf = malloc(rcap);
        c->pf_next = g_opt.keys * (uint64_t)g / (uint64_t)C;
        c->pf_end = g_opt.keys * (uint64_t)(g + 1) / (uint64_t)C;
    }

    pthread_barrier_init(&g_barrier, NULL, (unsigned)T + 1);
    uint64_t t_start = lg_now_ns();
    g_prefill_deadline = (double)t_start / 1e9 + g_opt.prefill_timeout;
    for (int i = 0; i < T; i++)
        pthread_create(&th[i].tid, NULL, lg_thread_main, &th[i]);
    pthread_barrier_wait(&g_barrier);
    uint64_t t_prefilled = lg_now_ns();
    atomic_store(&g_phase, LG_WARMUP);
    pthread_barrier_wait(&g_barrier);
    lg_sleep(g_opt.warmup);
    atomic_store(&g_phase, LG_MEASURE);
    uint64_t t0 = lg_now_ns();
    lg_sleep(g_opt.duration);
    atomic_store(&g_phase, LG_STOP);
    uint64_t t1 = lg_now_ns();
    for (int i = 0; i < T; i++)
        pthread_join(th[i].tid, NULL);

    static struct lg_hist h;
    struct lg_stats s = {0};
    for (int i = 0; i < T; i++) {
        for (unsigned b = 0; b < LG_BUCKETS; b++)
            h.count[b] += th[i].hist.count[b];
        h.total += th[i].hist.total;
        h.sum_ns += th[i].hist.sum_ns;
        if (th[i].hist.max_ns > h.max_ns)
            h.max_ns = th[i].hist.max_ns;
        s.ops += th[i].st.ops;
        s.gets += th[i].st.gets;
        s.sets += th[i].st.sets;
        s.hits += th[i].st.hits;
        s.misses += th[i].st.misses;
        s.err_lines += th[i].st.err_lines;
        s.err_bad_reply += th[i].st.err_bad_reply;
        s.err_conn += th[i].st.err_conn;
        s.prefill_sets += th[i].st.prefill_sets;
        s.prefill_errors += th[i].st.prefill_errors;
    }
    double secs = (double)(t1 - t0) / 1e9;
    printf("{\"ops_per_sec\": %.1f, \"seconds\": %.3f, \"ops\": %llu, \"gets\": %llu, "
           "\"sets\": %llu, \"hits\": %llu, \"misses\": %llu, \"errors\": %llu, "
           "\"error_lines\": %llu, \"bad_replies\": %llu, \"conn_errors\": %llu, "
           "\"p50_us\": %.1f, \"p90_us\": %.1f, \"p99_us\": %.1f, \"p999_us\": %.1f, "
           "\"max_us\": %.1f, \"mean_us\": %.1f, "
           "\"prefill\": {\"sets\": %llu, \"errors\": %llu, \"seconds\": %.3f}, "
           "\"config\": {\"threads\": %d, \"conns\": %d, \"depth\": %d, \"get_ratio\": %.3f, "
           "\"key_size\": %d, \"keys\": %llu, \"value_size\": %d, \"zipf\": %.3f, "
           "\"duration\": %.3f, \"warmup\": %.3f}}\n",
           s.ops / secs, secs, (unsigned long long)s.ops, (unsigned long long)s.gets,
           (unsigned long long)s.sets, (unsigned long long)s.hits,
           (unsigned long long)s.misses,
           (unsigned long long)(s.err_lines + s.err_bad_reply + s.err_conn),
           (unsigned long long)s.err_lines, (unsigned long long)s.err_bad_reply,
           (unsigned long long)s.err_conn,
           lg_hist_quantile(&h, 0.50), lg_hist_quantile(&h, 0.90),
           lg_hist_quantile(&h, 0.99), lg_hist_quantile(&h, 0.999),
           (double)h.max_ns / 1000.0, h.total ? h.sum_ns / (double)h.total / 1000.0 : 0.0,
           (unsigned long long)s.prefill_sets, (unsigned long long)s.prefill_errors,
           (double)(t_prefilled - t_start) / 1e9,
           g_opt.threads, g_opt.conns, g_opt.depth, g_opt.get_ratio, g_opt.key_size,
           (unsigned long long)g_opt.keys, g_opt.value_size, g_opt.zipf,
           g_opt.duration, g_opt.warmup);
    return 0;
}
