/*
 * ss_log_writer.c - the segment writer: one thread per store that does the
 * log's whole-segment I/O, so that no worker or lcore waits for it.
 *
 * When the open segment fills, the appending thread only swaps buffers
 * (ss_log_writer_roll): the full segment is queued as sealed and the next
 * one, reclaimed ahead by this thread, becomes the head. This thread then
 *   1. persists the log's state (head, generations) once it changed,
 *   2. writes the oldest sealed segment's unwritten span, after which its
 *      records are read from the device instead of its buffer,
 *   3. reads the segment after the head back once the head is three
 *      quarters full (at once when it holds pinned records), so that the
 *      roll that reuses it only bumps its generation (its records never
 *      verify again); a segment holding live pinned records has them copied
 *      into the head first (the copy_forward hook, ss_copy_forward.c), and
 *      is not reused until none is left, and
 *   4. after that roll, deletes the index entries still pointing at the
 *      segment's previous records (the eviction, counted).
 * An appender waits (counted in log_roll_waits) only when this thread is
 * behind: every sealed buffer still unwritten (writes faster than the device
 * takes them), or a reclaim or copy still running. The periodic flush of the
 * open segment stays with housekeeping (ss_log_flush), which already writes
 * without the log lock.
 *
 * The copy and the commit before a state write take stripe locks, and an
 * appender waits holding one; so in a store with pinned records a waiting
 * roll gives its stripe lock up, and this thread wakes the waiters before
 * it takes any (without_lock). If an item of that stripe changed meanwhile
 * the write is refused (-ESTALE, the caller's -EAGAIN), since what its
 * caller checked under the lock may no longer hold.
 *
 * A crash loses what a crash lost before: records not yet on the device,
 * and entries of a segment opened after the last persisted state (both fail
 * verification and are dropped, never served). In a store with pinned
 * records the index never names such a record (ss_pending.c), so a key
 * keeps its previous value instead.
 */
#define _GNU_SOURCE /* pthread_setname_np */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/ss_clock.h"
#include "ss_store_internal.h"

/* The roll itself, once the next segment may open (lock held). */
static void roll_into(struct ss_store *st, uint32_t next_pos, uint32_t next)
{
    struct ss_log *log = &st->log;
    if (log->write_off > log->flushed_off) {
        struct ss_sealed *s = &log->sealed[log->nsealed++];
        ss_log_pad_span(st, log->flushed_off, log->write_off, &s->from, &s->to);
        s->buf = log->buf;
        s->seg = log->head;
        s->gen = log->gens[log->head];
        s->end = log->write_off;
        log->buf = log->spare_bufs[--log->nspare];
        log->seals++;
    }
    uint32_t gen = log->gens[next];
    if (gen) {
        /* Its records were read back ahead (reclaim_buf): their entries
         * stop verifying now, and the writer deletes them next. */
        log->reclaim_pending = true;
        log->reclaim_seg = next;
        log->reclaim_gen = gen;
    }
    log->gens[next] = gen + 1 ? gen + 1 : 1; /* 0 -> 1: never used, nothing to reclaim */
    log->head = next;
    log->pos = next_pos;
    log->write_off = log->flushed_off = 0;
    log->dirty_since_ms = 0;
    log->ready = false;
    log->state_dirty = true;
    ss_log_head_opened(log);
    pthread_cond_signal(&log->writer_wake);
}

/* Take back the stripe lock a waiting roll gave up: stripe before log, as
 * the lock order says. -ESTALE when an item of the stripe changed meanwhile
 * (what the caller checked under it may no longer hold), else rc. */
static int relock_stripe(struct ss_store_thread *t, uint32_t gen_before, int rc)
{
    struct ss_store *st = t->store;
    pthread_mutex_unlock(&st->log.lock);
    pthread_mutex_lock(&st->stripes[t->locked_stripe].lock);
    pthread_mutex_lock(&st->log.lock);
    uint32_t gen = atomic_load(&st->copies.stripe_gen[t->locked_stripe]);
    return gen != gen_before ? -ESTALE : rc;
}

