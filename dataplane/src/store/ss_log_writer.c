/*
 * ss_log_writer.c - the segment writer: one thread per store that does the
 * log's whole-segment I/O, so that no worker or lcore waits for it.
 *
 * When the open segment fills, the appending thread only swaps buffers
 * (ss_log_writer_roll): the full segment becomes `sealed` and the next one,
 * reclaimed ahead by this thread, becomes the head. This thread then
 *   1. persists the log's state (head, generations) once it changed,
 *   2. writes the sealed segment's unwritten span, after which its records
 *      are read from the device instead of its buffer,
 *   3. reads the segment after the head back once the head is three
 *      quarters full, so that the roll that reuses it only bumps its
 *      generation (its records never verify again), and
 *   4. after that roll, deletes the index entries still pointing at the
 *      segment's previous records (the eviction, counted).
 * An appender waits (counted in log_roll_waits) only when this thread is
 * behind: writes faster than the device takes them, or a reclaim still
 * reading. The periodic flush of the open segment stays with housekeeping
 * (ss_log_flush), which already writes without the log lock.
 *
 * A crash loses what a crash lost before: records not yet on the device,
 * and entries of a segment opened after the last persisted state (both fail
 * verification and are dropped, never served).
 */
#define _GNU_SOURCE /* pthread_setname_np */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ss_store_internal.h"

int ss_log_writer_roll(struct ss_store *st, struct ss_counters *ctr)
{
    struct ss_log *log = &st->log;
    uint32_t next_pos, next;
    bool waited = false;
    for (;;) {
        if (!log->writer_running)
            return -EAGAIN;
        next_pos = (log->pos + 1) % log->nsegments;
        next = log->order[next_pos];
        bool opens = log->gens[next] == 0 ||
                     (log->ready && log->ready_seg == next && log->ready_gen == log->gens[next]);
        if (opens && !log->sealed && !log->reclaim_pending && !log->flushing)
            break;
        /* The writer is behind (the device is slower than the writes, or
         * the next segment's reclaim is still reading): wait for it. */
        if (!waited)
            ctr->log_roll_waits++;
        waited = true;
        log->prepare_asked = true;
        pthread_cond_signal(&log->writer_wake);
        pthread_cond_wait(&log->flushed, &log->lock);
    }
    if (log->write_off > log->flushed_off) {
        uint32_t from, to;
        ss_log_pad_span(st, log->flushed_off, log->write_off, &from, &to);
        log->sealed = true;
        log->sealed_seg = log->head;
        log->sealed_gen = log->gens[log->head];
        log->sealed_end = log->write_off;
        log->sealed_from = from;
        log->sealed_to = to;
        char *full = log->buf;
        log->buf = log->spare_buf;
        log->spare_buf = full;
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
    pthread_cond_signal(&log->writer_wake);
    return 0;
}

const char *ss_log_in_memory(struct ss_log *log, const struct ss_index_entry *e, uint32_t size)
{
    if (e->segment == log->head && e->offset + size <= log->write_off)
        return log->buf + e->offset;
    if (log->sealed && e->segment == log->sealed_seg && e->seg_gen == log->sealed_gen &&
        e->offset + size <= log->sealed_end)
        return log->spare_buf + e->offset;
    return NULL;
}

/* Persist head, ring order and generations (log lock held throughout: the
 * lock order is the log's, then the index writer's). */
static void write_state(struct ss_store *st)
{
    struct ss_log *log = &st->log;
    log->state_dirty = false;
    struct ss_index_txn *txn;
    int rc = ss_index_begin(st->index, true, &txn);
    if (!rc) {
        rc = ss_log_persist_state(st, txn);
        rc = rc ? (ss_index_abort(txn), rc) : ss_index_commit(txn);
    }
    if (rc)
        log->writer_ctr.errors_index++;
    pthread_cond_broadcast(&log->flushed);
}

/* Write the sealed segment's span; the lock is dropped for the write. */
static void write_sealed(struct ss_store *st)
{
    struct ss_log *log = &st->log;
    struct ss_counters *ctr = &log->writer_ctr;
    uint64_t at = ss_log_seg_off(log, log->sealed_seg) + log->sealed_from;
    const char *p = log->spare_buf + log->sealed_from;
    uint32_t len = log->sealed_to - log->sealed_from;
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
    log->sealed = false;
    pthread_cond_broadcast(&log->flushed);
}

/* Read the segment after the head back ahead of its reuse, into
 * reclaim_buf; the lock is dropped for the read. Nothing is evicted yet: the
 * roll that opens the segment bumps its generation and hands the records to
 * delete_reclaimed, so a grow meanwhile (new segments after the head) loses
 * nothing. */
static void prepare_next(struct ss_store *st)
{
    struct ss_log *log = &st->log;
    struct ss_counters *ctr = &log->writer_ctr;
    log->prepare_asked = false;
    uint32_t next = log->order[(log->pos + 1) % log->nsegments];
    uint32_t gen = log->gens[next];
    if (gen) {
        log->writer_busy = true;
        pthread_mutex_unlock(&log->lock);
        /* A segment that cannot be read back still opens (zeroed buffer: no
         * record): its old entries fail the generation check and are dropped
         * when looked up. */
        if (ss_log_read_segment(st, next, log->reclaim_buf, ctr) != 0)
            memset(log->reclaim_buf, 0, log->segment_bytes);
        pthread_mutex_lock(&log->lock);
        log->writer_busy = false;
    }
    log->ready_seg = next;
    log->ready_gen = gen;
    log->ready = true;
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
        if (log->state_dirty)
            write_state(st);
        else if (log->sealed)
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

void ss_log_writer_drain(struct ss_store *st)
{
    struct ss_log *log = &st->log;
    while (log->writer_running &&
           (log->writer_busy || log->sealed || log->state_dirty || log->reclaim_pending)) {
        pthread_cond_signal(&log->writer_wake);
        pthread_cond_wait(&log->flushed, &log->lock);
    }
}
