/*
 * ss_copy_forward.c - pinned records are never evicted: before the ring
 * reuses a segment, every pinned record still live in it is appended to the
 * head again and its index entry moved to the copy. Also the log's start at
 * open, which goes on appending in the head when the segment after it still
 * holds pinned records.
 *
 * The segment writer calls ss_copy_forward_run for the segment N after the
 * head H (ss_log_writer.c: prepare_next, through struct ss_log_hooks), with
 * N read back into a buffer and no lock held; the roll into N waits until it
 * returns 0 and N's pinned figure is 0. The steps:
 *
 *  1. Settle the index: write the head and commit what is pending, so the
 *     index names no record of N but those of entries live when H opened.
 *  2. Copy. For each record of N, under its key's stripe lock: it must live
 *     on if the key's current entry (pending, committing or index) names it
 *     and is pinned, or if the committed entry (the index alone) does (a
 *     crash before the newer operation commits would bring that one back).
 *     A current entry that is dead (expired, flushed) is dropped instead.
 *     The copy is the record with the head's generation, same checksum,
 *     appended from the head's reserve (it never rolls).
 *  3. Make the copies durable: write the head, sync the device.
 *  4. Move. For each copy, under the stripe lock: if the current entry
 *     still names the old record, record the entry again with the copy's
 *     place (for the group commit), move the DRAM copy's place and the
 *     pinned figures. If only the committed entry names it, note the key
 *     for step 5. If neither, the copy is dead weight: its key changed.
 *  5. Commit the moves (their records are durable, so none is held back),
 *     then in one index transaction give each noted key whose committed
 *     entry still names the old record the copy's place (its newer
 *     operation replaces that once its own record is durable). Sync the
 *     index: only now may N's bytes be overwritten.
 *
 * Readers: an entry names the old record until step 4 moves it under the
 * key's stripe lock, and that record stays readable (N is neither reused
 * nor written before the roll); after that it names the copy, durable since
 * step 3. A reader holds the same lock across its look-up and read (an
 * asynchronous read re-checks the entry when it completes), so it sees one
 * or the other, whole. Crash: until step 5's commit the index names the old
 * records, after it the copies, synced before; copies a crash leaves
 * unnamed in the head are taken over when the store opens (adopt_copies).
 *
 * Termination. The walk visits each record of N once. Each copy fits: the
 * head's reserve (copy_reserve) is N's pinned figure when H opened; pinned
 * records only leave N after that, step 1 makes the committed index no
 * older, and each is copied at most once, so the copies never exceed it.
 * A segment wholly of live pinned records opened its predecessor with a
 * reserve of all of it: no write took any room there, the copies fill the
 * head, N's figure falls to 0 and the roll into N proceeds, opening the
 * next head with the next segment's figure as its reserve. So a roll costs
 * at most one segment's copies and frees the rest of that segment, and a
 * write waiting for room gives up after two turns of the ring (ss_log.c:
 * make_room), never spinning. If the reserve runs short all the same (a
 * bug, or a store damaged on the device), the copy fails with -ENOSPC and N
 * is not reused; writes then fail rather than lose a pinned record.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/ss_clock.h"
#include "ss_store_internal.h"

/* One record of N copied into the head. */
struct copy {
    uint32_t from;       /* its offset in N (the key is read from the buffer there) */
    uint32_t to_seg, to_off, to_gen;
    bool committed_only; /* step 4 found only the committed entry naming it */
};

struct copy_run {
    struct ss_store *st;
    struct ss_store_thread *t;
    uint32_t seg, gen;
    const char *buf;
    struct copy *copies;
    uint32_t ncopies, cap;
};

static bool names(const struct ss_index_entry *e, uint32_t seg, uint32_t gen, uint32_t off)
{
    return e->segment == seg && e->seg_gen == gen && e->offset == off;
}

static bool pinned_at(const struct ss_index_entry *e, uint32_t seg, uint32_t gen, uint32_t off)
{
    return (e->bits & SS_ITEM_PINNED) && names(e, seg, gen, off);
}

static void place_at(struct ss_index_entry *e, const struct copy *c)
{
    e->segment = c->to_seg;
    e->offset = c->to_off;
    e->seg_gen = c->to_gen;
}

