/*
 * ss_pinned.c - the figures of pinned records: records written with
 * SS_WRITE_PINNED, which the log never evicts. Before the ring reuses a
 * segment, the live pinned records still in it are copied into the head
 * (ss_copy_forward.c); these figures say how much that is, and refuse the
 * pinned write that would leave the ring without room to do it.
 *
 * Per segment: the bytes (records with their headers, as laid out in the
 * log) of the live pinned records of its current use. In total: the bytes
 * and the number of every live pinned record. All of it changes under the
 * log lock, and each change that follows a key's entry (its write, overwrite,
 * removal, a copy's move) under the key's stripe lock as well, so a record
 * is added once and taken off once. An entry counts in its segment's figure
 * only while it names the segment's current use (seg_gen); once the
 * segment is reused nothing of the old use can count there.
 *
 * The reserve. The head H keeps free, for the copies of the segment N after
 * it, as many bytes as N's pinned figure held when H was opened
 * (copy_reserve, ss_log.c); a write that does not fit beside that rolls. So
 * the writes of a head get segment_bytes - pinned[N] of it. A write of a
 * record of r bytes is sure of room within one turn of the ring only if some
 * segment's figure is at most segment_bytes - r when its predecessor opens.
 * In a turn from head H0 the heads N1, N2, ... open with the figures of N2,
 * N3, ..., N(n-1) setting their room: n - 2 segments that are not the head
 * meanwhile, whose figures can only shrink (pinned records are only ever
 * added to the head). Were each above segment_bytes - r, the total would be
 * above (n - 2) * (segment_bytes - r). With n of 2 or 3 no segment's figure
 * can exceed the total, so the total alone bounds the room. Hence
 *
 *     limit = max(1, nsegments - 2) * (segment_bytes - largest record)
 *
 * (largest record: a key of SS_KEY_MAX_LENGTH and a value of item_size_max),
 * and a pinned write that would take the total past it fails with -ENOSPC.
 * A fixed count of spare segments would not do: pinned records spread
 * evenly (every segment 90% full after deletes) leave several segments'
 * worth of free bytes in total and room for nothing over a tenth of a
 * segment anywhere, so a large write would roll forever.
 */
#include <errno.h>
#include <stdio.h>

#include "ss_store_internal.h"

bool ss_pinned_any(const struct ss_store *st)
{
    return atomic_load_explicit(&st->log.pinned_items, memory_order_relaxed) != 0;
}

uint64_t ss_pinned_limit_locked(const struct ss_store *st)
{
    const struct ss_log *log = &st->log;
    uint32_t largest = ss_record_size(SS_KEY_MAX_LENGTH, st->set.item_size_max);
    if (largest >= log->segment_bytes)
        return 0;
    uint64_t turns = log->nsegments > 3 ? log->nsegments - 2u : 1u;
    return turns * (log->segment_bytes - largest);
}

int ss_pinned_admit_locked(struct ss_store *st, uint32_t size, uint32_t freed)
{
    const struct ss_log *log = &st->log;
    uint64_t kept = log->pinned_bytes > freed ? log->pinned_bytes - freed : 0;
    return kept + size > ss_pinned_limit_locked(st) ? -ENOSPC : 0;
}

/* Does e's record count in its segment's figure (e names its current use)? */
static bool in_current_use(const struct ss_log *log, const struct ss_index_entry *e)
{
    return e->segment < log->nsegments && e->seg_gen != 0 &&
           log->gens[e->segment] == e->seg_gen;
}

static uint64_t less(uint64_t have, uint64_t take)
{
    return have > take ? have - take : 0;
}

void ss_pinned_add_locked(struct ss_log *log, const struct ss_index_entry *e, uint32_t size)
{
    log->pinned_bytes += size;
    atomic_fetch_add(&log->pinned_items, 1);
    if (in_current_use(log, e))
        log->pinned[e->segment] += size;
}

void ss_pinned_sub_locked(struct ss_log *log, const struct ss_index_entry *e, uint32_t size)
{
    log->pinned_bytes = less(log->pinned_bytes, size);
    if (atomic_load(&log->pinned_items))
        atomic_fetch_sub(&log->pinned_items, 1);
    if (in_current_use(log, e))
        log->pinned[e->segment] = less(log->pinned[e->segment], size);
}

void ss_pinned_release(struct ss_store *st, const struct ss_index_entry *e, size_t nkey)
{
    if (!(e->bits & SS_ITEM_PINNED))
        return;
    pthread_mutex_lock(&st->log.lock);
    ss_pinned_sub_locked(&st->log, e, ss_record_size(nkey, e->nbytes));
    pthread_mutex_unlock(&st->log.lock);
}

void ss_pinned_move(struct ss_store *st, const struct ss_index_entry *from,
                    const struct ss_index_entry *to, size_t nkey)
{
    struct ss_log *log = &st->log;
    uint32_t size = ss_record_size(nkey, from->nbytes);
    pthread_mutex_lock(&log->lock);
    if (in_current_use(log, from))
        log->pinned[from->segment] = less(log->pinned[from->segment], size);
    if (in_current_use(log, to))
        log->pinned[to->segment] += size;
    pthread_mutex_unlock(&log->lock);
}

void ss_pinned_note(struct ss_store *st, const struct ss_index_entry *e, size_t nkey)
{
    if (!(e->bits & SS_ITEM_PINNED))
        return;
    pthread_mutex_lock(&st->log.lock);
    ss_pinned_add_locked(&st->log, e, ss_record_size(nkey, e->nbytes));
    pthread_mutex_unlock(&st->log.lock);
}

/* The first segment after the head, in ring order, that a shrink to n_new keeps. */
static uint32_t kept_after_head(const struct ss_log *log, uint32_t n_new)
{
    for (uint32_t k = 1; k < log->nsegments; k++) {
        uint32_t seg = log->order[(log->pos + k) % log->nsegments];
        if (seg < n_new)
            return seg;
    }
    return log->head;
}

int ss_pinned_shrink_check_locked(struct ss_store *st, uint32_t n_new, char *err,
                                  size_t errlen)
{
    struct ss_log *log = &st->log;
    if (!atomic_load(&log->pinned_items))
        return 0;
    uint32_t n = log->nsegments;
    log->nsegments = n_new; /* the limit the smaller ring would have */
    uint64_t limit = ss_pinned_limit_locked(st);
    log->nsegments = n;
    if (log->pinned_bytes > limit) {
        snprintf(err, errlen, "the pool holds %llu bytes of pinned records and %u segments "
                 "leave room for %llu; delete pinned items first, or keep the pool's size",
                 (unsigned long long)log->pinned_bytes, n_new, (unsigned long long)limit);
        return -ENOSPC;
    }
    for (uint32_t seg = n_new; seg < n; seg++) {
        if (log->pinned[seg]) {
            snprintf(err, errlen, "segment %u, which the shrink would cut off, holds %llu "
                     "bytes of pinned records, and a shrink does not move them; keep the "
                     "pool's size", seg, (unsigned long long)log->pinned[seg]);
            return -EBUSY;
        }
    }
    if (log->head >= n_new) {
        snprintf(err, errlen, "the open segment %u would be cut off, and the store then has "
                 "no room to copy pinned records forward; keep the pool's size", log->head);
        return -EBUSY;
    }
    uint32_t next = kept_after_head(log, n_new);
    if ((uint64_t)log->write_off + log->pinned[next] > log->segment_bytes) {
        snprintf(err, errlen, "after the shrink the open segment could not take the pinned "
                 "records of segment %u when it is reused; keep the pool's size", next);
        return -EBUSY;
    }
    return 0;
}
