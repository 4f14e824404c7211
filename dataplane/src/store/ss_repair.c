/*
 * ss_repair.c - every index entry checked against its record on the device:
 * after an unclean stop (the open segment's tail may never have reached the
 * device) the entries that do not verify are dropped, and `smartswitch
 * verify-index` counts them (ss_store_verify).
 *
 * It sits above the index and the log and uses both through their
 * interfaces; neither calls back here. The walk runs in one read
 * transaction; the repair's deletions then go in one write transaction,
 * since deleting under an open cursor would move it.
 */
#include <errno.h>

#include "ss_store_internal.h"

/*
 * Walk the index and check each entry's record. Failures are counted and,
 * when doomed is given, their keys appended to it as [nkey][key]. Returns
 * the number that failed or -errno; *checked gets the number examined.
 */
static long verify_entries(struct ss_store_thread *t, uint64_t *checked,
                           struct ss_buf *doomed)
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
    return verify_entries(t, checked, NULL);
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
    long dropped = verify_entries(t, &checked, &doomed);
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
