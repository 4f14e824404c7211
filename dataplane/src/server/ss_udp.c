/*
 * ss_udp.c - memcached over UDP: frame header, replies cut into datagrams,
 * and per-source reply budgets against amplification.
 *
 * A request is one datagram: 8-byte header (request id, sequence number,
 * total datagrams, reserved; big-endian uint16 each) then text protocol. It
 * is self-contained: the payload runs through ss_mc_process() on a reusable
 * per-worker struct ss_conn, and whatever incomplete command trails it is
 * discarded. The answer is cut into datagrams of at most 1400 bytes
 * (header included), all carrying the request id, seq 0..n-1 and total n.
 *
 * A spoofed source turns a 30-byte `get` into a megabyte aimed at a victim,
 * so replies are charged to a token bucket per source address. The buckets
 * are shared by all workers (SO_REUSEPORT spreads one source's datagrams
 * over workers by source port, so per-worker buckets would multiply the
 * budget by the worker count); each slot has its own tiny spin lock.
 */
#define _GNU_SOURCE /* accept4, recvmmsg, sendmmsg */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>

#include "common/ss_clock.h"
#include "common/ss_hash.h"
#include "mc/ss_mc.h"
#include "ss_server_internal.h"

#define SS_UDP_RX_BATCH 8          /* datagrams per recvmmsg */
#define SS_UDP_RX_ROUNDS 4         /* recvmmsg calls per wake-up */
#define SS_UDP_RX_BYTES 65536u     /* largest UDP payload, rounded up */
#define SS_UDP_TX_BATCH 64         /* datagrams per sendmmsg */
#define SS_UDP_OUT_TRIM (4u << 20) /* shrink the reply buffer past this */
#define SS_UDP_PAYLOAD_MAX (SS_UDP_DATAGRAM_MAX - SS_UDP_HEADER_BYTES)

struct ss_udp_slot {
    atomic_int lock;
    uint8_t family;    /* 0 = never used */
    uint8_t addr[16];  /* IPv4 in the first 4 bytes */
    double tokens;     /* reply bytes the source may still receive */
    uint64_t last_ns;  /* when tokens was last refilled */
} __attribute__((aligned(64)));

struct ss_udp_budget {
    uint64_t seed;       /* keeps slot collisions unpredictable to clients */
    double rate;         /* bytes per second; 0 = no limit */
    double burst;
    struct ss_udp_slot slots[SS_UDP_BUDGET_SLOTS];
};

struct ss_udp_worker {
    int fd;
    struct ss_conn conn; /* reused for every datagram */
    char *rxbuf;         /* SS_UDP_RX_BATCH * SS_UDP_RX_BYTES */
    struct mmsghdr rx[SS_UDP_RX_BATCH];
    struct iovec rxiov[SS_UDP_RX_BATCH];
    struct sockaddr_storage rxaddr[SS_UDP_RX_BATCH];
    struct mmsghdr tx[SS_UDP_TX_BATCH];
    struct iovec txiov[SS_UDP_TX_BATCH][2];
    uint8_t txhdr[SS_UDP_TX_BATCH][SS_UDP_HEADER_BYTES];
};

/*
 * Create the reply budget table: each source address may receive
 * bytes_per_sec on average and burst_bytes at once. bytes_per_sec == 0 turns
 * the limit off. Returns NULL on allocation failure.
 */
struct ss_udp_budget *ss_udp_budget_new(uint32_t bytes_per_sec, uint32_t burst_bytes)
{
    struct ss_udp_budget *b = aligned_alloc(64, sizeof(*b));
    if (!b)
        return NULL;
    memset(b, 0, sizeof(*b));
    if (getrandom(&b->seed, sizeof(b->seed), GRND_NONBLOCK) != sizeof(b->seed))
        b->seed = ss_clock_mono_ns() ^ (uint64_t)(uintptr_t)b;
    b->rate = bytes_per_sec;
    b->burst = burst_bytes;
    return b;
}

void ss_udp_budget_free(struct ss_udp_budget *b)
{
    free(b);
}

/* The address part of a source (no port); v4-mapped IPv6 counts as IPv4. */
static int udp_source_key(const struct sockaddr_storage *ss, uint8_t *family, uint8_t addr[16])
{
    memset(addr, 0, 16);
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
        memcpy(addr, &sin->sin_addr, 4);
        *family = AF_INET;
        return 0;
    }
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
        if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
            memcpy(addr, (const uint8_t *)&sin6->sin6_addr + 12, 4);
            *family = AF_INET;
        } else {
            memcpy(addr, &sin6->sin6_addr, 16);
            *family = AF_INET6;
        }
        return 0;
    }
    return -EAFNOSUPPORT;
}

