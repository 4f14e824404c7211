/*
 * ss_store.c - the store's public API (ss_store.h): per-key critical
 * sections over the DRAM hot tier, the index and the segment log, and the
 * store's lifecycle (open, close, housekeeping).
 *
 * Reads go DRAM -> index -> device; a device hit is verified, then promoted
 * to DRAM. Writes append to the log, update the index, then the DRAM copy,
 * all under the key's stripe lock, so a DRAM copy is never older than the
 * index. flush_all is logical: every write takes a sequence number, and an
 * item whose number is below the flush mark is dead; housekeeping purges the
 * index of such items in the background.
 *
 * Index updates are written behind (ss_pending.c): a mutation records its
 * entry in the stripe's pending map and a committer thread writes batches,
 * so the lookup order is DRAM -> filter (ss_filter.c: a "no" is final) ->
 * pending -> committing -> index. Housekeeping drives the background
 * sweeps of the index (ss_sweep.c).
 *
 * A pinned write (SS_WRITE_PINNED) looks up the entry it replaces, so that
 * its pinned record's bytes are freed when the new one lands; a store that
 * pins nothing skips that look-up. ss_store_sync is the durability point.
 */
#define _GNU_SOURCE /* PTHREAD_MUTEX_ADAPTIVE_NP */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/ss_clock.h"
#include "common/ss_hash.h"
#include "ss_store_internal.h"

/* Sequence numbers (and so cas values) are reserved ahead in the index, so a
 * crash never hands out a number twice: at most SEQ_LOW_WATER of them can be
 * used between two housekeeping passes, which is far beyond any rate. */
#define SEQ_RESERVE   (1ull << 32)
#define SEQ_LOW_WATER (1ull << 31)
#define SYNC_INTERVAL_MS 1000u
/* memcached's ITEM_UPDATE_INTERVAL: a fetch moves an item's last-access time
 * at most once a minute, so meta `l` keeps counting between fetches. */
#define ITEM_UPDATE_INTERVAL 60

struct ss_store_private {
    struct ss_store st;
    int lock_fd;
    struct ss_counters open_ctr; /* work done while opening */
};

static struct ss_store_private *priv_of(struct ss_store *st)
{
    return (struct ss_store_private *)st;
}

static int persist_u64(struct ss_store *st, const char *name, uint64_t v)
{
    return ss_index_meta_put(st->index, name, &v, sizeof(v));
}

static void copies_flush_due(struct ss_store *st)
{
    if (!(atomic_load(&st->copies.flush_gen) & 1))
        atomic_fetch_add(&st->copies.flush_gen, 1);
}

static void copies_flushed(struct ss_store *st)
{
    atomic_fetch_or(&st->copies.flush_gen, 1);
    atomic_fetch_add(&st->copies.flush_gen, 1);
}

/* Everything written so far is flushed: items with an older seq are dead. */
static void flush_now(struct ss_store *st)
{
    atomic_store(&st->flush_seq, atomic_load(&st->next_seq));
    copies_flushed(st);
    persist_u64(st, "flush_seq", atomic_load(&st->flush_seq));
}

/* Apply a delayed flush_all whose time has come (any thread, any time). */
static void apply_due_flush(struct ss_store *st, int64_t now)
{
    int64_t due = atomic_load_explicit(&st->pending_flush_at, memory_order_relaxed);
    if (!due || now < due)
        return;
    if (!atomic_compare_exchange_strong(&st->pending_flush_at, &due, 0))
        return;
    flush_now(st);
    int64_t none = 0;
    ss_index_meta_put(st->index, "pending_flush", &none, sizeof(none));
}

/* Record a fetch as memcached does. Returns 1 if the entry changed. */
static int entry_bump(struct ss_index_entry *e, int64_t now)
{
    int changed = !(e->bits & SS_ITEM_FETCHED);
    e->bits |= SS_ITEM_FETCHED;
    if ((int64_t)e->last_access < now - ITEM_UPDATE_INTERVAL) {
        e->last_access = (uint32_t)now;
        changed = 1;
    }
    return changed;
}