int ss_log_writer_roll(struct ss_store_thread *t, bool *relocked)
{
    struct ss_store *st = t->store;
    struct ss_log *log = &st->log;
    uint64_t failures = log->copy_failures;
    bool waited = false, released = false;
    uint32_t gen_before = 0;
    int rc = 0;
    *relocked = false;
    for (;;) {
        if (!log->writer_running) {
            rc = -EAGAIN;
            break;
        }
        uint32_t next_pos = (log->pos + 1) % log->nsegments;
        uint32_t next = log->order[next_pos];
        bool opens = log->gens[next] == 0 ||
                     (log->ready && log->ready_seg == next && log->ready_gen == log->gens[next]);
        /* A segment is reused only once no pinned record of it is live. */
        bool pins_left = log->pinned[next] != 0 || log->copying;
        if (opens && !pins_left && log->nsealed < log->sealed_max && !log->reclaim_pending &&
            !log->flushing) {
            roll_into(st, next_pos, next);
            break;
        }
        if (log->copy_failures != failures) {
            rc = log->copy_error; /* the copy forward this roll waited for failed */
            break;
        }
        if (opens && pins_left && !log->copying)
            log->ready = false; /* read back before it held pinned records: again */
        /* The writer is behind (the device is slower than the writes, or
         * the next segment's reclaim or copy forward is still running):
         * wait for it. In a store with pinned records it may need this
         * thread's stripe lock to copy or commit, so wait without it. */
        if (!waited)
            t->ctr->log_roll_waits++;
        waited = true;
        if (!released && t->locked_stripe >= 0 && ss_pinned_any(st)) {
            gen_before = atomic_load(&st->copies.stripe_gen[t->locked_stripe]);
            pthread_mutex_unlock(&st->stripes[t->locked_stripe].lock);
            released = true;
        }
        log->prepare_asked = true;
        pthread_cond_signal(&log->writer_wake);
        pthread_cond_wait(&log->flushed, &log->lock);
    }
    if (released) {
        *relocked = true;
        rc = relock_stripe(t, gen_before, rc);
    }
    return rc;
}

const char *ss_log_in_memory(struct ss_log *log, const struct ss_index_entry *e, uint32_t size)
{
    if (e->segment == log->head && e->offset + size <= log->write_off)
        return log->buf + e->offset;
    for (uint32_t i = 0; i < log->nsealed; i++) {
        const struct ss_sealed *s = &log->sealed[i];
        if (e->segment == s->seg && e->seg_gen == s->gen && e->offset + size <= s->end)
            return s->buf + e->offset;
    }
    return NULL;
}

/* Run a hook that takes stripe locks: without the log lock, and with the
 * waiting rolls woken first so that they give their stripe locks up. */
static int without_lock(struct ss_store *st, int (*fn)(struct ss_store *, void *), void *arg)
{
    struct ss_log *log = &st->log;
    log->writer_busy = true;
    pthread_cond_broadcast(&log->flushed);
    pthread_mutex_unlock(&log->lock);
    int rc = fn(st, arg);
    pthread_mutex_lock(&log->lock);
    log->writer_busy = false;
    return rc;
}

static int run_commit(struct ss_store *st, void *arg)
{
    st->log.hooks->commit(st);
    return 0;
}

/*
 * In a store with pinned records, commit the index before persisting a new
 * head's state, so that whatever a crash then keeps of the index is no
 * older than the head's opening: the room the head left for the next
 * segment's copies (copy_reserve) was reckoned from the index as it was
 * then, and a crash must not bring back pinned records that were gone by
 * then (ss_copy_forward.c relies on it when it resumes). A roll meanwhile
 * (into a fresh segment, which needs no writer) means committing again.
 */
static void commit_before_state(struct ss_store *st)
{
    struct ss_log *log = &st->log;
    for (uint32_t turn = 0; turn < log->nsegments; turn++) {
        uint32_t head = log->head;
        without_lock(st, run_commit, NULL);
        if (log->head == head)
            break;
    }
}

/* Persist head, ring order and generations (log lock held throughout: the
 * lock order is the log's, then the index writer's). */
