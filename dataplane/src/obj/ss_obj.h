/*
 * ss_obj.h - object requests (HTTP/1.1, S3 path-style) as the server sees
 * them: the plane's life cycle, one worker's share of it, and the protocol
 * entry a connection accepted on the objects listener calls instead of
 * ss_mc_process. Settings and figures: include/ss_objects.h.
 */
#ifndef SS_OBJ_H
#define SS_OBJ_H

#include <stddef.h>
#include <stdint.h>

#include "ss_objects.h"
#include "ss_store.h"

struct ss_conn;
struct ss_dataplane;
struct ss_worker;
struct ss_obj;

/* Returned by ss_obj_http_process: write what is queued, then close. */
#define SS_OBJ_CLOSE 1

/* Open the objects store and the bucket table (nothing listens yet).
 * Returns NULL with err naming what failed. */
struct ss_obj *ss_obj_open(const struct ss_objects_settings *s, char *err, size_t errlen);
void ss_obj_close(struct ss_obj *o);
/* Once a worker thread starts / before it returns (after its connections
 * are closed). *io_fd gets the eventfd that becomes readable when chunk
 * reads complete (-1: reads are synchronous). 0 or -errno. */
int ss_obj_worker_init(struct ss_worker *w, struct ss_obj *o, int *io_fd);
void ss_obj_worker_fini(struct ss_worker *w);
/* Each loop turn: submit the chunk reads started during it. */
void ss_obj_worker_submit(struct ss_worker *w);
/* io_fd was readable: run the completed reads' callbacks. */
void ss_obj_worker_reap(struct ss_worker *w);
/* Each loop turn: fetches' deadlines, and requests waiting for fetches.
 * Returns the longest the worker may sleep (ms), or -1 for no limit. */
int ss_obj_worker_tick(struct ss_worker *w, uint64_t now_ms);
/* An event on an origin connection (its epoll tag with bit 1 set). */
void ss_obj_origin_event(struct ss_worker *w, void *tagged, uint32_t events);
/* Periodic work from the control thread (the objects store's housekeeping,
 * deferred deletion of replaced objects' chunks). */
int ss_obj_housekeep(struct ss_obj *o);

/* The protocol over c's unread input (and a response still streaming).
 * Returns 0 or SS_OBJ_CLOSE. */
int ss_obj_http_process(struct ss_conn *c);
/* The connection is going away (its state is freed). */
void ss_obj_conn_closed(struct ss_conn *c);
/* The worker's sweep: c has been quiet for quiet_ms. Returns 1 when it is
 * to be closed (a 408 may have been queued first), else 0. */
int ss_obj_conn_expired(struct ss_conn *c, uint64_t quiet_ms);

int ss_obj_bucket_stats(struct ss_obj *o, uint32_t i, struct ss_bucket_stats *out);
/* The objects store's own figures (its DRAM tier, items, device use). */
void ss_obj_store_stats(struct ss_obj *o, struct ss_store_stats *out);
long ss_obj_purge(struct ss_obj *o, const char *bucket, const char *prefix, size_t nprefix);

#endif