/* Step 2 for the record at off (its header h): copy it if it must live on.
 * 0, or -errno (no room, no memory): the run stops. */
static int copy_record(struct copy_run *r, uint32_t off, const struct ss_record_hdr *h)
{
    struct ss_store_thread *t = r->t;
    const char *key = r->buf + off + sizeof(*h);
    struct ss_index_entry cur, com;
    ss_store_lock(t, key, h->nkey);
    bool live = ss_entry_get(t, key, h->nkey, &cur) == 0 && pinned_at(&cur, r->seg, r->gen, off);
    bool kept = ss_index_get(r->st->index, &t->rtxn, key, h->nkey, &com) == 0 &&
                pinned_at(&com, r->seg, r->gen, off);
    if (live && ss_entry_dead(r->st, &cur, ss_clock_unix_seconds())) {
        ss_entry_drop(t, key, h->nkey);
        live = kept = false;
    }
    int rc = 0;
    if ((live || kept) && r->ncopies == r->cap) {
        uint32_t cap = r->cap ? r->cap * 2 : 256;
        struct copy *more = realloc(r->copies, cap * sizeof(*more));
        if (!more)
            rc = -ENOMEM;
        else
            r->copies = more, r->cap = cap;
    }
    if (!rc && (live || kept)) {
        struct ss_index_entry ce = {.cas = h->cas, .flags = h->flags, .nbytes = h->nbytes};
        struct iovec v = {.iov_base = (void *)(key + h->nkey), .iov_len = h->nbytes};
        struct ss_append how = {.copy = true};
        rc = ss_log_append(t, key, h->nkey, &ce, h->crc, &v, 1, &how);
        if (!rc) {
            r->copies[r->ncopies++] = (struct copy){off, ce.segment, ce.offset, ce.seg_gen, false};
            t->ctr->pinned_copied++;
            t->ctr->pinned_copy_bytes += ss_record_size(h->nkey, h->nbytes);
        }
    }
    ss_store_unlock(t);
    return rc;
}

/* Step 2: walk N's records, as the reclaim does. */
static int copy_records(struct copy_run *r)
{
    uint32_t seg_bytes = r->st->log.segment_bytes;
    for (uint32_t off = 0; off + sizeof(struct ss_record_hdr) <= seg_bytes;) {
        struct ss_record_hdr h;
        memcpy(&h, r->buf + off, sizeof(h));
        if (!ss_record_magic_ok(h.magic) || h.seg_gen != r->gen)
            break; /* the end of what this use of N wrote */
        uint32_t size = ss_record_size(h.nkey, h.nbytes);
        if (h.nkey == 0 || h.nbytes > seg_bytes || size > seg_bytes - off)
            break; /* a torn header: nothing after it can be trusted */
        if (ss_record_whole(r->buf + off, seg_bytes - off, r->gen) == 0) {
            r->t->ctr->errors_checksum++; /* damaged on the device: no copy serves it */
        } else {
            int rc = copy_record(r, off, &h);
            if (rc)
                return rc;
        }
        off += size;
    }
    return 0;
}

/* Step 4 for one copy. 0, or -errno when the move could not be recorded
 * (then N must not be reused). */
static int move_entry(struct copy_run *r, struct copy *c)
{
    struct ss_store_thread *t = r->t;
    struct ss_record_hdr h;
    memcpy(&h, r->buf + c->from, sizeof(h));
    const char *key = r->buf + c->from + sizeof(h);
    struct ss_index_entry cur;
    int rc = 0;
    ss_store_lock(t, key, h.nkey);
    if (ss_entry_get(t, key, h.nkey, &cur) == 0 && pinned_at(&cur, r->seg, r->gen, c->from)) {
        struct ss_index_entry moved = cur;
        place_at(&moved, c);
        rc = ss_entry_put(t, key, h.nkey, &moved);
        if (!rc) {
            struct ss_stripe *s = &r->st->stripes[t->locked_stripe];
            struct ss_hot_item *hi = ss_hot_get(s, t->locked_hash, key, h.nkey);
            if (hi && names(&hi->e, r->seg, r->gen, c->from))
                place_at(&hi->e, c);
            ss_pinned_move(r->st, &cur, &moved, h.nkey);
        }
    } else {
        c->committed_only = true;
    }
    ss_store_unlock(t);
    return rc;
}

