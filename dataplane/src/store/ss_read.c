/*
 * ss_read.c - asynchronous reads of device records through io_uring, one ring
 * per worker thread (see "Asynchronous reads" in ss_store.h).
 *
 * A lookup with SS_FIND_ASYNC whose record is on the device takes a struct
 * ss_read from this thread's free list, prepares one read of the record's
 * aligned span into the read's own aligned buffer (so O_DIRECT devices need
 * no bounce) and returns; the worker submits all of its turn's reads with one
 * io_uring_submit. The completion only records the result: the record is
 * verified when the lookup runs again with ss_store_read_use, under the
 * key's lock, exactly as a synchronous read is. A read never blocks the
 * thread; when the ring is full or absent the lookup reads synchronously and
 * says so in device_reads_sync_fallback. A buffered file is first read with
 * RWF_NOWAIT: what the page cache holds is served at once, without the ring.
 */
#include <errno.h>
#include <limits.h>
#include <liburing.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "common/ss_clock.h"
#include "ss_store_internal.h"

#define READ_IN_FLIGHT INT_MIN
/* Read buffers are aligned to this at least (O_DIRECT wants the sector). */
#define READ_BUF_ALIGN 4096u
/* Free reads a thread keeps (with their buffers) for the next lookups. */
#define READ_CACHE_MAX 256u

struct ss_read {
    struct ss_read *next;        /* free list, or the completed list */
    struct ss_io *io;            /* polled devices: whose read it is */
    struct ss_read *use_next;    /* more completed reads in hand (ss_store_read_link) */
    struct ss_index_entry e;     /* the entry whose record is being read */
    uint8_t nkey;
    char key[SS_KEY_MAX_LENGTH];
    char *buf;
    size_t cap;
    uint64_t from;               /* device offset of buf[0] */
    uint32_t len;                /* bytes asked */
    uint32_t rec_off;            /* the record's place in buf */
    int res;                     /* bytes read, -errno, or READ_IN_FLIGHT */
    uint64_t started_ns;         /* for the latency histogram */
    ss_read_done_fn done;
    void *arg;
};

struct ss_io {
    /* A polled device (SPDK) reads through its own queues instead of the
     * ring: started with dev->ops->read_start, completed from
     * dev->ops->poll, which the thread calls each turn while reads are in
     * flight; its eventfd then only fills the worker's epoll slot. */
    struct ss_device *polled;
    struct ss_read *completed;   /* polled: done, not yet handed on */
    struct io_uring ring;
    int efd;                     /* completions make it readable */
    int fd;                      /* the device's descriptor */
    unsigned entries;
    unsigned queued;             /* prepared since the last submit */
    unsigned in_flight;          /* submitted or prepared, not reaped */
    struct ss_read *free;
    unsigned nfree;
};

static int io_open_polled(struct ss_store_thread *t, struct ss_device *dev, unsigned entries)
{
    struct ss_io *io = calloc(1, sizeof(*io));
    if (!io)
        return -ENOMEM;
    io->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (io->efd < 0) {
        int rc = -errno;
        free(io);
        return rc;
    }
    io->polled = dev;
    io->fd = -1;
    io->entries = entries;
    t->io = io;
    return io->efd;
}

int ss_store_io_open(struct ss_store_thread *t, unsigned entries)
{
    if (t->io)
        return t->io->efd;
    struct ss_device *dev = t->store->dev;
    if (dev->ops->read_start && dev->ops->poll)
        return io_open_polled(t, dev, entries);
    int fd = ss_device_file_fd(dev);
    if (fd < 0)
        return -EOPNOTSUPP; /* a device with neither a descriptor nor queues */
    struct ss_io *io = calloc(1, sizeof(*io));
    if (!io)
        return -ENOMEM;
    int rc = io_uring_queue_init(entries, &io->ring, 0);
    if (rc < 0) {
        free(io);
        return rc; /* the kernel refuses io_uring (seccomp, a sysctl, too old) */
    }
    io->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (io->efd < 0 || io_uring_register_eventfd(&io->ring, io->efd) < 0) {
        rc = io->efd < 0 ? -errno : -EIO;
        if (io->efd >= 0)
            close(io->efd);
        io_uring_queue_exit(&io->ring);
        free(io);
        return rc;
    }
    io->fd = fd;
    io->entries = entries;
    t->io = io;
    return io->efd;
}

