/*
 * ss_log_layout.c - where the segment log lies and how large it is: the
 * superblock, loading the ring's state at open, growing while serving and
 * shrinking offline. The running log (appends, rolls, flushes, reclaims) is
 * ss_log.c, which this file calls and which never calls here.
 *
 * The device is a 4 KiB superblock (format, segment size, segment count, a
 * UUID that ties the index to the device) and the segments after it. The
 * ring's state (head, generations, order) lives in the index's metadata;
 * the superblock is written before the index when growing and after it
 * when shrinking, so a crash between the two always loads (log_load).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "ss_store_internal.h"

/* Write the log's state in a transaction of its own. 0 or -errno. */
static int log_persist_state_now(struct ss_store *st)
{
    struct ss_index_txn *txn;
    int rc = ss_index_begin(st->index, true, &txn);
    if (rc)
        return rc;
    rc = ss_log_persist_state(st, txn);
    if (rc) {
        ss_index_abort(txn);
        return rc;
    }
    return ss_index_commit(txn);
}

/*
 * Put segments old_n..new_n-1 into the ring right after position pos of
 * order[0..old_n) (order has room for new_n): a grown pool fills its new
 * space before it reclaims the oldest segment, which sits after the head.
 */
static void order_insert(uint32_t *order, uint32_t pos, uint32_t old_n, uint32_t new_n)
{
    uint32_t added = new_n - old_n;
    memmove(order + pos + 1 + added, order + pos + 1, (size_t)(old_n - pos - 1) * 4);
    for (uint32_t i = 0; i < added; i++)
        order[pos + 1 + i] = old_n + i;
}

/* The position of seg in the ring (0 when absent, which load guards). */
static uint32_t order_pos(const struct ss_log *log, uint32_t seg)
{
    for (uint32_t i = 0; i < log->nsegments; i++)
        if (log->order[i] == seg)
            return i;
    return 0;
}

static int super_write(struct ss_store *st)
{
    char block[SS_SUPER_BYTES] = {0};
    struct ss_superblock sb = {
        .magic = SS_SUPER_MAGIC,
        .version = 1,
        .segment_bytes = st->log.segment_bytes,
        .nsegments = st->log.nsegments,
    };
    memcpy(sb.uuid, st->uuid, sizeof(sb.uuid));
    memcpy(block, &sb, sizeof(sb));
    int rc = st->dev->ops->write(st->dev, st->log.base, block, sizeof(block));
    return rc ? rc : st->dev->ops->sync(st->dev);
}

/*
 * Read or write the superblock, load the segment generations from the index
 * and open a fresh head segment. A store formatted with another segment size,
 * or with more segments than the config now gives, is refused. Returns 0 or
 * -errno with err filled. *reset is set when the index must be emptied (a new
 * device, or an index that belongs to another device).
 */