/* Step 5's second half: committed entries that still name old records. */
static int move_committed(struct copy_run *r)
{
    struct ss_index_txn *txn;
    int rc = ss_index_begin(r->st->index, true, &txn);
    for (uint32_t i = 0; i < r->ncopies && !rc; i++) {
        const struct copy *c = &r->copies[i];
        if (!c->committed_only)
            continue;
        struct ss_record_hdr h;
        memcpy(&h, r->buf + c->from, sizeof(h));
        const char *key = r->buf + c->from + sizeof(h);
        struct ss_index_entry com;
        if (ss_index_txn_get(txn, key, h.nkey, &com) == 0 && names(&com, r->seg, r->gen, c->from)) {
            place_at(&com, c);
            rc = ss_index_txn_put(txn, key, h.nkey, &com);
        }
    }
    if (rc) {
        ss_index_abort(txn);
        return rc;
    }
    return ss_index_commit(txn);
}

/* Step 6: N's figure must be 0 now. What is left counted there belongs to
 * records the walk could not reach (a torn header mid-segment: damage on
 * the device); the ring must not stick on it. */
static void clear_residue(struct copy_run *r)
{
    struct ss_log *log = &r->st->log;
    pthread_mutex_lock(&log->lock);
    if (log->pinned[r->seg]) {
        r->t->ctr->errors_checksum++;
        log->pinned[r->seg] = 0;
    }
    pthread_mutex_unlock(&log->lock);
}

/* Is the head's generation in the index's record of the log? Entries of
 * copies into it could not be committed otherwise (ss_pending.c). */
static bool head_persisted(struct ss_store *st)
{
    struct ss_log *log = &st->log;
    pthread_mutex_lock(&log->lock);
    bool yes = log->persisted_gens[log->head] == log->gens[log->head];
    pthread_mutex_unlock(&log->lock);
    return yes;
}

int ss_copy_forward_run(struct ss_store *st, uint32_t seg, uint32_t gen, const char *buf)
{
    struct copy_run r = {.st = st, .t = &st->copier, .seg = seg, .gen = gen, .buf = buf};
    struct ss_counters *ctr = r.t->ctr;
    bool failed = false;
    int rc = head_persisted(st) ? ss_log_flush_head(st, ctr) : -EIO;
    if (!rc) {
        ss_pend_commit_now(st, &failed);
        rc = failed ? -EIO : 0;
    }
    if (!rc)
        rc = copy_records(&r);
    if (!rc && r.ncopies) {
        rc = ss_log_flush_head(st, ctr);
        if (!rc)
            rc = st->dev->ops->sync(st->dev);
    }
    for (uint32_t i = 0; i < r.ncopies && !rc; i++)
        rc = move_entry(&r, &r.copies[i]);
    if (!rc) {
        ss_pend_commit_now(st, &failed);
        rc = failed ? -EIO : move_committed(&r);
    }
    if (!rc)
        rc = ss_index_sync(st->index);
    if (!rc)
        clear_residue(&r);
    if (rc)
        ctr->errors_index++;
    free(r.copies);
    return rc;
}

/* ---- at open ---- */

/* Is the record at rec (in the head) the same as the one e names in N? */
static bool same_record(struct ss_store_thread *t, const void *key, size_t nkey,
                        const struct ss_index_entry *e, const char *rec)
{
    if (ss_log_read(t, key, nkey, e) != 0)
        return false;
    struct ss_record_hdr a, b;
    memcpy(&a, rec, sizeof(a));
    memcpy(&b, t->value - nkey - sizeof(b), sizeof(b));
    return a.crc == b.crc && a.cas == b.cas && a.flags == b.flags && a.nbytes == b.nbytes &&
           memcmp(rec + sizeof(a) + nkey, t->value, a.nbytes) == 0;
}

