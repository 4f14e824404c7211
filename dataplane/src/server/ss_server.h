/*
 * ss_server.h - what the planes the server hosts (proxy mode today; objects
 * later) may use of it, without reaching into struct ss_dataplane.
 */
#ifndef SS_SERVER_H
#define SS_SERVER_H

#include <pthread.h>
#include <stdbool.h>

#include "server/ss_conn.h"
#include "server/ss_reply.h"
#include "server/ss_worker.h"

struct ss_dataplane;

int ss_dataplane_nworkers(const struct ss_dataplane *dp);
struct ss_worker *ss_dataplane_worker(struct ss_dataplane *dp, int i);
/* Is worker i inside its loop (it will pick up published state)? */
bool ss_dataplane_worker_running(struct ss_dataplane *dp, int i);
/* Serialises the control plane's calls, and retires shared tables safely. */
pthread_mutex_t *ss_dataplane_ctl_lock(struct ss_dataplane *dp);
/* Proxy mode's process-wide state (NULL: none). */
void *ss_dataplane_px(const struct ss_dataplane *dp);
void ss_dataplane_set_px(struct ss_dataplane *dp, void *px);

/* Wake worker i out of epoll_wait (it then adopts what was published). */
void ss_worker_wake(struct ss_worker *w);
/* The executors this worker's connections use from now on (NULL: local). */
void ss_worker_set_executors(struct ss_worker *w, ss_exec_fn tcp, ss_exec_fn udp);

/* Replies became ready outside the connection's own event: write them,
 * resume parsing; may close (and free) c. */
void ss_conn_output_ready(struct ss_conn *c);

#endif