static int log_load(struct ss_store *st, int *reset, char *err, size_t errlen)
{
    struct ss_log *log = &st->log;
    struct ss_superblock sb;
    int rc = st->dev->ops->read(st->dev, log->base, &sb, sizeof(sb));
    if (rc) {
        snprintf(err, errlen, "cannot read the superblock of %s: %s", st->device_path,
                 strerror(-rc));
        return rc;
    }
    *reset = 0;
    if (sb.magic != SS_SUPER_MAGIC) {
        if (getrandom(st->uuid, sizeof(st->uuid), 0) != sizeof(st->uuid)) {
            snprintf(err, errlen, "getrandom failed: %s", strerror(errno));
            return -EIO;
        }
        *reset = 1;
        rc = super_write(st);
        if (rc) {
            snprintf(err, errlen, "cannot format %s: %s", st->device_path, strerror(-rc));
            return rc;
        }
        return 0;
    }
    if (sb.version != 1 || sb.segment_bytes != log->segment_bytes) {
        snprintf(err, errlen, "%s was formatted with segment_size %u bytes but the config "
                 "says %u; restore the setting, or delete the file to start empty",
                 st->device_path, sb.segment_bytes, log->segment_bytes);
        return -EINVAL;
    }
    if (sb.nsegments > log->nsegments) {
        snprintf(err, errlen, "%s holds %llu segments but the configured pool size gives "
                 "only %u; shrinking a pool is not supported: restore the size",
                 st->device_path, (unsigned long long)sb.nsegments, log->nsegments);
        return -EINVAL;
    }
    memcpy(st->uuid, sb.uuid, sizeof(st->uuid));
    uint8_t indexed[16];
    if (ss_index_meta_get(st->index, "uuid", indexed, sizeof(indexed)) != 0 ||
        memcmp(indexed, st->uuid, sizeof(indexed)) != 0) {
        *reset = 1; /* the index describes another device: start empty */
    } else {
        /* The index may describe fewer segments than the superblock: a
         * grow that stopped between the two writes. The rest start unused. */
        uint32_t state[2];
        if (ss_index_meta_get(st->index, "log", state, sizeof(state)) == 0 && state[1] >= 2 &&
            state[1] <= log->nsegments && state[1] <= sb.nsegments) {
            uint32_t n = log->nsegments;
            log->nsegments = state[1];
            log->head = state[0] < state[1] ? state[0] : 0;
            ss_index_meta_get(st->index, "gens", log->gens, (size_t)state[1] * 4);
            if (ss_index_meta_get(st->index, "order", log->order, (size_t)state[1] * 4) != 0)
                for (uint32_t i = 0; i < state[1]; i++)
                    log->order[i] = i; /* written before the ring had an order */
            log->pos = order_pos(log, log->head);
            log->nsegments = n;
            if (state[1] < n)
                order_insert(log->order, log->pos, state[1], n);
        }
    }
    if (sb.nsegments != log->nsegments) { /* grown: new segments start unused */
        rc = super_write(st);
        if (rc) {
            snprintf(err, errlen, "cannot update the superblock of %s: %s", st->device_path,
                     strerror(-rc));
            return rc;
        }
    }
    return 0;
}

int ss_log_open(struct ss_store *st, struct ss_counters *ctr, char *err, size_t errlen)
{
    struct ss_log *log = &st->log;
    log->segment_bytes = st->set.segment_bytes;
    log->base = st->set.device_offset;
    uint64_t n = (st->set.device_bytes - SS_SUPER_BYTES) / log->segment_bytes;
    if (st->set.device_bytes <= SS_SUPER_BYTES || n < 2 || n > UINT32_MAX) {
        snprintf(err, errlen, "device %s: %llu bytes is room for %llu segments of %u bytes; "
                 "a pool needs at least 2", st->device_path,
                 (unsigned long long)st->set.device_bytes, (unsigned long long)n,
                 log->segment_bytes);
        return -EINVAL;
    }
    log->nsegments = (uint32_t)n;
    log->head = log->pos = log->nsegments - 1;
    log->gens = calloc(n, sizeof(uint32_t));
    log->persisted_gens = calloc(n, sizeof(uint32_t));
    log->pinned = calloc(n, sizeof(uint64_t));
    log->order = malloc(n * sizeof(uint32_t));
    log->buf = aligned_alloc(4096, log->segment_bytes);
    log->reclaim_buf = aligned_alloc(4096, log->segment_bytes);
    uint32_t unit = ss_log_pad_unit(st) < 4096 ? 4096 : ss_log_pad_unit(st);
    log->flush_tail = aligned_alloc(unit, unit);
    uint32_t depth = SS_LOG_SEALED_BYTES / log->segment_bytes;
    log->sealed_max = depth < 1 ? 1 : depth > SS_LOG_SEALED_MAX ? SS_LOG_SEALED_MAX : depth;
    bool spares = true;
    for (log->nspare = 0; log->nspare < log->sealed_max; log->nspare++) {
        char *b = aligned_alloc(4096, log->segment_bytes);
        if (!b) {
            spares = false;
            break;
        }
        log->spare_bufs[log->nspare] = b;
    }
    if (!log->gens || !log->persisted_gens || !log->pinned || !log->order || !log->buf ||
        !log->reclaim_buf || !log->flush_tail || !spares) {
        snprintf(err, errlen, "out of memory for %u-byte segment buffers", log->segment_bytes);
        return -ENOMEM;
    }
    for (uint32_t i = 0; i < n; i++)
        log->order[i] = i;
    ss_short_lock_init(&log->lock);
    pthread_cond_init(&log->flushed, NULL);
    pthread_cond_init(&log->writer_wake, NULL);
    int reset = 0;
    int rc = log_load(st, &reset, err, errlen);
    if (rc)
        return rc;
    struct ss_index_txn *txn = NULL;
    rc = ss_index_begin(st->index, true, &txn);
    if (!rc && reset) {
        memset(log->gens, 0, n * sizeof(uint32_t));
        for (uint32_t i = 0; i < n; i++)
            log->order[i] = i;
        log->head = log->pos = log->nsegments - 1;
        rc = ss_index_txn_drop_items(txn);
        if (!rc)
            rc = ss_index_txn_meta_put(txn, "uuid", st->uuid, sizeof(st->uuid));
    }
    if (!rc)
        rc = ss_log_persist_state(st, txn);
    if (!rc)
        rc = ss_index_commit(txn);
    else if (txn)
        ss_index_abort(txn);
    if (rc) {
        snprintf(err, errlen, "cannot write the index in %s: %s", st->index_dir,
                 strerror(-rc));
        return rc;
    }
    ss_log_state_persisted(log);
    return 0;
}



