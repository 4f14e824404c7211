/*
 * overtaken_put.c - a write whose segment is reused before its index entry
 * is committed. A write's entry waits in the pending map for the group
 * commit; if the ring turns meanwhile (a small store, a burst of writes, a
 * committer held up by a slow disk), the reclaim of the write's segment runs
 * while the entry is not in the index yet, so it has nothing to delete, and
 * the commit that follows would put in an entry naming a record that is
 * gone: a stale entry, with no crash involved, for good. The commit must
 * drop such entries once it has put them in (ss_pending.c: drop_overtaken).
 *
 * The race is made certain by holding the committer off (its run lock)
 * while the ring turns past the first writes.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pinned_util.h"
#include "store/ss_index.h"
#include "store/ss_store_internal.h"

void scenario_overtaken_put(const char *dir);

#define OVERTAKEN_IDS 4000u /* cap: about 1.5 turns of the ring in 1 KiB writes */

/* Where the index itself (not pending) puts u<id>'s record; false if nowhere. */
static bool committed_entry(struct t_store *s, uint32_t id, struct ss_index_entry *e)
{
    char key[16];
    size_t nkey = t_key(key, 'u', id);
    struct ss_index_txn *reader = NULL;
    int rc = ss_index_get(s->st->index, &reader, key, nkey, e);
    if (reader)
        ss_index_reader_free(reader);
    CHECK(rc == 0 || rc == -ENOENT, "index get u%u: %d", id, rc);
    return rc == 0;
}

/* Wait until the segment writer has no reclaim left to do. */
static void wait_reclaims_done(struct t_store *s)
{
    struct ss_log *log = &s->st->log;
    pthread_mutex_lock(&log->lock);
    for (int turns = 0; turns < 1000 && (log->reclaim_pending || log->writer_busy); turns++)
        pthread_cond_wait(&log->flushed, &log->lock);
    bool done = !log->reclaim_pending;
    pthread_mutex_unlock(&log->lock);
    CHECK(done, "the segment writer did not finish its reclaims");
}

void scenario_overtaken_put(const char *dir)
{
    struct t_store s;
    t_open(&s, dir, T_SEGMENTS, 0);
    struct ss_log *log = &s.st->log;
    pthread_mutex_lock(&s.st->commit_run_lock); /* no batch commits from here */
    CHECK(t_write(&s.t, 'u', 0, 0, 1024, 0) == 0, "write u0");
    struct ss_index_entry first;
    char key[16];
    size_t nkey = t_key(key, 'u', 0);
    ss_store_lock(&s.t, key, nkey);
    CHECK(ss_entry_get(&s.t, key, nkey, &first) == 0, "u0 has no pending entry");
    ss_store_unlock(&s.t);
    /* Write on until u0's segment use is reopened: one turn of the ring. */
    uint32_t id = 1;
    bool reopened = false;
    for (; id < OVERTAKEN_IDS && !reopened; id++) {
        CHECK(t_write(&s.t, 'u', id, 0, 1024, 0) == 0, "write u%u", id);
        pthread_mutex_lock(&log->lock);
        reopened = log->gens[first.segment] != first.seg_gen;
        pthread_mutex_unlock(&log->lock);
    }
    CHECK(reopened, "segment %u still in use %u after %u writes", first.segment,
          first.seg_gen, id);
    wait_reclaims_done(&s); /* it ran while u0 was pending: it found nothing of u0 */
    pthread_mutex_unlock(&s.st->commit_run_lock);
    /* The committer may take the batch first: this waits for it either way. */
    ss_pend_commit_now(s.st, NULL);

    struct ss_index_entry e;
    CHECK(!committed_entry(&s, 0, &e) || e.segment != first.segment ||
              e.seg_gen != first.seg_gen,
          "u0's entry names segment %u use %u, reopened before the commit: stale",
          first.segment, first.seg_gen);
    char buf[T_VALUE_MAX];
    uint32_t len = 0, bits = 0, ver = 0;
    CHECK(t_read(&s.t, 'u', 0, buf, &len, &bits) != 0, "u0 reads back from a reused segment");
    /* The newest keys live in segments not reused: they must all be kept. */
    uint32_t last = id - 1;
    CHECK(t_read(&s.t, 'u', last, buf, &len, &bits) == 0, "u%u, the last written, is lost",
          last);
    CHECK(t_value_parse(buf, len, 'u', last, &ver) && ver == 0, "u%u: not its value", last);
    t_verify(&s); /* no other overtaken entry left either */
    t_close(&s);
    printf("ok overtaken_put segment=%u use=%u writes=%u\n", first.segment, first.seg_gen, id);
}
