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
 * Lock order: a key's stripe lock, then the log lock, then the index's
 * writer lock. Reclaim takes the log lock then the index's; it never takes
 * stripe locks. The log's state (head, generations, ring order) is kept in
 * the index's metadata, written in the transaction that changes it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <zlib.h>

#include "common/ss_clock.h"
#include "ss_store_internal.h"

uint64_t ss_log_seg_off(const struct ss_log *log, uint32_t seg)
{
    return log->base + SS_SUPER_BYTES + (uint64_t)seg * log->segment_bytes;
}

/* The alignment the device requires of our I/O (1: none, page cache). */
static inline uint32_t log_align(const struct ss_store *st)
{
    return st->dev->align > 1 ? st->dev->align : 1u;
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
    uint32_t a = log_align(st);
    *wfrom = from & ~(a - 1);
    *wto = (uint32_t)(((uint64_t)to + a - 1) & ~(uint64_t)(a - 1));
    if (*wto > log->segment_bytes)
        *wto = log->segment_bytes;
    memset(log->buf + to, 0, *wto - to);
}

uint32_t ss_record_crc(const void *key, size_t nkey, uint32_t flags, uint32_t nbytes,
                       const struct iovec *iov, int niov)
{
    uint32_t fixed[3] = {nbytes, flags, (uint32_t)nkey};
    uLong crc = crc32(0L, Z_NULL, 0);
    crc = crc32(crc, (const Bytef *)fixed, sizeof(fixed));
    crc = crc32(crc, key, (uInt)nkey);
    for (int i = 0; i < niov; i++)
        crc = crc32(crc, iov[i].iov_base, (uInt)iov[i].iov_len);
    return (uint32_t)crc;
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

/* Write buf[flushed_off, write_off) to the head segment. Log lock held. */
static int log_write_dirty(struct ss_store *st, struct ss_counters *ctr)
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
        if (h.magic != SS_RECORD_MAGIC || h.seg_gen != gen)
            break; /* end of what this use of the segment wrote */
        uint32_t size = ss_record_size(h.nkey, h.nbytes);
        if (h.nkey == 0 || size > log->segment_bytes - off)
            break; /* torn header: nothing after it can be trusted */
        const char *key = buf + off + sizeof(h);
        struct ss_index_entry e;
        if (ss_index_txn_get(txn, key, h.nkey, &e) == 0) {
            if (e.segment == seg && e.seg_gen == gen && e.offset == off) {
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
static int log_reclaim(struct ss_store *st, struct ss_index_txn *txn, uint32_t seg, uint32_t gen,
                       struct ss_counters *ctr)
{
    int rc = ss_log_read_segment(st, seg, st->log.reclaim_buf, ctr);
    if (rc)
        return rc;
    ss_log_reclaim_records(st, txn, seg, gen, st->log.reclaim_buf, ctr);
    return 0;
}

/* Close the head segment and open the next one, reclaiming it, here and
 * now: at start, for a shrink, or with no writer running. Lock held. */
static int log_roll(struct ss_store *st, struct ss_counters *ctr)
{
    struct ss_log *log = &st->log;
    ss_log_writer_drain(st); /* the reclaim buffer and the sealed one are free */
    while (log->flushing) /* the buffer is about to be reused */
        pthread_cond_wait(&log->flushed, &log->lock);
    int rc = log_write_dirty(st, ctr);
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
        rc = log_reclaim(st, txn, next, log->gens[next], ctr);
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
    log->write_off = log->flushed_off = 0;
    log->dirty_since_ms = 0;
    log->ready = false;
    log->state_dirty = false;
    return 0;
}

int ss_log_append(struct ss_store *st, struct ss_counters *ctr, const void *key, size_t nkey,
                  struct ss_index_entry *e, uint32_t crc, const struct iovec *iov, int niov)
{
    struct ss_log *log = &st->log;
    uint32_t size = ss_record_size(nkey, e->nbytes);
    if (size > log->segment_bytes)
        return -E2BIG;
    pthread_mutex_lock(&log->lock);
    if (log->write_off + size > log->segment_bytes) {
        int rc = ss_log_writer_roll(st, ctr);
        if (rc == -EAGAIN)
            rc = log_roll(st, ctr);
        if (rc) {
            pthread_mutex_unlock(&log->lock);
            return rc;
        }
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

/* Is rec the record of key that e points to, whole? 0 with t->value set, or -EBADMSG. */
static int verify_record(struct ss_store_thread *t, const void *key, size_t nkey,
                         const struct ss_index_entry *e, const char *rec)
{
    struct ss_record_hdr h;
    memcpy(&h, rec, sizeof(h));
    const char *rkey = rec + sizeof(h);
    if (h.magic != SS_RECORD_MAGIC || h.seg_gen != e->seg_gen || h.nkey != nkey ||
        h.nbytes != e->nbytes || memcmp(rkey, key, nkey) != 0)
        return -EBADMSG;
    struct iovec v = {.iov_base = (void *)(rkey + nkey), .iov_len = h.nbytes};
    if (ss_record_crc(key, nkey, h.flags, h.nbytes, &v, 1) != h.crc)
        return -EBADMSG;
    t->value = rkey + nkey;
    t->value_len = h.nbytes;
    return 0;
}

int ss_log_read(struct ss_store_thread *t, const void *key, size_t nkey,
                const struct ss_index_entry *e)
{
    return ss_log_read_mode(t, key, nkey, e, false);
}

int ss_log_read_mode(struct ss_store_thread *t, const void *key, size_t nkey,
                     const struct ss_index_entry *e, bool nowait)
{
    struct ss_store *st = t->store;
    struct ss_log *log = &st->log;
    uint32_t size = ss_record_size(nkey, e->nbytes);
    if (size > log->segment_bytes - e->offset)
        return -EBADMSG;
    t->scratch.len = 0;
    int rc = ss_buf_reserve(&t->scratch, size);
    if (rc)
        return rc;
    pthread_mutex_lock(&log->lock);
    if (e->segment >= log->nsegments) { /* a grow may be under way: check locked */
        pthread_mutex_unlock(&log->lock);
        return -EBADMSG;
    }
    uint32_t gen = log->gens[e->segment];
    const char *mem = gen == e->seg_gen ? ss_log_in_memory(log, e, size) : NULL;
    int in_buffer = mem != NULL;
    if (mem)
        memcpy(t->scratch.data, mem, size);
    pthread_mutex_unlock(&log->lock);
    if (gen != e->seg_gen)
        return -ESTALE; /* the segment was reclaimed since */
    const char *rec = t->scratch.data;
    if (!in_buffer) {
        /* Under direct I/O read the enclosing aligned span into the aligned
         * buffer and serve from inside it; else exactly the record. */
        uint64_t at = ss_log_seg_off(log, e->segment) + e->offset;
        uint64_t a = log_align(st), from = at & ~(a - 1);
        uint64_t to = (at + size + a - 1) & ~(a - 1);
        char *dst = t->scratch.data;
        if (a > 1) {
            rc = ss_log_dio_reserve(t, (size_t)(to - from));
            if (rc)
                return rc;
            dst = t->dio_buf;
            rec = dst + (at - from);
        }
        if (nowait) {
            rc = st->dev->ops->read_nowait
                     ? st->dev->ops->read_nowait(st->dev, from, dst, (size_t)(to - from))
                     : -EAGAIN;
            if (rc == -EAGAIN)
                return rc; /* it would wait: the caller reads asynchronously */
        } else {
            rc = st->dev->ops->read(st->dev, from, dst, (size_t)(to - from));
        }
        if (rc) {
            t->ctr->errors_device++;
            return -EIO;
        }
        t->ctr->device_reads++;
        t->ctr->device_read_bytes += to - from;
    }
    return verify_record(t, key, nkey, e, rec);
}

int ss_log_span(struct ss_store *st, size_t nkey, const struct ss_index_entry *e,
                uint64_t *from, uint32_t *len, uint32_t *rec_off)
{
    struct ss_log *log = &st->log;
    uint32_t size = ss_record_size(nkey, e->nbytes);
    if (size > log->segment_bytes - e->offset)
        return -EBADMSG;
    pthread_mutex_lock(&log->lock);
    if (e->segment >= log->nsegments) {
        pthread_mutex_unlock(&log->lock);
        return -EBADMSG;
    }
    uint32_t gen = log->gens[e->segment];
    int in_buffer = gen == e->seg_gen && ss_log_in_memory(log, e, size) != NULL;
    pthread_mutex_unlock(&log->lock);
    if (gen != e->seg_gen)
        return -ESTALE;
    if (in_buffer)
        return 1;
    uint64_t at = ss_log_seg_off(log, e->segment) + e->offset;
    uint64_t a = log_align(st);
    *from = at & ~(a - 1);
    *len = (uint32_t)(((at + size + a - 1) & ~(a - 1)) - *from);
    *rec_off = (uint32_t)(at - *from);
    return 0;
}

int ss_log_verify(struct ss_store_thread *t, const void *key, size_t nkey,
                  const struct ss_index_entry *e, const char *rec)
{
    struct ss_log *log = &t->store->log;
    /* The read ran without the lock: the segment may have been reused since. */
    pthread_mutex_lock(&log->lock);
    uint32_t gen = e->segment < log->nsegments ? log->gens[e->segment] : 0;
    pthread_mutex_unlock(&log->lock);
    if (gen != e->seg_gen)
        return -ESTALE;
    return verify_record(t, key, nkey, e, rec);
}

int ss_log_dio_reserve(struct ss_store_thread *t, size_t len)
{
    if (t->dio_cap >= len)
        return 0;
    size_t a = log_align(t->store);
    size_t cap = (len + a - 1) & ~(a - 1);
    char *p = aligned_alloc(a, cap);
    if (!p)
        return -ENOMEM;
    free(t->dio_buf);
    t->dio_buf = p;
    t->dio_cap = cap;
    return 0;
}

/*
 * Write the open segment's unwritten bytes if they are older than age_ms.
 * The write runs without the log lock, so appends go on meanwhile: bytes
 * before write_off never change until a roll, and a roll waits for it.
 */
int ss_log_flush(struct ss_store *st, struct ss_counters *ctr, uint64_t age_ms)
{
    struct ss_log *log = &st->log;
    pthread_mutex_lock(&log->lock);
    if (log->flushing || !log->dirty_since_ms ||
        ss_clock_mono_ms() - log->dirty_since_ms < age_ms ||
        log->write_off <= log->flushed_off) {
        pthread_mutex_unlock(&log->lock);
        return 0;
    }
    uint32_t seg = log->head, to = log->write_off, wfrom, wto;
    ss_log_pad_span(st, log->flushed_off, to, &wfrom, &wto);
    log->flushing = 1;
    pthread_mutex_unlock(&log->lock);

    int rc = st->dev->ops->write(st->dev, ss_log_seg_off(log, seg) + wfrom, log->buf + wfrom,
                                 wto - wfrom);

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
    pthread_mutex_unlock(&log->lock);
    return rc;
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
    log->order = malloc(n * sizeof(uint32_t));
    log->buf = aligned_alloc(4096, log->segment_bytes);
    log->reclaim_buf = aligned_alloc(4096, log->segment_bytes);
    log->spare_buf = aligned_alloc(4096, log->segment_bytes);
    if (!log->gens || !log->order || !log->buf || !log->reclaim_buf || !log->spare_buf) {
        snprintf(err, errlen, "out of memory for %u-byte segment buffers", log->segment_bytes);
        return -ENOMEM;
    }
    for (uint32_t i = 0; i < n; i++)
        log->order[i] = i;
    pthread_mutex_init(&log->lock, NULL);
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
    return 0;
}

/* Start writing into a fresh segment (at open, after any repair). */
int ss_log_start(struct ss_store *st, struct ss_counters *ctr)
{
    pthread_mutex_lock(&st->log.lock);
    int rc = log_roll(st, ctr);
    pthread_mutex_unlock(&st->log.lock);
    return rc;
}

void ss_log_close(struct ss_store *st)
{
    struct ss_log *log = &st->log;
    free(log->gens);
    free(log->order);
    free(log->buf);
    free(log->reclaim_buf);
    free(log->spare_buf);
    log->gens = log->order = NULL;
    log->buf = log->reclaim_buf = log->spare_buf = NULL;
}

/* Grow (log lock held): new arrays, new segments after the head. */
static int log_grow(struct ss_store *st, uint32_t n_new)
{
    struct ss_log *log = &st->log;
    uint32_t n = log->nsegments;
    uint32_t *gens = calloc(n_new, sizeof(uint32_t));
    uint32_t *order = malloc((size_t)n_new * sizeof(uint32_t));
    if (!gens || !order) {
        free(gens);
        free(order);
        return -ENOMEM;
    }
    memcpy(gens, log->gens, (size_t)n * 4);
    memcpy(order, log->order, (size_t)n * 4);
    order_insert(order, log->pos, n, n_new);
    uint32_t *old_gens = log->gens, *old_order = log->order;
    log->gens = gens;
    log->order = order;
    log->nsegments = n_new;
    /* Superblock first: an index that describes fewer segments than the
     * superblock loads fine (log_load), the other way round would not. */
    int rc = super_write(st);
    if (rc) {
        log->gens = old_gens;
        log->order = old_order;
        log->nsegments = n;
        free(gens);
        free(order);
        return rc;
    }
    free(old_gens);
    free(old_order);
    rc = log_persist_state_now(st);
    log->grows++;
    return rc;
}

/* Shrink (log lock held, no other user of the store). */
static int log_shrink(struct ss_store *st, struct ss_counters *ctr, uint32_t n_new)
{
    struct ss_log *log = &st->log;
    uint32_t n = log->nsegments;
    int rc = log_write_dirty(st, ctr); /* so reclaim sees the head's records */
    if (rc)
        return rc;
    struct ss_index_txn *txn;
    rc = ss_index_begin(st->index, true, &txn);
    if (rc)
        return rc;
    for (uint32_t seg = n_new; seg < n; seg++) {
        if (log->gens[seg] && (rc = log_reclaim(st, txn, seg, log->gens[seg], ctr)) != 0) {
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
    rc = super_write(st);
    if (!rc && moved)
        rc = log_roll(st, ctr);
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
    if (shrink ? n_new > log->nsegments : n_new < log->nsegments)
        rc = -EINVAL;
    else if (n_new != log->nsegments)
        rc = shrink ? log_shrink(st, ctr, (uint32_t)n_new) : log_grow(st, (uint32_t)n_new);
    if (!rc) {
        st->set.device_bytes = new_bytes;
        st->dev->size = log->base + new_bytes > st->dev->size ? log->base + new_bytes
                                                               : st->dev->size;
    }
    pthread_mutex_unlock(&log->lock);
    return rc;
}
