/*
 * ss_log_read.c - reading records back from the segment log: the record
 * checksum, verification of a record against the index entry that points to
 * it, synchronous reads (from the open or sealed segment's buffer, else from
 * the device) and the aligned span an asynchronous read needs (ss_read.c).
 *
 * A record is served only when it is whole and is the one the entry names:
 * the segment's generation, the key, the length and the checksum must all
 * agree, so a torn write, a record of an earlier use of the segment, or one
 * of another key is a miss, never a wrong value.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "common/ss_crc32c.h"
#include "ss_store_internal.h"

uint32_t ss_record_crc(const void *key, size_t nkey, uint32_t flags, uint32_t nbytes,
                       const struct iovec *iov, int niov)
{
    uint32_t fixed[3] = {nbytes, flags, (uint32_t)nkey};
    uint32_t crc = ss_crc32c(0, fixed, sizeof(fixed));
    crc = ss_crc32c(crc, key, nkey);
    for (int i = 0; i < niov; i++)
        crc = ss_crc32c(crc, iov[i].iov_base, iov[i].iov_len);
    return crc;
}

/* Records written before CRC-32C (magic "1SSR"). */
static uint32_t record_crc_zlib(const void *key, size_t nkey, uint32_t flags, uint32_t nbytes,
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

uint32_t ss_record_crc_as(uint32_t magic, const void *key, size_t nkey, uint32_t flags,
                          uint32_t nbytes, const struct iovec *iov, int niov)
{
    return magic == SS_RECORD_MAGIC_ZLIB ? record_crc_zlib(key, nkey, flags, nbytes, iov, niov)
                                         : ss_record_crc(key, nkey, flags, nbytes, iov, niov);
}

uint32_t ss_record_whole(const char *rec, uint32_t room, uint32_t gen)
{
    struct ss_record_hdr h;
    if (room < sizeof(h))
        return 0;
    memcpy(&h, rec, sizeof(h));
    if (!ss_record_magic_ok(h.magic) || h.seg_gen != gen || h.nkey == 0 || h.nbytes > room)
        return 0;
    uint32_t size = ss_record_size(h.nkey, h.nbytes);
    if (size > room)
        return 0;
    const char *key = rec + sizeof(h);
    struct iovec v = {.iov_base = (void *)(key + h.nkey), .iov_len = h.nbytes};
    return ss_record_crc_as(h.magic, key, h.nkey, h.flags, h.nbytes, &v, 1) == h.crc ? size : 0;
}

/* Is rec the record of key that e points to, whole? 0 with t->value set, or -EBADMSG. */
static int verify_record(struct ss_store_thread *t, const void *key, size_t nkey,
                         const struct ss_index_entry *e, const char *rec)
{
    struct ss_record_hdr h;
    memcpy(&h, rec, sizeof(h));
    const char *rkey = rec + sizeof(h);
    if (!ss_record_magic_ok(h.magic) || h.seg_gen != e->seg_gen || h.nkey != nkey ||
        h.nbytes != e->nbytes || memcmp(rkey, key, nkey) != 0)
        return -EBADMSG;
    struct iovec v = {.iov_base = (void *)(rkey + nkey), .iov_len = h.nbytes};
    if (ss_record_crc_as(h.magic, key, nkey, h.flags, h.nbytes, &v, 1) != h.crc)
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
        uint64_t a = ss_log_align(st), from = at & ~(a - 1);
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
    uint64_t a = ss_log_align(st);
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
    size_t a = ss_log_align(t->store);
    size_t cap = (len + a - 1) & ~(a - 1);
    char *p = aligned_alloc(a, cap);
    if (!p)
        return -ENOMEM;
    free(t->dio_buf);
    t->dio_buf = p;
    t->dio_cap = cap;
    return 0;
}