void ss_log_close(struct ss_store *st)
{
    struct ss_log *log = &st->log;
    free(log->gens);
    free(log->persisted_gens);
    free(log->pinned);
    free(log->order);
    free(log->buf);
    free(log->reclaim_buf);
    free(log->flush_tail);
    for (uint32_t i = 0; i < log->nspare; i++)
        free(log->spare_bufs[i]);
    for (uint32_t i = 0; i < log->nsealed; i++) /* none once the writer stopped */
        free(log->sealed[i].buf);
    log->nspare = log->nsealed = 0;
    log->gens = log->persisted_gens = log->order = NULL;
    log->pinned = NULL;
    log->buf = log->reclaim_buf = log->flush_tail = NULL;
}

/* The per-segment arrays of a log of n segments. */
struct log_arrays {
    uint32_t *gens, *persisted_gens, *order;
    uint64_t *pinned;
};

static void arrays_swap(struct ss_log *log, struct log_arrays *a)
{
    struct log_arrays old = {log->gens, log->persisted_gens, log->order, log->pinned};
    log->gens = a->gens;
    log->persisted_gens = a->persisted_gens;
    log->order = a->order;
    log->pinned = a->pinned;
    *a = old;
}

static void arrays_free(struct log_arrays *a)
{
    free(a->gens);
    free(a->persisted_gens);
    free(a->order);
    free(a->pinned);
}

/* Grow (log lock held): new arrays, new segments after the head. */
static int log_grow(struct ss_store *st, uint32_t n_new)
{
    struct ss_log *log = &st->log;
    uint32_t n = log->nsegments;
    struct log_arrays a = {
        calloc(n_new, sizeof(uint32_t)), calloc(n_new, sizeof(uint32_t)),
        malloc((size_t)n_new * sizeof(uint32_t)), calloc(n_new, sizeof(uint64_t)),
    };
    if (!a.gens || !a.persisted_gens || !a.order || !a.pinned) {
        arrays_free(&a);
        return -ENOMEM;
    }
    memcpy(a.gens, log->gens, (size_t)n * 4);
    memcpy(a.persisted_gens, log->persisted_gens, (size_t)n * 4);
    memcpy(a.order, log->order, (size_t)n * 4);
    memcpy(a.pinned, log->pinned, (size_t)n * 8);
    order_insert(a.order, log->pos, n, n_new);
    arrays_swap(log, &a);
    log->nsegments = n_new;
    /* Superblock first: an index that describes fewer segments than the
     * superblock loads fine (log_load), the other way round would not. */
    int rc = super_write(st);
    if (rc) {
        arrays_swap(log, &a);
        log->nsegments = n;
        arrays_free(&a);
        return rc;
    }
    arrays_free(&a);
    rc = log_persist_state_now(st);
    if (!rc)
        ss_log_state_persisted(log);
    /* The head's next segment is a new, empty one now: nothing to keep
     * room for until that one is the head. */
    log->copy_reserve = 0;
    log->grows++;
    return rc;
}

