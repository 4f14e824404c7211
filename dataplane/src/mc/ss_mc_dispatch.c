/*
 * ss_mc_dispatch.c - a parsed request to its executor: the token-count check
 * of the command table, the connection's executor (proxy mode's, or local
 * execution), the command's counter; and local execution itself, one case
 * per command of the table.
 */
#include "ss_dataplane.h"
#include "ss_mc_internal.h"
#include "server/ss_worker.h"

int ss_mc_execute(struct ss_conn *c, struct ss_mc_req *rq)
{
    switch (rq->cmd) {
    case SS_MC_CMD_GET:
    case SS_MC_CMD_BGET:
    case SS_MC_CMD_GETS:
    case SS_MC_CMD_GAT:
    case SS_MC_CMD_GATS:
        return ss_mc_text_get(c, rq);
    case SS_MC_CMD_SET:
    case SS_MC_CMD_ADD:
    case SS_MC_CMD_REPLACE:
    case SS_MC_CMD_APPEND:
    case SS_MC_CMD_PREPEND:
    case SS_MC_CMD_CAS:
        return ss_mc_text_update(c, rq);
    case SS_MC_CMD_MG:
        return ss_mc_meta_get(c, rq, SS_MC_MG_ANSWER);
    case SS_MC_CMD_MS:
        return ss_mc_meta_set(c, rq);
    case SS_MC_CMD_MD:
        return ss_mc_meta_delete(c, rq);
    case SS_MC_CMD_MA:
        return ss_mc_meta_arith(c, rq);
    case SS_MC_CMD_ME:
        return ss_mc_meta_debug(c, rq);
    case SS_MC_CMD_MN:
        ss_mc_out(c, "MN\r\n", 4);
        ss_mc_mark_sent(c); /* mn makes memcached write now */
        return SS_EXEC_DONE;
    case SS_MC_CMD_INCR:
    case SS_MC_CMD_DECR:
        return ss_mc_text_delta(c, rq);
    case SS_MC_CMD_DELETE:
        return ss_mc_text_delete(c, rq);
    case SS_MC_CMD_TOUCH:
        return ss_mc_text_touch(c, rq);
    case SS_MC_CMD_STATS:
        ss_mc_stats(c, rq->tok, rq->ntok);
        return SS_EXEC_DONE;
    case SS_MC_CMD_FLUSH_ALL:
        return ss_mc_text_flush_all(c, rq);
    case SS_MC_CMD_VERSION: {
        const struct ss_dataplane_settings *s = ss_dataplane_settings(c->w->dp);
        ss_mc_out(c, "VERSION ", 8);
        ss_mc_out_str(c, s->version ? s->version : "1.6.18");
        ss_mc_out(c, "\r\n", 2);
        return SS_EXEC_DONE;
    }
    case SS_MC_CMD_VERBOSITY:
        return ss_mc_text_verbosity(c, rq);
    case SS_MC_CMD_QUIT:
        return SS_EXEC_CLOSE;
    case SS_MC_CMD_SHUTDOWN:
        ss_mc_reply(c, "ERROR: shutdown not enabled", false);
        return SS_EXEC_DONE;
    case SS_MC_CMD_UNKNOWN:
    case SS_MC_CMD__COUNT:
        break;
    }
    /* A line memcached cannot even split into a command gets ERROR alone. */
    const struct ss_mc_tok *last = &rq->tok[rq->ntok >= 2 ? rq->ntok - 2 : 0];
    if (rq->ntok >= 2 && rq->tok[0].len >= 2 && last->len >= 5 &&
        memcmp(last->p, "HTTP/", 5) == 0)
        return SS_EXEC_CLOSE; /* an HTTP request on the memcached port: memcached hangs up */
    ss_mc_reply(c, "ERROR", false);
    return SS_EXEC_DONE;
}

int ss_mc_dispatch(struct ss_conn *c, struct ss_mc_req *rq)
{
    const struct ss_mc_cmd_info *ci = &ss_mc_cmd_table[rq->cmd];
    if (rq->cmd != SS_MC_CMD_UNKNOWN && ((ci->min_tokens && rq->ntok < ci->min_tokens) ||
                                         (ci->max_tokens && rq->ntok > ci->max_tokens))) {
        ss_mc_reply(c, "ERROR", false);
        return SS_EXEC_DONE;
    }
    int r = c->exec ? c->exec(c, rq) : SS_EXEC_LOCAL;
    if (r == SS_EXEC_LOCAL)
        r = ss_mc_execute(c, rq);
    if (r != SS_EXEC_AGAIN && ci->counter != SS_MC_NO_CTR)
        (*(uint64_t *)((char *)&c->w->ctr + ci->counter))++;
    return r;
}