/*
 * A copy forward into the head that a crash interrupted left copies of N's
 * records in the head whose moves never committed. Take them over: an entry
 * that still names a record of N whose exact copy is in the head's records
 * [0, end) is moved to the copy. Without it, those copies and the records
 * still to copy would together need more than the head's reserve. The
 * records are compared first and the entries written after, in one
 * transaction that holds no other lock (the index's writer lock comes after
 * the log's, never before).
 */
static int adopt_copies(struct ss_store *st, uint32_t head, uint32_t gen, uint32_t next,
                        uint32_t end)
{
    struct ss_log *log = &st->log;
    struct ss_store_thread *t = &st->copier;
    uint32_t next_gen = log->gens[next];
    struct adopted {
        const char *key; /* in the head's buffer */
        uint8_t nkey;
        struct ss_index_entry from, to;
    } *found = NULL;
    uint32_t n = 0, cap = 0;
    int rc = 0;
    for (uint32_t off = 0, size; off < end && !rc; off += size) {
        struct ss_record_hdr h;
        memcpy(&h, log->buf + off, sizeof(h));
        size = ss_record_size(h.nkey, h.nbytes);
        const char *key = log->buf + off + sizeof(h);
        struct ss_index_entry e;
        if (ss_index_get(st->index, &t->rtxn, key, h.nkey, &e) != 0 ||
            !(e.bits & SS_ITEM_PINNED) || e.segment != next || e.seg_gen != next_gen ||
            !same_record(t, key, h.nkey, &e, log->buf + off))
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            struct adopted *more = realloc(found, cap * sizeof(*more));
            if (!more) {
                rc = -ENOMEM;
                break;
            }
            found = more;
        }
        struct adopted *a = &found[n++];
        *a = (struct adopted){.key = key, .nkey = h.nkey, .from = e, .to = e};
        a->to.segment = head;
        a->to.offset = off;
        a->to.seg_gen = gen;
    }
    struct ss_index_txn *txn = NULL;
    if (!rc && n)
        rc = ss_index_begin(st->index, true, &txn);
    for (uint32_t i = 0; i < n && !rc; i++)
        rc = ss_index_txn_put(txn, found[i].key, found[i].nkey, &found[i].to);
    if (txn)
        rc = rc ? (ss_index_abort(txn), rc) : ss_index_commit(txn);
    for (uint32_t i = 0; i < n && !rc; i++)
        ss_pinned_move(st, &found[i].from, &found[i].to, found[i].nkey);
    free(found);
    return rc;
}

/* Go on in the head: read it back, find the end of its whole records, take
 * over interrupted copies, and have the writer copy the rest. */
static int resume_head(struct ss_store *st, struct ss_counters *ctr, uint32_t head,
                       uint32_t gen, uint32_t next)
{
    struct ss_log *log = &st->log;
    int rc = ss_log_read_segment(st, head, log->buf, ctr);
    if (rc)
        return rc;
    uint32_t end = 0;
    for (uint32_t size; (size = ss_record_whole(log->buf + end, log->segment_bytes - end, gen));)
        end += size;
    rc = adopt_copies(st, head, gen, next, end);
    if (rc)
        return rc;
    pthread_mutex_lock(&log->lock);
    /* Bytes past `end` are a torn tail or an older use's: entries naming
     * them failed verification (repair), so appending over them is safe. */
    log->write_off = log->flushed_off = end;
    log->dirty_since_ms = 0;
    log->ready = false;
    ss_log_head_opened(log);
    if ((uint64_t)end + log->copy_reserve > log->segment_bytes)
        ctr->errors_checksum++; /* cannot happen short of damage: the copy will say */
    pthread_mutex_unlock(&log->lock);
    return 0;
}

int ss_copy_forward_open(struct ss_store *st, struct ss_counters *ctr)
{
    struct ss_log *log = &st->log;
    pthread_mutex_lock(&log->lock);
    uint32_t head = log->head, gen = log->gens[head];
    uint32_t next = log->order[(log->pos + 1) % log->nsegments];
    bool resume = gen != 0 && log->pinned[next] != 0;
    pthread_mutex_unlock(&log->lock);
    return resume ? resume_head(st, ctr, head, gen, next) : ss_log_start(st, ctr);
}
