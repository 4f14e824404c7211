/*
 * ss_log.c - the segment log on the device.
 *
 * The device is a superblock followed by N fixed-size segments used as a
 * ring. Records are appended to the open (head) segment, held in memory and
 * written out when the segment fills or when housekeeping finds it dirty for
 * longer than flush_interval_ms. Opening the next segment reclaims it first:
 * its records are read back and the index entries still pointing at them are
 * deleted (FIFO eviction, as memcached's extstore and CacheLib's flash cache
 * do). Each reuse bumps the segment's generation, so a record from an
 * earlier use never verifies against a newer entry.
 *
 * Pinned records are not evicted: the segment writer copies the live ones
 * forward into the head before the segment is reused (ss_copy_forward.c),
 * and the head keeps copy_reserve bytes free for those copies, so ordinary
 * appends roll earlier and a copy never needs a roll (ss_pinned.c says how
 * large the pinned records may grow for that to hold).
 *
 * Lock order: a key's stripe lock, then the log lock, then the index's
 * writer lock. Reclaim takes the log lock then the index's; it never takes
 * stripe locks. The log's state (head, generations, ring order) is kept in
 * the index's metadata, written in the transaction that changes it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/ss_clock.h"
#include "ss_store_internal.h"

uint64_t ss_log_seg_off(const struct ss_log *log, uint32_t seg)
{
    return log->base + SS_SUPER_BYTES + (uint64_t)seg * log->segment_bytes;
}

/*
 * The device range to write for buf[from, to): rounded out to whole aligned
 * blocks, the bytes from `to` to the block's end zeroed (log lock held).
 * Zeroed rather than left as they are because the buffer is reused across
 * segments: a leftover record of another segment with the same generation
 * number and key would otherwise verify after a crash. Appends after `to`
 * overwrite the zeros; a later flush rewrites that block whole.
 */
void ss_log_pad_span(struct ss_store *st, uint32_t from, uint32_t to, uint32_t *wfrom,
                     uint32_t *wto)
{
    struct ss_log *log = &st->log;
    uint32_t a = ss_log_pad_unit(st);
    *wfrom = from & ~(a - 1);
    *wto = (uint32_t)(((uint64_t)to + a - 1) & ~(uint64_t)(a - 1));
    if (*wto > log->segment_bytes)
        *wto = log->segment_bytes;
    memset(log->buf + to, 0, *wto - to);
}

int ss_log_persist_state(struct ss_store *st, struct ss_index_txn *txn)
{
    struct ss_log *log = &st->log;
    uint32_t state[2] = {log->head, log->nsegments};
    int rc = ss_index_txn_meta_put(txn, "log", state, sizeof(state));
    if (!rc)
        rc = ss_index_txn_meta_put(txn, "gens", log->gens, (size_t)log->nsegments * 4);
    if (!rc)
        rc = ss_index_txn_meta_put(txn, "order", log->order, (size_t)log->nsegments * 4);
    return rc;
}

/* Write buf[flushed_off, write_off) to the head segment. Log lock held. */
int ss_log_write_dirty_locked(struct ss_store *st, struct ss_counters *ctr)
{
    struct ss_log *log = &st->log;
    if (log->write_off <= log->flushed_off)
        return 0;
    uint32_t from, to;
    ss_log_pad_span(st, log->flushed_off, log->write_off, &from, &to);
    uint32_t len = to - from;
    int rc = st->dev->ops->write(st->dev, ss_log_seg_off(log, log->head) + from, log->buf + from,
                                 len);
    if (rc) {
        ctr->errors_device++;
        return rc;
    }
    ctr->device_writes++;
    ctr->device_write_bytes += len;
    log->flushed_off = log->write_off;
    log->dirty_since_ms = 0;
    return 0;
}

int ss_log_read_segment(struct ss_store *st, uint32_t seg, char *buf, struct ss_counters *ctr)
{
    struct ss_log *log = &st->log;
    int rc = st->dev->ops->read(st->dev, ss_log_seg_off(log, seg), buf, log->segment_bytes);
    if (rc) {
        ctr->errors_device++;
        return rc;
    }
    ctr->device_reads++;
    ctr->device_read_bytes += log->segment_bytes;
    return 0;
}

