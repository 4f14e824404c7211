/*
 * ss_repair.c - every index entry checked against its record on the device:
 * after an unclean stop (the open segment's tail may never have reached the
 * device) the entries that do not verify are dropped, and `smartswitch
 * verify-index` counts them (ss_store_verify).
 *
 * A repair also drops entries that still verify but that no reclaim walk
 * can reach (unwalkable_segments). The walk that evicts a segment follows
 * its records from offset 0 and stops at the first one of another use; so
 * when the record at offset 0 is not of the use the log's state names, the
 * segment's next reuse would delete none of that use's entries, and they
 * would stay in the index for good, naming records gone by then. After a
 * crash that is the case of a roll the state never recorded: the new use's
 * first records reached the device (a flush of the head, or a sealed
 * segment written before the state; ss_log_writer.c), its generation did
 * not. Those entries are unpinned ones (a roll waits until the segment's
 * pinned records are copied forward and their moves committed), so
 * dropping them is an early eviction of what the next roll evicts anyway.
 *
 * It sits above the index and the log and uses both through their
 * interfaces; neither calls back here. The walk runs in one read
 * transaction; the repair's deletions then go in one write transaction,
 * since deleting under an open cursor would move it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ss_store_internal.h"

/*
 * Which segments' current use no reclaim walk can reach: the header at
 * offset 0 on the device is not a record of that use. One small read per
 * segment, at open (nothing of the log is in memory yet). Returns a
 * calloc'd flag per segment, or NULL (no memory: nothing is flagged, and
 * the repair checks records as before).
 */
static bool *unwalkable_segments(struct ss_store_thread *t)
{
    struct ss_store *st = t->store;
    struct ss_log *log = &st->log;
    size_t a = ss_log_align(st);
    size_t len = a > sizeof(struct ss_record_hdr) ? a : sizeof(struct ss_record_hdr);
    bool *flag = calloc(log->nsegments, sizeof(*flag));
    if (!flag || ss_log_dio_reserve(t, len)) {
        free(flag);
        return NULL;
    }
    for (uint32_t seg = 0; seg < log->nsegments; seg++) {
        if (!log->gens[seg])
            continue; /* never used: no entry names it */
        struct ss_record_hdr h;
        if (st->dev->ops->read(st->dev, ss_log_seg_off(log, seg), t->dio_buf, len) != 0)
            continue; /* the records' own reads will fail, and drop their entries */
        memcpy(&h, t->dio_buf, sizeof(h));
        flag[seg] = !ss_record_magic_ok(h.magic) || h.seg_gen != log->gens[seg];
    }
    return flag;
}

/* An unpinned entry of a segment flagged in unwalkable (may be NULL). */
static bool unreachable(const struct ss_log *log, const bool *unwalkable,
                        const struct ss_index_entry *e)
{
    return unwalkable && e->segment < log->nsegments && unwalkable[e->segment] &&
           !(e->bits & SS_ITEM_PINNED);
}

/*
 * Walk the index and check each entry's record. Failures are counted and,
 * when doomed is given, their keys appended to it as [nkey][key]; an
 * unreachable one fails too. Returns the number that failed or -errno;
 * *checked gets the number examined.
 */
static long verify_entries(struct ss_store_thread *t, uint64_t *checked,
                           struct ss_buf *doomed, const bool *unwalkable)
{
    struct ss_index_txn *txn;
    struct ss_index_cursor *cur;
    *checked = 0;
    int rc = ss_index_begin(t->store->index, false, &txn);
    if (rc)
        return rc;
    rc = ss_index_cursor_open(txn, &cur);
    if (rc) {
        ss_index_abort(txn);
        return rc;
    }
    long failed = 0;
    struct ss_index_item it;
    for (rc = ss_index_cursor_seek(cur, NULL, 0, &it); rc == 0;
         rc = ss_index_cursor_next(cur, &it)) {
        (*checked)++;
        bool bad = !it.valid || it.nkey == 0 || it.nkey > SS_KEY_MAX_LENGTH ||
                   unreachable(&t->store->log, unwalkable, &it.e) ||
                   ss_log_read(t, it.key, it.nkey, &it.e) != 0;
        if (!bad)
            continue;
        if (doomed) {
            uint8_t n = (uint8_t)(it.nkey > 255 ? 255 : it.nkey);
            if (ss_buf_append(doomed, &n, 1) || ss_buf_append(doomed, it.key, n))
                break; /* out of memory: drop what was gathered */
        }
        failed++;
    }
    ss_index_cursor_close(cur);
    ss_index_abort(txn);
    return failed;
}

long ss_store_verify(struct ss_store_thread *t, uint64_t *checked)
{
    return verify_entries(t, checked, NULL, NULL);
}

/* Delete the [nkey][key] list in one transaction. 0 or -errno. */
static int drop_keys(struct ss_index *ix, const struct ss_buf *keys)
{
    struct ss_index_txn *txn;
    int rc = ss_index_begin(ix, true, &txn);
    if (rc)
        return rc;
    for (size_t off = 0; off < keys->len;) {
        uint8_t n = (uint8_t)keys->data[off];
        ss_index_txn_del(txn, keys->data + off + 1, n);
        off += 1u + n;
    }
    return ss_index_commit(txn);
}

long ss_repair_index(struct ss_store_thread *t)
{
    struct ss_buf doomed = {0};
    uint64_t checked;
    bool *unwalkable = unwalkable_segments(t);
    long dropped = verify_entries(t, &checked, &doomed, unwalkable);
    free(unwalkable);
    int rc = 0;
    if (dropped > 0) {
        rc = drop_keys(t->store->index, &doomed);
        t->ctr->errors_checksum += (uint64_t)dropped;
    }
    ss_buf_free(&doomed);
    if (dropped < 0)
        return dropped;
    return rc ? rc : dropped;
}