static struct ss_read *read_get(struct ss_io *io, size_t need)
{
    struct ss_read *rd = io->free;
    if (rd) {
        io->free = rd->next;
        io->nfree--;
    } else {
        rd = calloc(1, sizeof(*rd));
        if (!rd)
            return NULL;
    }
    if (rd->cap < need) {
        size_t cap = (need + READ_BUF_ALIGN - 1) & ~(size_t)(READ_BUF_ALIGN - 1);
        char *b = aligned_alloc(READ_BUF_ALIGN, cap);
        if (!b) {
            rd->next = io->free;
            io->free = rd;
            io->nfree++;
            return NULL;
        }
        free(rd->buf);
        rd->buf = b;
        rd->cap = cap;
    }
    rd->next = rd->use_next = NULL;
    rd->done = NULL;
    rd->arg = NULL;
    return rd;
}

static void read_put(struct ss_io *io, struct ss_read *rd)
{
    if (io->nfree >= READ_CACHE_MAX || rd->cap > (1u << 20)) {
        free(rd->buf);
        free(rd);
        return;
    }
    rd->next = io->free;
    io->free = rd;
    io->nfree++;
}

/* The histograms `stats` shows (ss_counters.h): depth when a read starts,
 * and how long it took from start to reap. */
static void count_depth(struct ss_counters *ctr, unsigned in_flight)
{
    if (in_flight <= 1)
        ctr->device_read_depth_le_1++;
    else if (in_flight <= 8)
        ctr->device_read_depth_le_8++;
    else if (in_flight <= 32)
        ctr->device_read_depth_le_32++;
    else
        ctr->device_read_depth_gt_32++;
}

static void count_latency(struct ss_counters *ctr, uint64_t ns)
{
    uint64_t us = ns / 1000;
    if (us <= 50)
        ctr->device_read_us_le_50++;
    else if (us <= 200)
        ctr->device_read_us_le_200++;
    else if (us <= 1000)
        ctr->device_read_us_le_1000++;
    else if (us <= 5000)
        ctr->device_read_us_le_5000++;
    else
        ctr->device_read_us_gt_5000++;
}

static void polled_done(void *arg, int res)
{
    struct ss_read *rd = arg;
    rd->res = res;
    rd->next = rd->io->completed;
    rd->io->completed = rd;
}

static int read_start_polled(struct ss_store_thread *t, const void *key, size_t nkey,
                             const struct ss_index_entry *e, uint64_t from, uint32_t len,
                             uint32_t rec_off)
{
    struct ss_io *io = t->io;
    struct ss_read *rd = read_get(io, len);
    if (!rd)
        return -EAGAIN;
    rd->e = *e;
    rd->nkey = (uint8_t)nkey;
    memcpy(rd->key, key, nkey);
    rd->from = from;
    rd->len = len;
    rd->rec_off = rec_off;
    rd->res = READ_IN_FLIGHT;
    rd->io = io;
    rd->started_ns = ss_clock_mono_ns();
    if (io->polled->ops->read_start(io->polled, from, rd->buf, len, polled_done, rd) != 0) {
        read_put(io, rd);
        return -EAGAIN; /* the device's queue is full: read it now */
    }
    io->in_flight++;
    t->ctr->device_reads_in_flight++;
    count_depth(t->ctr, io->in_flight);
    t->started = rd;
    return 0;
}

