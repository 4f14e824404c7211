/*
 * ss_conn.h - one client connection, as the server and the protocol see it.
 *
 * The server (ss_worker.c, ss_udp.c) owns reading and writing; the protocol
 * (ss_mc_*.c) owns interpreting. They meet here:
 *   - unread input is rbuf[rpos, rlen); the protocol advances rpos past every
 *     byte it has consumed and leaves a partial command where it is;
 *   - when a command needs more bytes than are buffered (a value still in
 *     flight), the protocol sets rneed to the number of unread bytes it needs
 *     (from rpos), so the server can grow rbuf once instead of step by step;
 *   - replies are appended to `out` (or queued by reference with
 *     ss_conn_out_ref, a buffer that outlives the send); the server writes
 *     them in order; once
 *     SS_CONN_OUT_HIGH_WATER bytes are queued the protocol takes no further
 *     command (the server calls it again when the output has drained), so a
 *     pipelined flood of large gets cannot grow memory without bound;
 *   - the protocol sets close_after_write for `quit` and for errors after
 *     which memcached closes the connection.
 */
#ifndef SS_CONN_H
#define SS_CONN_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "ss_buf.h"

struct ss_worker;
struct ss_conn;
struct ss_mc_req;

/*
 * How a parsed request is carried out (mc/ss_mc_req.h): NULL for local
 * execution over the store, or proxy mode's executor. Returns enum ss_exec.
 * Chosen by the worker when it adopts a routing table (server/ss_server.h).
 */
typedef int (*ss_exec_fn)(struct ss_conn *c, struct ss_mc_req *rq);

enum ss_transport { SS_TRANSPORT_TCP = 0, SS_TRANSPORT_UDP = 1 };

/* Gives back a buffer queued with ss_conn_out_ref once it is sent (or the
 * connection closed), on the connection's worker thread. */
typedef void (*ss_out_release_fn)(void *arg);
/* The listener a connection came in on decides its protocol. */
enum ss_conn_proto { SS_PROTO_MEMCACHED = 0, SS_PROTO_HTTP = 1 };

/* Output queued above this: stop taking commands (and reading) until it drains. */
#define SS_CONN_OUT_HIGH_WATER (4u << 20)

enum ss_conn_state {
    SS_CONN_READING = 0, /* reading input; a little output may be queued too */
    SS_CONN_WRITING,     /* output over the high-water mark: no reading until it drains */
    SS_CONN_CLOSING,     /* flush what is queued, then close */
    SS_CONN_LINGERING,   /* HTTP: answered and our side shut; input still coming is
                          * read and dropped until the client closes (or a time limit),
                          * so the kernel does not reset the connection before the
                          * client has read the answer (a refused upload, say) */
    SS_CONN__STATE_MAX
};

struct ss_conn {
    int fd;
    uint8_t transport;         /* enum ss_transport */
    uint8_t state;             /* enum ss_conn_state, set via ss_conn_set_state */
    uint8_t close_after_write; /* protocol: close once `out` is written */
    uint8_t proto;             /* enum ss_conn_proto: who interprets the input */
    uint8_t produce;           /* protocol: output to produce without new input (a
                                * body still streaming): run again once `out` drains */
    struct ss_worker *w;       /* the worker serving this connection */
    ss_exec_fn exec;           /* NULL: local execution */

    /* input */
    char *rbuf;
    size_t rcap;  /* bytes allocated */
    size_t rpos;  /* first unread byte */
    size_t rlen;  /* end of buffered input */
    size_t rneed; /* protocol: unread bytes needed to make progress (0 = any) */
    size_t swallow; /* protocol: bytes of a refused value still to discard */

    /* output */
    struct ss_buf out;
    size_t out_ref_bytes;      /* queued by reference and not yet sent: the protocol
                                * counts them with out.len against its high water */
    uint8_t out_borrowed;      /* `out` holds another buffer (ss_conn_out_borrow) */

    void *pstate;              /* the protocol's own per-connection state (HTTP) */

    uint64_t last_active_ms;
    struct sockaddr_storage peer; /* UDP: the datagram's source */
    socklen_t peer_len;

    /* server bookkeeping */
    struct ss_conn *next, *prev;
};

void ss_conn_set_state(struct ss_conn *c, enum ss_conn_state s);

/*
 * Queue n bytes at p after what `out` holds now, without copying them: p must
 * stay valid and unchanged until release(arg) is called, which happens once
 * they are sent or the connection closes. For large values that already sit in
 * a buffer of their own (a DRAM-tier item). Returns 0 (release is now the
 * connection's to call), or -ENOSPC when the connection cannot take a
 * reference now (UDP, deferred replies owed, every slot in use): the caller
 * copies the bytes into `out` and keeps the buffer.
 */
int ss_conn_out_ref(struct ss_conn *c, const void *p, size_t n, ss_out_release_fn release,
                    void *arg);
/*
 * Put buffer b in `out` while a reply is built into it elsewhere (a deferred
 * reply's fragment, or the bytes owed after one); returns what `out` held,
 * to give back with ss_conn_out_return, which returns b as it grew. The
 * references queued with ss_conn_out_ref stand in the connection's own
 * output, so meanwhile none is queued and the calls below leave them alone.
 */
static inline struct ss_buf ss_conn_out_borrow(struct ss_conn *c, struct ss_buf b)
{
    struct ss_buf own = c->out;
    c->out = b;
    c->out_borrowed++;
    return own;
}

static inline struct ss_buf ss_conn_out_return(struct ss_conn *c, struct ss_buf own)
{
    struct ss_buf b = c->out;
    c->out = own;
    c->out_borrowed--;
    return b;
}

/*
 * Cut the output back to what it was when `out` held len bytes: `out` is
 * truncated to len and every reference queued after that point is given
 * back unsent (a reply the protocol takes back, such as a get's VALUEs
 * replaced by an error). len is never before what was already sent.
 */
void ss_conn_out_truncate(struct ss_conn *c, size_t len);
/*
 * Move the output queued since `out` held len bytes into `into`, the bytes
 * of references copied (and the references given back), then truncate to
 * len: for a reply that is to wait behind a deferred one. 0 or -ENOMEM
 * (the output is truncated all the same).
 */
int ss_conn_out_move(struct ss_conn *c, size_t len, struct ss_buf *into);

#endif