static void write_state(struct ss_store *st)
{
    struct ss_log *log = &st->log;
    if (ss_pinned_any(st) && log->hooks)
        commit_before_state(st);
    log->state_dirty = false;
    struct ss_index_txn *txn;
    int rc = ss_index_begin(st->index, true, &txn);
    if (!rc) {
        rc = ss_log_persist_state(st, txn);
        rc = rc ? (ss_index_abort(txn), rc) : ss_index_commit(txn);
    }
    if (rc)
        log->writer_ctr.errors_index++;
    else
        ss_log_state_persisted(log);
    pthread_cond_broadcast(&log->flushed);
}

/* Write the oldest sealed segment's span, then give its buffer back to the
 * spares; the lock is dropped for the write (rolls may queue more behind it,
 * never move it). */
static void write_sealed(struct ss_store *st)
{
    struct ss_log *log = &st->log;
    struct ss_counters *ctr = &log->writer_ctr;
    const struct ss_sealed *s = &log->sealed[0];
    uint64_t at = ss_log_seg_off(log, s->seg) + s->from;
    const char *p = s->buf + s->from;
    uint32_t len = s->to - s->from;
    log->writer_busy = true;
    pthread_mutex_unlock(&log->lock);
    int rc = st->dev->ops->write(st->dev, at, p, len);
    pthread_mutex_lock(&log->lock);
    log->writer_busy = false;
    if (rc) {
        /* Its records never reached the device: reads of them fail
         * verification and are dropped. */
        ctr->errors_device++;
    } else {
        ctr->device_writes++;
        ctr->device_write_bytes += len;
    }
    ctr->segments_flushed++;
    log->spare_bufs[log->nspare++] = log->sealed[0].buf;
    log->nsealed--;
    memmove(&log->sealed[0], &log->sealed[1], log->nsealed * sizeof(log->sealed[0]));
    log->seals_written++;
    pthread_cond_broadcast(&log->flushed);
}

struct copy_job {
    uint32_t seg, gen;
};

static int run_copy_forward(struct ss_store *st, void *arg)
{
    const struct copy_job *job = arg;
    return st->log.hooks->copy_forward(st, job->seg, job->gen, st->log.reclaim_buf);
}

/* Read the segment after the head back ahead of its reuse, into
 * reclaim_buf, and copy its live pinned records forward into the head; the
 * lock is dropped for both. Nothing is evicted yet: the roll that opens the
 * segment bumps its generation and hands the records to delete_reclaimed,
 * so a grow meanwhile (new segments after the head) loses nothing. A
 * segment holding pinned records that cannot be read back, or whose copy
 * forward fails, is not opened: its rolls report the error (copy_error). */
static void prepare_next(struct ss_store *st)
{
    struct ss_log *log = &st->log;
    struct ss_counters *ctr = &log->writer_ctr;
    log->prepare_asked = false;
    uint32_t next = log->order[(log->pos + 1) % log->nsegments];
    uint32_t gen = log->gens[next];
    int rc = 0;
    if (gen) {
        log->writer_busy = true;
        pthread_mutex_unlock(&log->lock);
        rc = ss_log_read_segment(st, next, log->reclaim_buf, ctr);
        pthread_mutex_lock(&log->lock);
        log->writer_busy = false;
        if (rc && !log->pinned[next]) {
            /* It still opens (zeroed buffer: no record): its old entries
             * fail the generation check and are dropped when looked up. */
            memset(log->reclaim_buf, 0, log->segment_bytes);
            rc = 0;
        }
    }
    if (!rc && gen && log->pinned[next] && log->hooks) {
        struct copy_job job = {next, gen};
        log->copying = true;
        rc = without_lock(st, run_copy_forward, &job);
        log->copying = false;
    }
    if (rc) {
        log->copy_error = rc;
        log->copy_failures++;
    } else {
        log->ready_seg = next;
        log->ready_gen = gen;
        log->ready = true;
    }
    pthread_cond_broadcast(&log->flushed);
}

/* The segment just opened: delete the index entries still pointing at its
 * previous use's records (read ahead into reclaim_buf), counting evictions.
 * The lock is dropped for the index transaction. */