/* Prepare the read of e's record; 0 (t->started), or -EAGAIN to read it now. */
static int read_start(struct ss_store_thread *t, const void *key, size_t nkey,
                      const struct ss_index_entry *e)
{
    struct ss_io *io = t->io;
    uint64_t from;
    uint32_t len, rec_off;
    if (ss_log_span(t->store, nkey, e, &from, &len, &rec_off) != 0)
        return -EAGAIN; /* in the open segment, or stale: the synchronous path says */
    if (io->in_flight >= io->entries)
        return -EAGAIN;
    if (io->polled)
        return read_start_polled(t, key, nkey, e, from, len, rec_off);
    struct io_uring_sqe *sqe = io_uring_get_sqe(&io->ring);
    if (!sqe)
        return -EAGAIN;
    struct ss_read *rd = read_get(io, len);
    if (!rd) {
        /* An SQE taken cannot be handed back: make it a no-op. */
        io_uring_prep_nop(sqe);
        io_uring_sqe_set_data(sqe, NULL);
        io->queued++;
        io->in_flight++;
        return -EAGAIN;
    }
    rd->e = *e;
    rd->nkey = (uint8_t)nkey;
    memcpy(rd->key, key, nkey);
    rd->from = from;
    rd->len = len;
    rd->rec_off = rec_off;
    rd->res = READ_IN_FLIGHT;
    io_uring_prep_read(sqe, io->fd, rd->buf, len, from);
    io_uring_sqe_set_data(sqe, rd);
    io->queued++;
    io->in_flight++;
    t->ctr->device_reads_in_flight++;
    count_depth(t->ctr, io->in_flight);
    rd->started_ns = ss_clock_mono_ns();
    t->started = rd;
    return 0;
}

/* Does rd hold the record of key that e points to? */
static bool read_matches(const struct ss_read *rd, const void *key, size_t nkey,
                         const struct ss_index_entry *e)
{
    return rd->nkey == nkey && memcmp(rd->key, key, nkey) == 0 &&
           rd->e.segment == e->segment && rd->e.offset == e->offset &&
           rd->e.seg_gen == e->seg_gen && rd->e.nbytes == e->nbytes;
}

int ss_read_record(struct ss_store_thread *t, const void *key, size_t nkey,
                   const struct ss_index_entry *e, unsigned flags)
{
    bool async = (flags & SS_FIND_ASYNC) != 0;
    struct ss_read *rd = t->use_read;
    while (rd && (rd->res == READ_IN_FLIGHT || !read_matches(rd, key, nkey, e)))
        rd = rd->use_next;
    if (rd) {
        if (rd->res < 0 || (uint32_t)rd->res < rd->len) {
            /* A failed or short read (a truncated or detached device). */
            t->ctr->errors_device++;
            return -EIO;
        }
        t->ctr->device_reads++;
        t->ctr->device_reads_async++;
        t->ctr->device_read_bytes += rd->len;
        return ss_log_verify(t, key, nkey, e, rd->buf + rd->rec_off);
    }
    bool nowait = (flags & SS_FIND_NO_WAIT) != 0;
    if ((async && t->io) || nowait) {
        /* From the page cache at once when it is there: cheaper than a trip
         * through the ring, and it cannot block. */
        int rc = ss_log_read_mode(t, key, nkey, e, true);
        if (rc != -EAGAIN)
            return rc;
        if (nowait)
            return -EAGAIN;
        if (read_start(t, key, nkey, e) == 0)
            return -EINPROGRESS;
    }
    if (async)
        t->ctr->device_reads_sync_fallback++;
    return ss_log_read(t, key, nkey, e);
}

void ss_store_read_on_done(struct ss_read *rd, ss_read_done_fn done, void *arg)
{
    rd->done = done;
    rd->arg = arg;
}

unsigned ss_store_io_submit(struct ss_store_thread *t)
{
    struct ss_io *io = t->io;
    if (!io || !io->queued || io->polled)
        return 0;
    int n = io_uring_submit(&io->ring);
    if (n > 0)
        io->queued -= (unsigned)n < io->queued ? (unsigned)n : io->queued;
    /* A refused submission (-EAGAIN, -EBUSY: the kernel is short of
     * resources, or completions must be reaped first) is retried next turn. */
    return io->queued;
}

/* Take one completion off the ring: its read with the result, or NULL (a no-op). */
static struct ss_read *take(struct ss_store_thread *t, struct io_uring_cqe *cqe)
{
    struct ss_io *io = t->io;
    struct ss_read *rd = io_uring_cqe_get_data(cqe);
    int res = cqe->res;
    io_uring_cqe_seen(&io->ring, cqe);
    io->in_flight--;
    if (rd) {
        t->ctr->device_reads_in_flight--;
        count_latency(t->ctr, ss_clock_mono_ns() - rd->started_ns);
        rd->res = res;
    }
    return rd;
}