static void entry_to_item(const struct ss_index_entry *e, struct ss_item *it, uint32_t tier)
{
    it->cas = e->cas;
    it->exptime = e->exptime;
    it->flags = e->flags;
    it->nbytes = e->nbytes;
    it->last_access = e->last_access;
    it->bits = e->bits;
    it->tier = tier;
}

static int mkdir_p(const char *path)
{
    char buf[4096];
    size_t n = strlen(path);
    if (n >= sizeof(buf))
        return -ENAMETOOLONG;
    memcpy(buf, path, n + 1);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        if (mkdir(buf, 0700) && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(buf, 0700) && errno != EEXIST)
        return -errno;
    return 0;
}

static int load_marks(struct ss_store *st)
{
    uint64_t v = 0;
    uint64_t reserved = ss_index_meta_get(st->index, "seq_reserved", &v, sizeof(v)) == 0 ? v : 1;
    atomic_store(&st->next_seq, reserved ? reserved : 1);
    atomic_store(&st->seq_reserved, atomic_load(&st->next_seq) + SEQ_RESERVE);
    int rc = persist_u64(st, "seq_reserved", atomic_load(&st->seq_reserved));
    if (rc)
        return rc;
    v = 0;
    ss_index_meta_get(st->index, "flush_seq", &v, sizeof(v));
    atomic_store(&st->flush_seq, v);
    int64_t pending = 0;
    ss_index_meta_get(st->index, "pending_flush", &pending, sizeof(pending));
    atomic_store(&st->pending_flush_at, pending);
    if (pending)
        copies_flush_due(st);
    return 0;
}

/* The settings that need nothing opened to be refused. 0 or -EINVAL. */
static int check_settings(const struct ss_store_settings *s, char *err, size_t errlen)
{
    if (!s->index_dir || (!s->device_path && !s->device)) {
        snprintf(err, errlen, "store settings need an index directory and a device path");
        return -EINVAL;
    }
    if ((uint64_t)s->item_size_max + sizeof(struct ss_record_hdr) + SS_KEY_MAX_LENGTH +
            SS_RECORD_ALIGN > s->segment_bytes) {
        snprintf(err, errlen, "segment_size %u bytes cannot hold an item of item_size_max "
                 "%u bytes; raise segment_size or lower item_size_max",
                 s->segment_bytes, s->item_size_max);
        return -EINVAL;
    }
    return 0;
}

/* The store's own copy of the settings; strings it keeps are its own. */
static void take_settings(struct ss_store *st, const struct ss_store_settings *s,
                          struct ss_device *given)
{
    st->set = *s;
    st->set.device = NULL;
    st->dev = given;
    st->index_dir = strdup(s->index_dir);
    /* Messages name the device by its path, or a given device by its name. */
    st->device_path = strdup(given ? (given->name ? given->name : given->kind) : s->device_path);
    st->set.index_dir = st->index_dir;
    st->set.device_path = st->device_path;
    st->set.pool_name = NULL; /* the caller's string may not outlive the store */
    st->hot_limit = s->hot_bytes;
}