/*
 * Charge `cost` reply bytes to the source's bucket. Returns 1 when the reply
 * may go out, 0 when it must be dropped.
 *
 * A slot holds one address. Another address hashing to it takes the slot
 * over only once the holder's bucket has refilled completely (it then holds
 * nothing worth remembering); until then the two share one bucket, which
 * can only be stricter than the configured budget, never looser.
 */
static int udp_budget_take(struct ss_udp_budget *b, const struct sockaddr_storage *src,
                           size_t cost)
{
    uint8_t family, addr[16];

    if (b->rate <= 0)
        return 1;
    if (udp_source_key(src, &family, addr) < 0)
        return 0;
    uint8_t keybuf[8 + 16 + 1];
    memcpy(keybuf, &b->seed, 8);
    memcpy(keybuf + 8, addr, 16);
    keybuf[24] = family;
    struct ss_udp_slot *s = &b->slots[ss_hash64(keybuf, sizeof(keybuf)) & (SS_UDP_BUDGET_SLOTS - 1)];
    uint64_t now = ss_clock_mono_ns();

    while (atomic_exchange_explicit(&s->lock, 1, memory_order_acquire))
        ;
    if (s->family == 0) {
        s->tokens = b->burst;
    } else if (now > s->last_ns) {
        s->tokens += (double)(now - s->last_ns) * b->rate / 1e9;
        if (s->tokens > b->burst)
            s->tokens = b->burst;
    }
    s->last_ns = now;
    if (s->family != family || memcmp(s->addr, addr, 16) != 0) {
        if (s->family == 0 || s->tokens >= b->burst) {
            s->family = family;
            memcpy(s->addr, addr, 16);
        }
    }
    int ok = s->tokens >= (double)cost;
    if (ok)
        s->tokens -= (double)cost;
    atomic_store_explicit(&s->lock, 0, memory_order_release);
    return ok;
}

/*
 * Set up worker w's UDP state for the bound socket fd. Returns 0 or -ENOMEM.
 */
int ss_udp_worker_init(struct ss_worker *w, int fd)
{
    struct ss_udp_worker *u = calloc(1, sizeof(*u));
    if (!u)
        return -ENOMEM;
    u->rxbuf = malloc((size_t)SS_UDP_RX_BATCH * SS_UDP_RX_BYTES);
    if (!u->rxbuf) {
        free(u);
        return -ENOMEM;
    }
    u->fd = fd;
    u->conn.fd = fd;
    u->conn.transport = SS_TRANSPORT_UDP;
    u->conn.state = SS_CONN_READING;
    u->conn.w = w;
    w->udp = u;
    return 0;
}

void ss_udp_worker_fini(struct ss_worker *w)
{
    struct ss_udp_worker *u = w->udp;
    if (!u)
        return;
    ss_buf_free(&u->conn.out);
    free(u->rxbuf);
    free(u);
    w->udp = NULL;
}

/* Give back a reply buffer that a huge answer grew (periodic, not per request). */
void ss_udp_trim(struct ss_worker *w)
{
    struct ss_udp_worker *u = w->udp;
    if (u && u->conn.out.cap > SS_UDP_OUT_TRIM)
        ss_buf_free(&u->conn.out);
}

static inline void put_be16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static inline uint16_t get_be16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

/*
 * Send u->conn.out to dst as datagrams of request `reqid`. A reply over the
 * source's budget, or one too long for 65535 datagrams, is dropped whole.
 * When the socket buffer fills mid-reply the rest is dropped: UDP clients
 * already cope with lost datagrams and the worker must not block.
 */