void ss_log_reclaim_records(struct ss_store *st, struct ss_index_txn *txn, uint32_t seg,
                            uint32_t gen, const char *buf, struct ss_counters *ctr)
{
    struct ss_log *log = &st->log;
    int64_t now = ss_clock_unix_seconds();
    uint64_t flush_seq = atomic_load(&st->flush_seq);
    uint32_t off = 0;
    while (off + sizeof(struct ss_record_hdr) <= log->segment_bytes) {
        struct ss_record_hdr h;
        memcpy(&h, buf + off, sizeof(h));
        if (!ss_record_magic_ok(h.magic) || h.seg_gen != gen)
            break; /* end of what this use of the segment wrote */
        uint32_t size = ss_record_size(h.nkey, h.nbytes);
        if (h.nkey == 0 || size > log->segment_bytes - off)
            break; /* torn header: nothing after it can be trusted */
        const char *key = buf + off + sizeof(h);
        struct ss_index_entry e;
        if (ss_index_txn_get(txn, key, h.nkey, &e) == 0) {
            /* A pinned record is never evicted: by now it was copied
             * forward (ss_copy_forward.c), and an entry of it left here is
             * one a pending operation already replaces. */
            if (e.segment == seg && e.seg_gen == gen && e.offset == off &&
                !(e.bits & SS_ITEM_PINNED)) {
                ss_index_txn_del(txn, key, h.nkey);
                if ((e.exptime && e.exptime <= now) || e.seq < flush_seq) {
                    ctr->reclaimed++;
                } else {
                    ctr->evictions++;
                    if (!(e.bits & SS_ITEM_FETCHED))
                        ctr->evicted_unfetched++;
                }
            }
        }
        off += size;
    }
    ctr->segments_reclaimed++;
}

/*
 * Delete the index entries that still point into segment `seg` (generation
 * `gen`), inside txn. Counts evictions. The segment is read back whole: one
 * large sequential read per reclaimed segment.
 */
int ss_log_reclaim_locked(struct ss_store *st, struct ss_index_txn *txn, uint32_t seg,
                          uint32_t gen, struct ss_counters *ctr)
{
    int rc = ss_log_read_segment(st, seg, st->log.reclaim_buf, ctr);
    if (rc)
        return rc;
    ss_log_reclaim_records(st, txn, seg, gen, st->log.reclaim_buf, ctr);
    return 0;
}

void ss_log_state_persisted(struct ss_log *log)
{
    memcpy(log->persisted_gens, log->gens, (size_t)log->nsegments * 4);
}

void ss_log_head_opened(struct ss_log *log)
{
    uint32_t next = log->order[(log->pos + 1) % log->nsegments];
    log->copy_reserve = (uint32_t)log->pinned[next];
    if (log->copy_reserve) {
        /* Start copying them now rather than when the head is three
         * quarters full: the roll into that segment must wait for it. */
        log->prepare_asked = true;
        pthread_cond_signal(&log->writer_wake);
    }
}

/* Close the head segment and open the next one, reclaiming it, here and
 * now: at start, for a shrink, or with no writer running. Lock held.
 * -ENOSPC when the next segment still holds pinned records: only the
 * segment writer copies them forward. */
int ss_log_roll_locked(struct ss_store *st, struct ss_counters *ctr)
{
    struct ss_log *log = &st->log;
    if (log->pinned[log->order[(log->pos + 1) % log->nsegments]])
        return -ENOSPC;
    ss_log_writer_drain(st); /* the reclaim buffer and the sealed ones are free */
    while (log->flushing) /* the buffer is about to be reused */
        pthread_cond_wait(&log->flushed, &log->lock);
    int rc = ss_log_write_dirty_locked(st, ctr);
    if (rc)
        return rc;
    if (log->write_off)
        ctr->segments_flushed++;
    uint32_t next_pos = (log->pos + 1) % log->nsegments;
    uint32_t next = log->order[next_pos];
    struct ss_index_txn *txn;
    rc = ss_index_begin(st->index, true, &txn);
    if (rc)
        return rc;
    if (log->gens[next]) {
        rc = ss_log_reclaim_locked(st, txn, next, log->gens[next], ctr);
        if (rc) {
            ss_index_abort(txn);
            return rc;
        }
    }
    uint32_t old_head = log->head, old_pos = log->pos, old_gen = log->gens[next];
    log->gens[next] = old_gen + 1 ? old_gen + 1 : 1;
    log->head = next;
    log->pos = next_pos;
    rc = ss_log_persist_state(st, txn);
    if (!rc)
        rc = ss_index_commit(txn);
    else
        ss_index_abort(txn);
    if (rc) {
        log->gens[next] = old_gen;
        log->head = old_head;
        log->pos = old_pos;
        ctr->errors_index++;
        return rc;
    }
    ss_log_state_persisted(log);
    log->write_off = log->flushed_off = 0;
    log->dirty_since_ms = 0;
    log->ready = false;
    log->state_dirty = false;
    ss_log_head_opened(log);
    return 0;
}