/* Create storage.dir and lock it for this process. 0 or -errno. */
static int claim_index_dir(struct ss_store_private *p, char *err, size_t errlen)
{
    struct ss_store *st = &p->st;
    int rc = mkdir_p(st->index_dir);
    if (rc) {
        snprintf(err, errlen, "cannot create index directory %s: %s; check storage.dir",
                 st->index_dir, strerror(-rc));
        return rc;
    }
    /* LMDB allows many processes on one environment; two appliances on one
     * store would interleave their logs, so take an exclusive lock first. */
    char lockpath[4200];
    snprintf(lockpath, sizeof(lockpath), "%s/smartswitch.lock", st->index_dir);
    p->lock_fd = open(lockpath, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (p->lock_fd < 0 || flock(p->lock_fd, LOCK_EX | LOCK_NB) < 0) {
        snprintf(err, errlen, "the store in %s is in use by another SmartSwitch process; "
                 "stop it first, or give this one its own storage.dir", st->index_dir);
        return -EBUSY;
    }
    return 0;
}

/* The pool's place on its device, and the device (unless one was given). */
static int open_device(struct ss_store *st, char *err, size_t errlen)
{
    const struct ss_store_settings *s = &st->set;
    if (s->device_offset % SS_SUPER_BYTES) {
        snprintf(err, errlen, "pool offset %llu on %s is not a multiple of %u bytes",
                 (unsigned long long)s->device_offset, st->device_path, SS_SUPER_BYTES);
        return -EINVAL;
    }
    if (st->dev && st->dev->size < s->device_offset + s->device_bytes) {
        snprintf(err, errlen, "device %s holds %llu bytes but the pool needs %llu (offset "
                 "%llu + size %llu); provision a larger volume or a smaller pool",
                 st->device_path, (unsigned long long)st->dev->size,
                 (unsigned long long)(s->device_offset + s->device_bytes),
                 (unsigned long long)s->device_offset, (unsigned long long)s->device_bytes);
        return -EINVAL;
    }
    if (!st->dev)
        st->dev = ss_device_file_open_flags(st->device_path,
                                            s->device_offset + s->device_bytes,
                                            SS_DEVICE_CREATE |
                                                (s->direct_io ? SS_DEVICE_DIRECT : 0u) |
                                                (s->direct_writes ? SS_DEVICE_DIRECT_WRITES
                                                                  : 0u),
                                            err, errlen);
    return st->dev ? 0 : -EIO;
}

static int open_index(struct ss_store *st, char *err, size_t errlen)
{
    uint64_t map = st->set.index_map_bytes;
    if (!map) /* sparse: small items can take more index than device bytes */
        map = 2 * st->set.device_bytes + (64ull << 20);
    st->index = ss_index_open(st->index_dir, map, err, errlen);
    return st->index ? 0 : -EIO;
}

/* After an unclean stop, drop the entries whose records do not verify. */
static int repair_if_unclean(struct ss_store_private *p, char *err, size_t errlen)
{
    struct ss_store *st = &p->st;
    uint32_t clean = 1;
    if (ss_index_meta_get(st->index, "clean", &clean, sizeof(clean)) != 0 || clean)
        return 0;
    struct ss_store_thread t;
    long dropped = ss_store_thread_init(&t, st, &p->open_ctr);
    if (!dropped)
        dropped = ss_repair_index(&t);
    ss_store_thread_fini(&t);
    if (dropped < 0) {
        snprintf(err, errlen, "cannot repair the index in %s after an unclean stop: %s",
                 st->index_dir, strerror((int)-dropped));
        return (int)dropped;
    }
    return 0;
}

static void commit_hook(struct ss_store *st)
{
    ss_pend_commit_now(st, NULL);
}

/* What the segment writer may ask of the layers above the log. */
static const struct ss_log_hooks log_hooks = {
    .copy_forward = ss_copy_forward_run,
    .commit = commit_hook,
};

void ss_short_lock_init(pthread_mutex_t *m)
{
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ADAPTIVE_NP);
    pthread_mutex_init(m, &a);
    pthread_mutexattr_destroy(&a);
}

/* Everything the store holds, released (also a store half opened). */
static void store_free(struct ss_store_private *p)
{
    struct ss_store *st = &p->st;
    if (st->copier.store) /* its index reader goes before the index */
        ss_store_thread_fini(&st->copier);
    ss_index_close(st->index);
    if (st->dev)
        st->dev->ops->close(st->dev);
    ss_log_close(st);
    ss_filter_close(st);
    for (unsigned i = 0; i < SS_STRIPES; i++) {
        ss_hot_fini(st, &st->stripes[i]);
        ss_pend_fini(&st->stripes[i]);
        pthread_mutex_destroy(&st->stripes[i].lock);
    }
    if (p->lock_fd >= 0)
        close(p->lock_fd);
    free(st->index_dir);
    free(st->device_path);
    free(p);
}

