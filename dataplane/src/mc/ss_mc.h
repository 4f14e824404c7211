/*
 * ss_mc.h - the memcached protocol (text and meta commands), entry point.
 */
#ifndef SS_MC_H
#define SS_MC_H

#include "server/ss_conn.h"

enum ss_mc_result {
    SS_MC_OK = 0,    /* processed every complete command; wait for more input */
    SS_MC_CLOSE = 1, /* write what is in c->out, then close the connection */
};

/*
 * Process every complete command buffered on c (pipelined commands are
 * answered in order), appending replies to c->out and advancing c->rpos.
 * Never blocks on the network. Returns enum ss_mc_result.
 */
int ss_mc_process(struct ss_conn *c);

#endif