static void delete_reclaimed(struct ss_store *st)
{
    struct ss_log *log = &st->log;
    struct ss_counters *ctr = &log->writer_ctr;
    uint32_t seg = log->reclaim_seg, gen = log->reclaim_gen;
    log->writer_busy = true;
    pthread_mutex_unlock(&log->lock);
    struct ss_index_txn *txn;
    if (ss_index_begin(st->index, true, &txn) == 0) {
        ss_log_reclaim_records(st, txn, seg, gen, log->reclaim_buf, ctr);
        if (ss_index_commit(txn))
            ctr->errors_index++;
    } else {
        ctr->errors_index++;
    }
    pthread_mutex_lock(&log->lock);
    log->writer_busy = false;
    log->reclaim_pending = false;
    pthread_cond_broadcast(&log->flushed);
}

static void *writer_main(void *arg)
{
    struct ss_store *st = arg;
    struct ss_log *log = &st->log;
    pthread_setname_np(pthread_self(), "ss-segwriter"); /* for top, perf and tests */
    pthread_mutex_lock(&log->lock);
    for (;;) {
        /* With pinned records the sealed segments go first: the commit
         * before the state (commit_before_state) can only commit entries
         * whose records are written. */
        if (log->state_dirty && !(log->nsealed && ss_pinned_any(st)))
            write_state(st);
        else if (log->nsealed)
            write_sealed(st);
        else if (log->reclaim_pending)
            delete_reclaimed(st);
        else if (log->prepare_asked && !log->ready && !log->writer_stop)
            prepare_next(st);
        else if (log->writer_stop) {
            log->writer_running = false; /* rolls from here on are synchronous */
            pthread_cond_broadcast(&log->flushed);
            break;
        }
        else
            pthread_cond_wait(&log->writer_wake, &log->lock);
    }
    pthread_mutex_unlock(&log->lock);
    return NULL;
}

int ss_log_writer_start(struct ss_store *st)
{
    struct ss_log *log = &st->log;
    log->writer_stop = false;
    log->writer_running = true; /* before any append can roll */
    int rc = pthread_create(&log->writer, NULL, writer_main, st);
    if (rc) {
        log->writer_running = false;
        return -rc;
    }
    log->writer_joinable = true;
    return 0;
}

void ss_log_writer_stop(struct ss_store *st)
{
    struct ss_log *log = &st->log;
    if (!log->writer_joinable)
        return;
    pthread_mutex_lock(&log->lock);
    log->writer_stop = true;
    pthread_cond_signal(&log->writer_wake);
    pthread_mutex_unlock(&log->lock);
    pthread_join(log->writer, NULL);
    log->writer_joinable = false;
}

/* The writer still owes the records appended so far something: the write
 * of a segment sealed by then (seals_before of them were), or the head's
 * persisted state (head's use head_gen). */
static bool owed(const struct ss_log *log, uint64_t seals_before, uint32_t head,
                 uint32_t head_gen)
{
    if (log->seals_written < seals_before)
        return true;
    return log->gens[head] == head_gen && log->persisted_gens[head] != head_gen;
}

int ss_log_make_durable(struct ss_store *st, struct ss_counters *ctr)
{
    struct ss_log *log = &st->log;
    pthread_mutex_lock(&log->lock);
    uint64_t seals_before = log->seals;
    uint32_t head = log->head, head_gen = log->gens[log->head];
    pthread_mutex_unlock(&log->lock);
    int rc = ss_log_flush_head(st, ctr);
    pthread_mutex_lock(&log->lock);
    /* The writer broadcasts after every state write and segment write; the
     * deadline is for a writer stuck on a dead device. */
    uint64_t deadline = ss_clock_mono_ms() + 60000;
    while (!rc && owed(log, seals_before, head, head_gen)) {
        if (!log->writer_running || ss_clock_mono_ms() > deadline) {
            rc = -EIO;
            break;
        }
        pthread_cond_signal(&log->writer_wake);
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += 100 * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&log->flushed, &log->lock, &until);
    }
    pthread_mutex_unlock(&log->lock);
    return rc;
}

void ss_log_writer_drain(struct ss_store *st)
{
    struct ss_log *log = &st->log;
    while (log->writer_running &&
           (log->writer_busy || log->nsealed || log->state_dirty || log->reclaim_pending)) {
        pthread_cond_signal(&log->writer_wake);
        pthread_cond_wait(&log->flushed, &log->lock);
    }
}