struct ss_store *ss_store_open(const struct ss_store_settings *s, char *err, size_t errlen)
{
    struct ss_device *given = s->device; /* ours from here on, whatever happens */
    struct ss_store_private *p = NULL;
    if (check_settings(s, err, errlen) == 0) {
        p = calloc(1, sizeof(*p));
        if (!p)
            snprintf(err, errlen, "out of memory opening the store");
    }
    if (!p) {
        if (given)
            given->ops->close(given);
        return NULL;
    }
    struct ss_store *st = &p->st;
    p->lock_fd = -1;
    take_settings(st, s, given); /* the device is closed by the failure path from here on */
    for (unsigned i = 0; i < SS_STRIPES; i++) {
        ss_short_lock_init(&st->stripes[i].lock);
        if (ss_hot_init(&st->stripes[i])) {
            snprintf(err, errlen, "out of memory for the DRAM tier");
            goto fail;
        }
    }
    if (claim_index_dir(p, err, errlen) || open_device(st, err, errlen) ||
        open_index(st, err, errlen) || ss_log_open(st, &p->open_ctr, err, errlen))
        goto fail;
    if (load_marks(st)) {
        snprintf(err, errlen, "cannot write the index in %s", st->index_dir);
        goto fail;
    }
    if (repair_if_unclean(p, err, errlen))
        goto fail;
    int rc = ss_sweep_filter_build(st);
    if (rc) {
        snprintf(err, errlen, "cannot build the DRAM key filter from the index in %s: %s",
                 st->index_dir, strerror(-rc));
        goto fail;
    }
    if (ss_pend_start(st)) {
        snprintf(err, errlen, "cannot start the index committer thread");
        goto fail;
    }
    if (ss_store_thread_init(&st->copier, st, &st->log.writer_ctr)) {
        snprintf(err, errlen, "out of memory for the segment writer's buffers");
        goto fail;
    }
    st->log.hooks = &log_hooks;
    uint32_t clean = 0;
    if (ss_index_meta_put(st->index, "clean", &clean, sizeof(clean)) ||
        ss_index_sync(st->index) || ss_copy_forward_open(st, &p->open_ctr)) {
        snprintf(err, errlen, "cannot start the segment log on %s", st->device_path);
        goto fail;
    }
    if (ss_log_writer_start(st)) {
        snprintf(err, errlen, "cannot start the segment writer thread");
        goto fail;
    }
    st->last_sync_ms = ss_clock_mono_ms();
    return st;
fail:
    st->closed = 1;
    ss_log_writer_stop(st);
    ss_pend_stop(st);
    store_free(p);
    return NULL;
}

void ss_store_close(struct ss_store *st)
{
    if (!st || st->closed)
        return;
    struct ss_store_private *p = priv_of(st);
    st->closed = 1;
    ss_log_writer_stop(st); /* the sealed segment is written, the state persisted */
    /* The open segment before the last commit: a store with pinned records
     * commits an entry only once its record is on the device. */
    ss_log_flush(st, &p->open_ctr, 0);
    ss_pend_stop(st); /* every pending index update reaches the index */
    st->dev->ops->sync(st->dev);
    persist_u64(st, "seq_reserved", atomic_load(&st->next_seq));
    persist_u64(st, "flush_seq", atomic_load(&st->flush_seq));
    int64_t pending = atomic_load(&st->pending_flush_at);
    ss_index_meta_put(st->index, "pending_flush", &pending, sizeof(pending));
    uint32_t clean = 1;
    ss_index_meta_put(st->index, "clean", &clean, sizeof(clean));
    store_free(p);
}

int ss_store_thread_init(struct ss_store_thread *t, struct ss_store *st, struct ss_counters *ctr)
{
    memset(t, 0, sizeof(*t));
    t->store = st;
    t->ctr = ctr;
    t->locked_stripe = -1;
    int rc = ss_buf_reserve(&t->scratch, st->set.item_size_max + 512u);
    if (!rc && st->dev && st->dev->align > 1) /* before the first request, not during it */
        rc = ss_log_dio_reserve(t, st->set.item_size_max + 512u + 2u * st->dev->align);
    return rc;
}