/* Hand a completed read to whoever waits for it, or back to the free list. */
static void finish(struct ss_io *io, struct ss_read *rd)
{
    rd->next = NULL;
    if (rd->done)
        rd->done(rd->arg, rd);
    else
        read_put(io, rd); /* nobody waits for it */
}

/* A polled device's completions: poll it, then hand them on in order of
 * completion (a callback may start reads, which complete in a later poll). */
static unsigned reap_polled(struct ss_store_thread *t)
{
    struct ss_io *io = t->io;
    if (!io->in_flight)
        return 0;
    io->polled->ops->poll(io->polled);
    struct ss_read *done = NULL;
    while (io->completed) { /* the list is newest first: reverse it */
        struct ss_read *rd = io->completed;
        io->completed = rd->next;
        rd->next = done;
        done = rd;
    }
    unsigned n = 0;
    while (done) {
        struct ss_read *rd = done;
        done = rd->next;
        io->in_flight--;
        t->ctr->device_reads_in_flight--;
        count_latency(t->ctr, ss_clock_mono_ns() - rd->started_ns);
        finish(io, rd);
        n++;
    }
    return n;
}

/* Up to max completions: collect, then call back (a callback may start reads). */
static unsigned reap(struct ss_store_thread *t, unsigned max)
{
    struct ss_io *io = t->io;
    if (io->polled)
        return reap_polled(t);
    unsigned n = 0;
    struct ss_read *done = NULL, **tail = &done;
    struct io_uring_cqe *cqe;
    while (n < max && io_uring_peek_cqe(&io->ring, &cqe) == 0) {
        n++;
        struct ss_read *rd = take(t, cqe);
        if (rd) {
            *tail = rd;
            tail = &rd->next;
        }
    }
    while (done) {
        struct ss_read *rd = done;
        done = rd->next;
        finish(io, rd);
    }
    return n;
}

void ss_store_io_reap(struct ss_store_thread *t)
{
    struct ss_io *io = t->io;
    if (!io)
        return;
    uint64_t v;
    while (read(io->efd, &v, sizeof(v)) == (ssize_t)sizeof(v))
        ;
    reap(t, UINT_MAX);
}

unsigned ss_store_io_poll(struct ss_store_thread *t, unsigned max)
{
    return t->io ? reap(t, max) : 0;
}

unsigned ss_store_io_in_flight(const struct ss_store_thread *t)
{
    return t->io ? t->io->in_flight : 0;
}

bool ss_store_io_polled(const struct ss_store_thread *t)
{
    return t->io && t->io->polled;
}

void ss_store_read_link(struct ss_read *rd, struct ss_read *next)
{
    rd->use_next = next;
}

struct ss_read *ss_store_read_next(const struct ss_read *rd)
{
    return rd->use_next;
}

void ss_store_read_use(struct ss_store_thread *t, struct ss_read *rd)
{
    t->use_read = rd;
}

void ss_store_read_release(struct ss_store_thread *t, struct ss_read *rd)
{
    if (t->use_read == rd)
        t->use_read = NULL;
    if (t->started == rd)
        t->started = NULL;
    if (t->io)
        read_put(t->io, rd);
    else {
        free(rd->buf);
        free(rd);
    }
}

void ss_store_io_close(struct ss_store_thread *t)
{
    struct ss_io *io = t->io;
    if (!io)
        return;
    /* Buffers of reads in flight belong to the kernel until they complete. */
    ss_store_io_submit(t);
    while (io->polled && io->in_flight)
        reap_polled(t); /* the device's, likewise */
    while (io->in_flight) {
        struct io_uring_cqe *cqe;
        if (io_uring_wait_cqe(&io->ring, &cqe) < 0)
            break;
        struct ss_read *rd = take(t, cqe);
        if (rd)
            finish(io, rd); /* its owner lets go of it (the client is gone) */
    }
    while (io->free) {
        struct ss_read *rd = io->free;
        io->free = rd->next;
        free(rd->buf);
        free(rd);
    }
    if (!io->polled)
        io_uring_queue_exit(&io->ring);
    close(io->efd);
    free(io);
    t->io = NULL;
}