/* Does a record of size bytes fit in the head? A copy forward may use the
 * reserve kept for it; anything else must leave the reserve free. */
static bool head_fits(const struct ss_log *log, uint32_t size, const struct ss_append *how)
{
    uint64_t end = (uint64_t)log->write_off + size;
    if (how->copy)
        return end <= log->segment_bytes && size <= log->copy_reserve;
    return end + log->copy_reserve <= log->segment_bytes;
}

/*
 * Make room in the head for a record of size bytes (lock held). A write that
 * finds no room in two turns of the ring gives up with -ENOSPC: while the
 * pinned figures keep within their limit one turn always has room
 * (ss_pinned.c), the second allows for other writers taking it first, and
 * each roll is bounded work (at most one segment's pinned records copied),
 * so a pool full of pinned records answers instead of spinning. A copy
 * forward never rolls: the reserve was sized for all of them.
 */
static int make_room(struct ss_store_thread *t, uint32_t size, struct ss_append *how)
{
    struct ss_log *log = &t->store->log;
    for (unsigned rolls = 0; !head_fits(log, size, how); rolls++) {
        if (how->copy || rolls > 2u * log->nsegments + 1u)
            return -ENOSPC;
        bool relocked = false;
        int rc = ss_log_writer_roll(t, &relocked);
        how->relocked |= relocked;
        if (rc == -EAGAIN)
            rc = ss_log_roll_locked(t->store, t->ctr);
        if (rc)
            return rc;
    }
    return 0;
}

int ss_log_append(struct ss_store_thread *t, const void *key, size_t nkey,
                  struct ss_index_entry *e, uint32_t crc, const struct iovec *iov, int niov,
                  struct ss_append *how)
{
    struct ss_store *st = t->store;
    struct ss_log *log = &st->log;
    uint32_t size = ss_record_size(nkey, e->nbytes);
    if (size > log->segment_bytes)
        return -E2BIG;
    how->relocked = false;
    pthread_mutex_lock(&log->lock);
    int rc = make_room(t, size, how);
    if (!rc && how->pinned)
        rc = ss_pinned_admit_locked(st, size, how->freed);
    if (rc) {
        if (rc == -ENOSPC && how->pinned)
            t->ctr->pinned_refused++;
        pthread_mutex_unlock(&log->lock);
        return rc;
    }
    char *p = log->buf + log->write_off;
    struct ss_record_hdr h = {
        .magic = SS_RECORD_MAGIC,
        .crc = crc,
        .seg_gen = log->gens[log->head],
        .nbytes = e->nbytes,
        .cas = e->cas,
        .flags = e->flags,
        .nkey = (uint8_t)nkey,
    };
    memcpy(p, &h, sizeof(h));
    p += sizeof(h);
    memcpy(p, key, nkey);
    p += nkey;
    for (int i = 0; i < niov; i++) {
        memcpy(p, iov[i].iov_base, iov[i].iov_len);
        p += iov[i].iov_len;
    }
    /* zero the alignment pad so the segment image is deterministic */
    memset(p, 0, (size_t)(log->buf + log->write_off + size - p));
    e->segment = log->head;
    e->offset = log->write_off;
    e->seg_gen = h.seg_gen;
    log->write_off += size;
    if (how->copy)
        log->copy_reserve -= size;
    if (how->pinned)
        ss_pinned_add_locked(log, e, size);
    if (!log->dirty_since_ms)
        log->dirty_since_ms = ss_clock_mono_ms();
    if (!log->ready && !log->prepare_asked && log->write_off >= log->segment_bytes / 4 * 3) {
        /* Reclaim the next segment now, while a quarter of this one is
         * left: late enough to evict little early, early enough that the
         * roll finds it ready. */
        log->prepare_asked = true;
        pthread_cond_signal(&log->writer_wake);
    }
    pthread_mutex_unlock(&log->lock);
    return 0;
}

/* Write the head's unwritten bytes, without the lock meanwhile (held on
 * entry and on return): bytes before write_off never change until a roll,
 * and a roll waits for the write. */