void ss_store_thread_fini(struct ss_store_thread *t)
{
    ss_store_io_close(t);
    ss_index_reader_free(t->rtxn);
    t->rtxn = NULL;
    ss_buf_free(&t->scratch);
    free(t->dio_buf);
    t->dio_buf = NULL;
    t->dio_cap = 0;
}

struct ss_value_hold *ss_store_value_hold(struct ss_store_thread *t)
{
    if (!t->value_hot || t->value != ss_hot_value(t->value_hot))
        return NULL;
    return (struct ss_value_hold *)ss_hot_hold(t->value_hot);
}

void ss_store_value_put(void *hold)
{
    ss_hot_drop(hold);
}

const char *ss_store_value_bytes(const struct ss_value_hold *hold, size_t *len)
{
    const struct ss_hot_item *it = (const struct ss_hot_item *)hold;
    *len = it->e.nbytes;
    return ss_hot_value(it);
}

struct ss_value_hold *ss_store_value_dup(struct ss_value_hold *hold)
{
    return (struct ss_value_hold *)ss_hot_hold((struct ss_hot_item *)hold);
}

int ss_store_find(struct ss_store_thread *t, const void *key, size_t nkey,
                  struct ss_item *it, unsigned flags)
{
    struct ss_store *st = t->store;
    struct ss_stripe *s = &st->stripes[t->locked_stripe];
    int64_t now = ss_clock_unix_seconds();
    apply_due_flush(st, now);
    t->value_hot = NULL;

    struct ss_hot_item *hi = ss_hot_get(s, t->locked_hash, key, nkey);
    if (hi) {
        int dead = ss_entry_dead(st, &hi->e, now);
        if (dead) {
            ss_entry_drop(t, key, nkey);
            return dead;
        }
        entry_to_item(&hi->e, it, SS_TIER_DRAM);
        if (flags & SS_FIND_VALUE) {
            t->value = ss_hot_value(hi);
            t->value_len = hi->e.nbytes;
            t->value_hot = hi;
        }
        if (!(flags & SS_FIND_NO_BUMP)) {
            entry_bump(&hi->e, now);
            ss_hot_touch(s, hi, (uint32_t)now);
        }
        return 0;
    }

    struct ss_index_entry e;
    int rc = ss_entry_lookup(t, key, nkey, &e);
    if (rc)
        return rc == -ENOENT ? -ENOENT : -EIO;
    int dead = ss_entry_dead(st, &e, now);
    if (dead) {
        ss_entry_drop(t, key, nkey);
        return dead;
    }
    entry_to_item(&e, it, SS_TIER_DEVICE);
    if (!(flags & SS_FIND_VALUE))
        return 0;
    rc = ss_read_record(t, key, nkey, &e, flags);
    if (rc == -EINPROGRESS || rc == -EAGAIN)
        return rc; /* nothing done yet: the caller looks again, or hands it on */
    if (rc && rc != -EBADMSG && rc != -ESTALE && (e.bits & SS_ITEM_PINNED))
        return -EIO; /* the device failed, not the record: a pinned one stays */
    if (rc) {
        /* A record that fails verification is never served: it was torn or
         * never reached the device (-EBADMSG), or its segment was reclaimed
         * after the index lookup (-ESTALE: an eviction, not an error). */
        ss_entry_drop(t, key, nkey);
        if (rc == -ESTALE)
            return -ENOENT;
        if (rc == -EBADMSG) {
            /* Torn by a crash, or zeroed: the item is gone, a miss (as
             * extstore answers a bad checksum); an I/O error is the
             * device's failure, which the client is told (-EIO). */
            t->ctr->errors_checksum++;
            return -EBADMSG;
        }
        return -EIO;
    }
    int bumped = !(flags & SS_FIND_NO_BUMP) && entry_bump(&e, now);
    struct iovec v = {.iov_base = (void *)t->value, .iov_len = t->value_len};
    if (ss_hot_put(st, s, t->locked_hash, key, nkey, &e, &v, 1, t->ctr, &t->value_hot) == 1) {
        t->value = ss_hot_value(t->value_hot); /* the same bytes, in a buffer that can be held */
    } else if (bumped) {
        /* Not admitted to DRAM: keep the fetch mark in the index (one write
         * per item per minute at most). */
        ss_entry_put(t, key, nkey, &e);
    }
    return 0;
}