static void udp_reply(struct ss_worker *w, struct ss_udp_worker *u, uint16_t reqid,
                      const struct sockaddr_storage *dst, socklen_t dst_len)
{
    const struct ss_buf *out = &u->conn.out;
    size_t total = (out->len + SS_UDP_PAYLOAD_MAX - 1) / SS_UDP_PAYLOAD_MAX;

    if (total > UINT16_MAX ||
        !udp_budget_take(w->dp->udp_budget, dst, out->len + total * SS_UDP_HEADER_BYTES)) {
        w->ctr.udp_dropped_budget++;
        return;
    }

    size_t seq = 0;
    while (seq < total) {
        int nb_tx = 0;
        for (; nb_tx < SS_UDP_TX_BATCH && seq + (size_t)nb_tx < total; nb_tx++) {
            size_t k = seq + (size_t)nb_tx;
            size_t off = k * SS_UDP_PAYLOAD_MAX;
            size_t len = out->len - off < SS_UDP_PAYLOAD_MAX ? out->len - off : SS_UDP_PAYLOAD_MAX;
            uint8_t *h = u->txhdr[nb_tx];
            put_be16(h, reqid);
            put_be16(h + 2, (uint16_t)k);
            put_be16(h + 4, (uint16_t)total);
            put_be16(h + 6, 0);
            u->txiov[nb_tx][0] = (struct iovec){ h, SS_UDP_HEADER_BYTES };
            u->txiov[nb_tx][1] = (struct iovec){ out->data + off, len };
            u->tx[nb_tx].msg_hdr = (struct msghdr){
                .msg_name = (void *)dst,
                .msg_namelen = dst_len,
                .msg_iov = u->txiov[nb_tx],
                .msg_iovlen = 2,
            };
            u->tx[nb_tx].msg_len = 0;
        }
        int sent = sendmmsg(u->fd, u->tx, (unsigned)nb_tx, MSG_DONTWAIT);
        if (sent < 0 && errno == EINTR)
            continue;
        if (sent <= 0)
            return;
        for (int i = 0; i < sent; i++)
            w->ctr.bytes_written += u->tx[i].msg_len;
        seq += (size_t)sent;
        if (sent < nb_tx)
            return;
    }
}

/* The reused connection, set up for one datagram's payload from peer. */
static struct ss_conn *udp_conn_for(struct ss_worker *w, struct ss_udp_worker *u, char *payload,
                                    size_t len, const struct sockaddr_storage *peer,
                                    socklen_t peer_len)
{
    struct ss_conn *c = &u->conn;
    c->rbuf = payload;
    c->rcap = c->rlen = len;
    c->rpos = 0;
    c->rneed = 0;
    c->swallow = 0;
    c->close_after_write = 0;
    c->state = SS_CONN_READING;
    c->out.len = 0;
    memcpy(&c->peer, peer, sizeof(c->peer));
    c->peer_len = peer_len;
    c->last_active_ms = ss_clock_mono_ms();
    c->exec = w->exec_udp;
    return c;
}

/* Run the datagram set up on u->conn and answer it. */
static void udp_run(struct ss_worker *w, struct ss_udp_worker *u, uint16_t reqid,
                    const struct sockaddr_storage *peer, socklen_t peer_len)
{
    struct ss_conn *c = &u->conn;
    /* SS_MC_CLOSE means nothing here: there is no connection to close. */
    (void)ss_mc_process(c);
    if (c->out.len)
        udp_reply(w, u, reqid, peer, peer_len);
    /* The request buffer is reused by the next recvmmsg, or freed. */
    c->rbuf = NULL;
    c->rcap = c->rlen = c->rpos = 0;
}

/*
 * A datagram whose gets need device reads waits for them (as a TCP request
 * waits in a deferred reply), then runs whole with every read in hand, so
 * the worker never waits for the device on UDP either.
 */
struct udp_parked {
    struct ss_worker *w;
    uint16_t reqid;
    socklen_t peer_len;
    struct sockaddr_storage peer;
    unsigned pending;         /* reads not yet completed */
    struct ss_read *reads;    /* completed, linked for ss_store_read_use */
    size_t len;
    char payload[];
};

static void udp_parked_done(void *arg, struct ss_read *rd)
{
    struct udp_parked *pk = arg;
    struct ss_store_thread *t = &pk->w->st;
    ss_store_read_link(rd, pk->reads);
    pk->reads = rd;
    if (--pk->pending)
        return;
    struct ss_udp_worker *u = pk->w->udp;
    if (u) { /* else the worker is stopping: nobody to answer */
        udp_conn_for(pk->w, u, pk->payload, pk->len, &pk->peer, pk->peer_len);
        ss_store_read_use(t, pk->reads);
        udp_run(pk->w, u, pk->reqid, &pk->peer, pk->peer_len);
        ss_store_read_use(t, NULL);
    }
    for (struct ss_read *r = pk->reads; r;) {
        struct ss_read *next = ss_store_read_next(r);
        ss_store_read_release(t, r);
        r = next;
    }
    free(pk);
}