static int flush_head_now(struct ss_store *st, struct ss_counters *ctr)
{
    struct ss_log *log = &st->log;
    uint32_t seg = log->head, to = log->write_off, wfrom, wto;
    ss_log_pad_span(st, log->flushed_off, to, &wfrom, &wto);
    /*
     * Appends go on into buf past `to` while this writes without the lock.
     * Written from buf, the block holding `to` could catch a record half
     * appended and a whole one after it; a crash before the next flush
     * rewrites that block would leave the whole one's entry where no reclaim
     * walk reaches (it stops at the torn header), stale for good. So that
     * block is written from a copy taken now, ending at `to`.
     */
    uint32_t tail = to & ~(ss_log_pad_unit(st) - 1);
    if (tail < wfrom)
        tail = wfrom;
    if (wto > tail)
        memcpy(log->flush_tail, log->buf + tail, wto - tail); /* zeros past `to` */
    log->flushing = 1;
    pthread_mutex_unlock(&log->lock);

    uint64_t at = ss_log_seg_off(log, seg);
    int rc = tail > wfrom ? st->dev->ops->write(st->dev, at + wfrom, log->buf + wfrom,
                                                tail - wfrom)
                          : 0;
    if (!rc && wto > tail)
        rc = st->dev->ops->write(st->dev, at + tail, log->flush_tail, wto - tail);

    pthread_mutex_lock(&log->lock);
    log->flushing = 0;
    if (rc) {
        ctr->errors_device++;
    } else {
        ctr->device_writes++;
        ctr->device_write_bytes += wto - wfrom;
        if (log->head == seg && log->flushed_off < to)
            log->flushed_off = to;
        log->dirty_since_ms = log->write_off > log->flushed_off ? ss_clock_mono_ms() : 0;
    }
    pthread_cond_broadcast(&log->flushed);
    return rc;
}

/*
 * Write the open segment's unwritten bytes if they are older than age_ms.
 * The write runs without the log lock, so appends go on meanwhile.
 */
int ss_log_flush(struct ss_store *st, struct ss_counters *ctr, uint64_t age_ms)
{
    struct ss_log *log = &st->log;
    pthread_mutex_lock(&log->lock);
    int rc = 0;
    if (!log->flushing && log->dirty_since_ms &&
        ss_clock_mono_ms() - log->dirty_since_ms >= age_ms && log->write_off > log->flushed_off)
        rc = flush_head_now(st, ctr);
    pthread_mutex_unlock(&log->lock);
    return rc;
}

int ss_log_flush_head(struct ss_store *st, struct ss_counters *ctr)
{
    struct ss_log *log = &st->log;
    pthread_mutex_lock(&log->lock);
    uint32_t seg = log->head, end = log->write_off;
    int rc = 0;
    /* Each turn writes, or waits for housekeeping's write to end: a few at most. */
    for (unsigned turn = 0; turn < 64 && !rc; turn++) {
        if (log->head != seg || log->flushed_off >= end)
            break; /* written, or rolled: the segment writer writes the sealed rest */
        if (log->flushing)
            pthread_cond_wait(&log->flushed, &log->lock);
        else
            rc = flush_head_now(st, ctr);
    }
    if (!rc && log->head == seg && log->flushed_off < end)
        rc = -EIO;
    pthread_mutex_unlock(&log->lock);
    return rc;
}

bool ss_log_is_durable_locked(const struct ss_log *log, const struct ss_index_entry *e,
                              size_t nkey)
{
    if (e->segment >= log->nsegments || e->seg_gen != log->gens[e->segment])
        return true; /* a use already reused: waiting would not help */
    if (log->persisted_gens[e->segment] != e->seg_gen)
        return false; /* opened after the state last persisted: a crash forgets it */
    for (uint32_t i = 0; i < log->nsealed; i++)
        if (e->segment == log->sealed[i].seg && e->seg_gen == log->sealed[i].gen)
            return false;
    if (e->segment == log->head)
        return e->offset + ss_record_size(nkey, e->nbytes) <= log->flushed_off;
    return true;
}

/* Start writing into a fresh segment (at open, after any repair). */
int ss_log_start(struct ss_store *st, struct ss_counters *ctr)
{
    pthread_mutex_lock(&st->log.lock);
    int rc = ss_log_roll_locked(st, ctr);
    pthread_mutex_unlock(&st->log.lock);
    return rc;
}