int ss_write_begin(struct ss_store_thread *t, const struct iovec *iov, int niov, size_t *n,
                   int64_t *now)
{
    *n = 0;
    for (int i = 0; i < niov; i++)
        *n += iov[i].iov_len;
    if (*n > t->store->set.item_size_max)
        return -E2BIG;
    *now = ss_clock_unix_seconds();
    apply_due_flush(t->store, *now); /* a write after the due time must survive it */
    ss_copies_stale(t);
    return 0;
}

int ss_store_write(struct ss_store_thread *t, const void *key, size_t nkey,
                   struct ss_item *it, const struct iovec *iov, int niov, unsigned flags)
{
    struct ss_store *st = t->store;
    size_t n;
    int64_t now;
    int rc = ss_write_begin(t, iov, niov, &n, &now);
    if (rc)
        return rc;
    bool pin = flags & SS_WRITE_PINNED;
    if (flags & SS_WRITE_DRAM_ONLY)
        return pin ? -EINVAL
                   : ss_write_dram_only(t, key, nkey, it, iov, niov, n, flags, now, NULL);
    /* The entry this write replaces, if pinned: its bytes are freed once
     * the write lands (and count as freed against the pinned limit). No
     * key is pinned while the store pins nothing, so a cache never looks. */
    struct ss_index_entry old;
    bool old_pinned = (pin || ss_pinned_any(st)) && ss_entry_get(t, key, nkey, &old) == 0 &&
                      (old.bits & SS_ITEM_PINNED);
    struct ss_index_entry e =
        ss_entry_for_write(st, it, n, flags, now, pin ? SS_ITEM_PINNED : 0);
    uint32_t crc = ss_record_crc(key, nkey, e.flags, e.nbytes, iov, niov);
    struct ss_append how = {.pinned = pin,
                            .freed = old_pinned ? ss_record_size(nkey, old.nbytes) : 0};
    rc = ss_log_append(t, key, nkey, &e, crc, iov, niov, &how);
    if (rc)
        return rc == -E2BIG || rc == -ENOSPC ? rc : (rc == -ESTALE ? -EAGAIN : -EIO);
    /* Waiting without the lock, the old record may have been copied
     * forward: its figures are where its entry now says. */
    if (how.relocked && old_pinned)
        old_pinned = ss_entry_get(t, key, nkey, &old) == 0 && (old.bits & SS_ITEM_PINNED);
    struct ss_stripe *s = &st->stripes[t->locked_stripe];
    rc = ss_entry_put(t, key, nkey, &e);
    if (rc) {
        ss_hot_remove(st, s, t->locked_hash, key, nkey);
        ss_pinned_release(st, &e, nkey);
        return rc == -ENOSPC ? -ENOSPC : -EIO;
    }
    if (old_pinned)
        ss_pinned_release(st, &old, nkey);
    if (ss_hot_put(st, s, t->locked_hash, key, nkey, &e, iov, niov, t->ctr, NULL) < 0) {
        t->ctr->errors_out_of_memory++;
        ss_hot_remove(st, s, t->locked_hash, key, nkey);
    }
    return ss_write_done(t, it, &e);
}

static void apply_meta(struct ss_index_entry *e, const struct ss_item *it)
{
    if (it->cas)
        e->cas = it->cas;
    e->exptime = it->exptime;
    e->flags = it->flags;
    e->last_access = it->last_access;
    const uint32_t own = SS_ITEM_PINNED | SS_ITEM_DRAM_ONLY; /* where this copy lives */
    e->bits = (it->bits & ~own) | (e->bits & own);
}