/* Park the datagram if its gets started device reads; true when parked. */
static bool udp_park(struct ss_worker *w, struct ss_udp_worker *u, char *payload, size_t len,
                     uint16_t reqid, int i)
{
    struct ss_read *reads;
    struct ss_conn *c = udp_conn_for(w, u, payload, len, &u->rxaddr[i],
                                     u->rx[i].msg_hdr.msg_namelen);
    unsigned n = ss_mc_prefetch(c, payload, len, &reads);
    if (!n)
        return false; /* nothing on the device: run it now */
    struct udp_parked *pk = malloc(sizeof(*pk) + len);
    if (pk) {
        pk->w = w;
        pk->reqid = reqid;
        memcpy(&pk->peer, &u->rxaddr[i], sizeof(pk->peer));
        pk->peer_len = u->rx[i].msg_hdr.msg_namelen;
        pk->pending = n;
        pk->reads = NULL;
        pk->len = len;
        memcpy(pk->payload, payload, len);
    }
    for (struct ss_read *r = reads; r;) {
        struct ss_read *next = ss_store_read_next(r);
        ss_store_read_link(r, NULL);
        /* Out of memory: the reads complete with nobody waiting, and the
         * datagram runs now, reading synchronously. */
        if (pk)
            ss_store_read_on_done(r, udp_parked_done, pk);
        r = next;
    }
    if (!pk)
        return false;
    w->ctr.udp_parked++;
    return true;
}

/* Check one received datagram's frame, run it, answer it. */
static void udp_handle(struct ss_worker *w, struct ss_udp_worker *u, int i)
{
    const uint8_t *p = (const uint8_t *)u->rxbuf + (size_t)i * SS_UDP_RX_BYTES;
    size_t len = u->rx[i].msg_len;

    w->ctr.udp_requests++;
    w->ctr.bytes_read += len;
    if (len < SS_UDP_HEADER_BYTES || (u->rx[i].msg_hdr.msg_flags & MSG_TRUNC)) {
        w->ctr.udp_dropped_malformed++;
        return;
    }
    uint16_t reqid = get_be16(p);
    uint16_t seq = get_be16(p + 2);
    uint16_t total = get_be16(p + 4);
    if (total != 1 || seq != 0) {
        w->ctr.udp_dropped_multi++;
        return;
    }

    char *payload = (char *)p + SS_UDP_HEADER_BYTES;
    size_t plen = len - SS_UDP_HEADER_BYTES;
    if (w->st.io && udp_park(w, u, payload, plen, reqid, i))
        return;
    udp_conn_for(w, u, payload, plen, &u->rxaddr[i], u->rx[i].msg_hdr.msg_namelen);
    udp_run(w, u, reqid, &u->rxaddr[i], u->rx[i].msg_hdr.msg_namelen);
}

/*
 * Drain datagrams from worker w's UDP socket, a few batches per wake-up so
 * TCP connections on the same worker are not starved.
 */
void ss_udp_on_readable(struct ss_worker *w)
{
    struct ss_udp_worker *u = w->udp;
    if (!u)
        return;
    for (int round = 0; round < SS_UDP_RX_ROUNDS; round++) {
        for (int i = 0; i < SS_UDP_RX_BATCH; i++) {
            u->rxiov[i] = (struct iovec){ u->rxbuf + (size_t)i * SS_UDP_RX_BYTES,
                                          SS_UDP_RX_BYTES };
            u->rx[i].msg_hdr = (struct msghdr){
                .msg_name = &u->rxaddr[i],
                .msg_namelen = sizeof(u->rxaddr[i]),
                .msg_iov = &u->rxiov[i],
                .msg_iovlen = 1,
            };
            u->rx[i].msg_len = 0;
        }
        int nb_rx = recvmmsg(u->fd, u->rx, SS_UDP_RX_BATCH, MSG_DONTWAIT, NULL);
        if (nb_rx < 0 && errno == EINTR)
            continue;
        if (nb_rx <= 0)
            return;
        for (int i = 0; i < nb_rx; i++)
            udp_handle(w, u, i);
        if (nb_rx < SS_UDP_RX_BATCH)
            return;
    }
}
