/*
 * ss_px_meta.c - meta commands in proxy mode: mg answered from the local copy
 * when it can tell (no h, l, t or write-like flags), else forwarded as the
 * client sent it; ms, md and ma forwarded after the local copy is dropped
 * (ss_px_cmd.c's one rule), an ms keeping the value it proved. The helpers
 * that build and forward a request are ss_px_cmd.c's (ss_px_internal.h).
 */
#include <string.h>

#include "ss_px_internal.h"
#include "server/ss_server.h"

/* mg: a hit (without write-like flags) is local; anything else goes to the owner. */
int ss_px_mg(struct ss_conn *c, struct ss_mc_req *rq)
{
    const struct ss_mc_meta *m = &rq->meta;
    if (!ss_mc_meta_ok(rq))
        return SS_EXEC_LOCAL;
    /* h, l and t are the owner's to answer: a local hit is not a read the
     * owner saw, and the local copy's lifetime is capped (local_ttl_max). */
    bool owner_knows = ss_mc_meta_has(m, 'h') || ss_mc_meta_has(m, 'l') ||
                       ss_mc_meta_has(m, 't');
    if (!m->write_like && !owner_knows) {
        int pr = ss_mc_meta_get(c, rq, SS_MC_MG_PROBE);
        if (rq->unread_at_owner)
            ss_px_mark_read_at_owner(c, m->key, m->nkey, m->key_binary);
        if (pr != SS_EXEC_MISS)
            return pr;
    } else if (m->write_like) {
        ss_px_invalidate(c->w, m->key, m->nkey, NULL);
    }
    int b = ss_px_cmd_route(c, m->key, m->nkey, false);
    if (b < 0)
        return SS_EXEC_DONE;
    struct px_op *op = ss_px_op_new(PX_OP_RAW);
    if (op) {
        op->post = m->write_like ? PX_POST_INVALIDATE
                                 : (m->value ? PX_POST_FILL_MG : PX_POST_NONE);
        op->lepoch = ss_px_epoch_get(c->w->dp, ss_px_epoch_slot(m->key, m->nkey));
        if (ss_px_op_keep(c->w->dp, op, m->key, m->nkey, NULL, 0)) {
            ss_px_op_free(op);
            op = NULL;
        }
    }
    if (ss_px_req_line(rq, SIZE_MAX) && op) {
        ss_px_op_free(op);
        op = NULL;
    }
    return ss_px_send_req(c, b, op, false);
}

/* ms: the checks of the local parser; SS_EXEC_DONE when the value is here. */
static int ms_value_ready(struct ss_conn *c, struct ss_mc_req *rq, int32_t *vlen)
{
    const struct ss_mc_meta *m = &rq->meta;
    if (rq->ntok < 4 || !ss_mc_parse_i32(rq->tok[2].p, rq->tok[2].len, vlen) || *vlen < 0 ||
        *vlen > INT32_MAX - 2)
        return SS_EXEC_LOCAL;
    if (!ss_mc_meta_ok(rq) || !strchr("SEAPR", m->mode ? m->mode : 'S'))
        return SS_EXEC_LOCAL;
    if (!ss_mc_item_fits(c, m->nkey, m->client_flags, (size_t)*vlen)) {
        /* memcached drops the item of an ms too large to store, in every mode. */
        ss_px_drop_at_owner(c, m->key, m->nkey, m->key_binary);
        return SS_EXEC_LOCAL;
    }
    size_t want = (size_t)*vlen + 2;
    if (rq->avail < want) {
        c->rneed = rq->line_bytes + want;
        return SS_EXEC_AGAIN;
    }
    if (rq->data[*vlen] != '\r' || rq->data[*vlen + 1] != '\n')
        return SS_EXEC_LOCAL;
    rq->extra = want;
    return SS_EXEC_DONE;
}

/*
 * ms/md/ma: invalidate, forward as sent, q included: what q hides depends on
 * the outcome (ma shows HD when N vivifies), so the owner decides. A quiet
 * ms leaves no local copy, as its hidden HD cannot prove the value.
 */
int ss_px_meta_write(struct ss_conn *c, struct ss_mc_req *rq)
{
    const struct ss_mc_meta *m = &rq->meta;
    int32_t vlen = 0;
    if (rq->cmd == SS_MC_CMD_MS) {
        int ready = ms_value_ready(c, rq, &vlen);
        if (ready != SS_EXEC_DONE)
            return ready;
        c->w->ctr.cmd_set++;
    } else if (!ss_mc_meta_ok(rq) ||
               (rq->cmd == SS_MC_CMD_MA && m->mode && !strchr("I+D-", m->mode))) {
        return SS_EXEC_LOCAL;
    }
    int b = ss_px_cmd_route(c, m->key, m->nkey, false);
    if (b < 0)
        return SS_EXEC_DONE;
    if (m->set_stale)
        ss_px_stale_mark(c->w->dp, ss_px_epoch_slot(m->key, m->nkey), true);
    /* No copy of an item stored with a binary key: mg would show its key as
     * base64 with b, which a copy found by the decoded key cannot tell. */
    bool sets = rq->cmd == SS_MC_CMD_MS && strchr("SER", m->mode ? m->mode : 'S') &&
                !m->set_stale && !m->no_reply && !m->key_binary && ss_px_keep_written_value(c);
    struct px_op *op = ss_px_op_new(PX_OP_RAW);
    if (op) {
        op->post = sets ? PX_POST_SET : PX_POST_INVALIDATE;
        if (sets) {
            op->lflags = m->client_flags;
            op->lexptime = m->exptime;
        }
        if (ss_px_op_keep(c->w->dp, op, m->key, m->nkey, sets ? rq->data : NULL, (size_t)vlen)) {
            ss_px_op_free(op);
            op = NULL;
        }
    }
    if ((ss_px_req_line(rq, SIZE_MAX) ||
         (rq->extra && ss_px_req_append(rq->data, rq->extra))) &&
        op) {
        ss_px_op_free(op);
        op = NULL;
    }
    return ss_px_send_req(c, b, op, false);
}