int ss_store_update_meta(struct ss_store_thread *t, const void *key, size_t nkey,
                         const struct ss_item *it)
{
    struct ss_store *st = t->store;
    ss_copies_stale(t);
    struct ss_hot_item *hi = ss_hot_get(&st->stripes[t->locked_stripe], t->locked_hash, key, nkey);
    if (hi && (hi->e.bits & SS_ITEM_DRAM_ONLY)) {
        apply_meta(&hi->e, it);
        return 0;
    }
    struct ss_index_entry e;
    int rc = ss_entry_lookup(t, key, nkey, &e);
    if (rc && !hi)
        return -ENOENT;
    if (!rc) {
        apply_meta(&e, it);
        rc = ss_entry_put(t, key, nkey, &e);
        if (rc) {
            ss_entry_drop(t, key, nkey);
            return rc;
        }
    }
    if (hi)
        apply_meta(&hi->e, it);
    return 0;
}

/* ss_store_remove, the key's DRAM item (hi, or NULL) already looked up. */
int ss_remove_found(struct ss_store_thread *t, const void *key, size_t nkey,
                    struct ss_hot_item *hi)
{
    struct ss_store *st = t->store;
    struct ss_stripe *s = &st->stripes[t->locked_stripe];
    struct ss_index_entry e;
    if (hi && (hi->e.bits & SS_ITEM_DRAM_ONLY)) {
        ss_copies_stale(t);
        ss_hot_remove(st, s, t->locked_hash, key, nkey);
        return 0;
    }
    int was_hot = hi != NULL;
    int indexed = ss_entry_lookup(t, key, nkey, &e) == 0;
    if (!was_hot && !indexed)
        return -ENOENT;
    ss_entry_drop(t, key, nkey);
    return 0;
}

int ss_store_remove(struct ss_store_thread *t, const void *key, size_t nkey)
{
    struct ss_stripe *s = &t->store->stripes[t->locked_stripe];
    return ss_remove_found(t, key, nkey, ss_hot_lookup(s, t->locked_hash, key, nkey));
}

void ss_store_forget(struct ss_store_thread *t, const void *key, size_t nkey)
{
    ss_entry_drop(t, key, nkey);
}

uint64_t ss_store_next_cas(struct ss_store *st)
{
    return atomic_fetch_add(&st->next_seq, 1);
}

int ss_store_flush_all(struct ss_store_thread *t, int64_t when)
{
    struct ss_store *st = t->store;
    if (when <= ss_clock_unix_seconds()) {
        atomic_store(&st->pending_flush_at, 0);
        flush_now(st);
    } else {
        atomic_store(&st->pending_flush_at, when);
        copies_flush_due(st);
    }
    int64_t pending = atomic_load(&st->pending_flush_at);
    ss_index_meta_put(st->index, "pending_flush", &pending, sizeof(pending));
    return 0;
}

int ss_store_sync(struct ss_store_thread *t)
{
    struct ss_store *st = t->store;
    if (t->locked_stripe >= 0)
        return -EDEADLK; /* the segment writer may need that lock meanwhile */
    int rc = ss_log_make_durable(st, t->ctr);
    bool failed = false;
    ss_pend_commit_now(st, &failed);
    if (!rc && failed)
        rc = -EIO;
    if (!rc)
        rc = st->dev->ops->sync(st->dev);
    if (!rc)
        rc = ss_index_sync(st->index);
    return rc ? -EIO : 0;
}

int ss_store_housekeep(struct ss_store_thread *t)
{
    struct ss_store *st = t->store;
    int64_t now = ss_clock_unix_seconds();
    apply_due_flush(st, now);
    int rc = ss_log_flush(st, t->ctr, st->set.flush_interval_ms);
    uint64_t next = atomic_load(&st->next_seq);
    if (atomic_load(&st->seq_reserved) - next < SEQ_LOW_WATER) {
        uint64_t reserve = next + SEQ_RESERVE;
        int prc = persist_u64(st, "seq_reserved", reserve);
        if (prc)
            rc = rc ? rc : prc;
        else
            atomic_store(&st->seq_reserved, reserve);
    }
    int frc = ss_sweep_filter_step(st);
    if (frc)
        rc = rc ? rc : frc;
    uint64_t flush_seq = atomic_load(&st->flush_seq);
    if (flush_seq > st->cleaned_flush_seq && ss_sweep_purge_flushed(st, flush_seq))
        st->cleaned_flush_seq = flush_seq;
    uint64_t ms = ss_clock_mono_ms();
    if (ms - st->last_sync_ms >= SYNC_INTERVAL_MS) {
        /* device first, so the index never describes data the disk lacks */
        st->dev->ops->sync(st->dev);
        ss_index_sync(st->index);
        st->last_sync_ms = ms;
    }
    return rc;
}

