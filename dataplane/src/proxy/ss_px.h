/*
 * ss_px.h - proxy mode as the server and the protocol reach it: its life
 * cycle in the worker loop, its `stats` lines, and its executors.
 * (Switch mode reads the routing table through ss_px_routing.h.)
 */
#ifndef SS_PX_H
#define SS_PX_H

#include <stdint.h>

struct ss_conn;
struct ss_dataplane;
struct ss_mc_req;
struct ss_worker;

int ss_px_init(struct ss_dataplane *dp);
void ss_px_free(struct ss_dataplane *dp);
void ss_px_housekeep(struct ss_dataplane *dp);
/* Once per loop turn: adopt a new table, send, deadlines, deliver. Returns
 * the most the loop may sleep (ms), or -1 for no limit. */
int ss_px_worker_tick(struct ss_worker *w, uint64_t now_ms);
void ss_px_worker_fini(struct ss_worker *w);
/* epoll event on a tagged back-end connection pointer. */
void ss_px_on_event(struct ss_worker *w, void *ptr, uint32_t events);
/* Prefetch the write slot (epoch, writes in flight, stale mark) of the key
 * with this ss_hash64: a pipelined command's, ahead of its execution
 * (mc/ss_mc_lookahead.c). */
void ss_px_prefetch_key(struct ss_dataplane *dp, uint64_t hash);
/* `stats`: STAT backend:<name>:<field> lines (nothing when standalone). */
void ss_px_stats(struct ss_conn *c);

/* Executors (ss_exec_fn) installed on a worker that adopted a routing table:
 * TCP requests are routed, forwarded or answered locally; datagrams may only
 * read locally. Both return enum ss_exec (mc/ss_mc_req.h). */
int ss_px_execute(struct ss_conn *c, struct ss_mc_req *rq);
int ss_px_execute_udp(struct ss_conn *c, struct ss_mc_req *rq);

#endif