/* Shrink (log lock held, no other user of the store). */
static int log_shrink(struct ss_store *st, struct ss_counters *ctr, uint32_t n_new)
{
    struct ss_log *log = &st->log;
    uint32_t n = log->nsegments;
    int rc = ss_log_write_dirty_locked(st, ctr); /* so reclaim sees the head's records */
    if (rc)
        return rc;
    struct ss_index_txn *txn;
    rc = ss_index_begin(st->index, true, &txn);
    if (rc)
        return rc;
    for (uint32_t seg = n_new; seg < n; seg++) {
        if (log->gens[seg] &&
            (rc = ss_log_reclaim_locked(st, txn, seg, log->gens[seg], ctr)) != 0) {
            ss_index_abort(txn);
            return rc;
        }
    }
    /* The new head: the head itself if kept, else the newest kept segment
     * before it in ring order; the ring keeps its order otherwise. */
    uint32_t head = log->head;
    for (uint32_t k = 0; head >= n_new && k < n; k++)
        head = log->order[(log->pos + n - k) % n];
    uint32_t j = 0, pos = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (log->order[i] >= n_new)
            continue;
        if (log->order[i] == head)
            pos = j;
        log->order[j++] = log->order[i];
    }
    int moved = head != log->head;
    log->nsegments = n_new;
    log->head = head;
    log->pos = pos;
    if (moved) /* never append into a kept segment's middle: roll below */
        log->write_off = log->flushed_off = 0;
    rc = ss_log_persist_state(st, txn);
    rc = rc ? (ss_index_abort(txn), rc) : ss_index_commit(txn);
    if (rc)
        return rc;
    ss_log_state_persisted(log);
    if (!moved) /* its next segment may be another one now */
        log->copy_reserve = (uint32_t)log->pinned[log->order[(log->pos + 1) % n_new]];
    rc = super_write(st);
    if (!rc && moved)
        rc = ss_log_roll_locked(st, ctr);
    return rc;
}

/*
 * Resize the log to new_bytes (superblock included). Growing is safe while
 * serving: it runs under the log lock, which every reader of gens/order
 * takes. Shrinking evicts the items of the segments cut off and must run
 * with no other user of the store. Returns 0 or -errno (-EINVAL for the
 * wrong direction or fewer than 2 segments).
 */
int ss_log_resize(struct ss_store *st, struct ss_counters *ctr, uint64_t new_bytes, int shrink)
{
    struct ss_log *log = &st->log;
    if (new_bytes <= SS_SUPER_BYTES)
        return -EINVAL;
    uint64_t n_new = (new_bytes - SS_SUPER_BYTES) / log->segment_bytes;
    if (n_new < 2 || n_new > UINT32_MAX)
        return -EINVAL;
    pthread_mutex_lock(&log->lock);
    ss_log_writer_drain(st);
    while (log->flushing)
        pthread_cond_wait(&log->flushed, &log->lock);
    int rc = 0;
    char why[256];
    if (shrink ? n_new > log->nsegments : n_new < log->nsegments)
        rc = -EINVAL;
    else if (shrink && n_new != log->nsegments)
        rc = ss_pinned_shrink_check_locked(st, (uint32_t)n_new, why, sizeof(why));
    if (rc == 0 && n_new != log->nsegments)
        rc = shrink ? log_shrink(st, ctr, (uint32_t)n_new) : log_grow(st, (uint32_t)n_new);
    if (!rc) {
        st->set.device_bytes = new_bytes;
        st->dev->size = log->base + new_bytes > st->dev->size ? log->base + new_bytes
                                                               : st->dev->size;
    }
    pthread_mutex_unlock(&log->lock);
    return rc;
}