const struct ss_counters *ss_store_writer_counters(const struct ss_store *st)
{
    return &st->log.writer_ctr;
}

void ss_store_get_stats(struct ss_store *st, struct ss_store_stats *out)
{
    memset(out, 0, sizeof(*out));
    out->curr_items = ss_index_count(st->index);
    /* under the log lock: a grow may swap the generation table */
    pthread_mutex_lock(&st->log.lock);
    out->segment_bytes = st->log.segment_bytes;
    out->segments = st->log.nsegments;
    out->device_bytes = (uint64_t)st->log.nsegments * st->log.segment_bytes;
    for (uint32_t i = 0; i < st->log.nsegments; i++)
        if (st->log.gens[i])
            out->segments_used++;
    out->device_used_bytes = out->segments_used * st->log.segment_bytes;
    out->device_offset = st->log.base;
    out->grows = st->log.grows;
    pthread_mutex_unlock(&st->log.lock);
    out->hot_bytes_limit = st->hot_limit;
    for (unsigned i = 0; i < SS_STRIPES; i++) {
        out->hot_bytes_used += __atomic_load_n(&st->stripes[i].bytes, __ATOMIC_RELAXED);
        out->hot_items += __atomic_load_n(&st->stripes[i].count, __ATOMIC_RELAXED);
    }
    out->index_bytes = ss_index_bytes(st->index);
    out->item_size_max = st->set.item_size_max;
    ss_filter_stats(st, &out->filter_bytes, &out->filter_capacity, &out->filter_inserts);
    out->filter_rebuilds = st->filter_rebuilds;
    pthread_mutex_lock(&st->log.lock);
    out->pinned_bytes = st->log.pinned_bytes;
    out->pinned_items = atomic_load(&st->log.pinned_items);
    out->pinned_limit = ss_pinned_limit_locked(st);
    pthread_mutex_unlock(&st->log.lock);
    out->pinned_copied = st->log.writer_ctr.pinned_copied;
    out->pinned_copy_bytes = st->log.writer_ctr.pinned_copy_bytes;
    out->index_commits = atomic_load(&st->commits);
    out->index_committed_ops = atomic_load(&st->committed_ops);
    out->index_commit_boosts = atomic_load(&st->commit_boosts);
}

int ss_store_grow(struct ss_store *st, uint64_t new_bytes)
{
    return ss_log_resize(st, &priv_of(st)->open_ctr, new_bytes, 0);
}

int ss_store_shrink_check(struct ss_store *st, uint64_t new_bytes, char *err, size_t errlen)
{
    struct ss_log *log = &st->log;
    if (new_bytes <= SS_SUPER_BYTES)
        return 0; /* ss_store_shrink says -EINVAL */
    uint64_t n_new = (new_bytes - SS_SUPER_BYTES) / log->segment_bytes;
    pthread_mutex_lock(&log->lock);
    int rc = n_new >= 2 && n_new < log->nsegments
                 ? ss_pinned_shrink_check_locked(st, (uint32_t)n_new, err, errlen)
                 : 0;
    pthread_mutex_unlock(&log->lock);
    return rc;
}

int ss_store_shrink(struct ss_store *st, uint64_t new_bytes)
{
    /* Reclaim looks entries up in the index: the open segment first, so
     * that a store with pinned records commits them all. */
    ss_log_flush(st, &priv_of(st)->open_ctr, 0);
    ss_pend_commit_now(st, NULL);
    return ss_log_resize(st, &priv_of(st)->open_ctr, new_bytes, 1);
}

uint32_t ss_store_record_bytes(size_t nkey, size_t nbytes)
{
    return ss_record_size(nkey, nbytes);
}
