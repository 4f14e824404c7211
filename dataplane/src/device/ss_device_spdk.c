/*
 * ss_device_spdk.c - the device backend for an NVMe-oF namespace reached
 * through SPDK's user-space NVMe driver (the SPDK data path, issue 4).
 *
 * spdk_tgt owns the disk and the lvols and exports each pool's lvol as a
 * namespace over NVMe/TCP; this process is the initiator. SPDK is not linked:
 * its entry points arrive in a table (ss_device.h) filled by the control
 * plane from SPDK's shared libraries, so the data plane builds and runs
 * without SPDK.
 *
 * The store's device interface is synchronous, so "polled from the worker
 * loops" means: the calling thread submits on its own I/O queue pair and
 * polls that queue pair until its I/O completes. Each thread gets a queue
 * pair of its own because SPDK's queue pairs are not thread-safe and a lock
 * around one would serialise every worker's device reads. Over TCP the
 * payload is read from and written into the caller's buffer by the socket
 * layer, so values need no DMA memory and no bounce copy.
 */
#define _GNU_SOURCE /* pthread_{get,set}affinity_np */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "ss_device.h"
#include "ss_switch.h"

/*
 * struct spdk_env_opts as libspdk_env_dpdk.so.15 to .17 (SPDK 24.09 to
 * 26.05) lay it out: 128 bytes, fields appended only, opts_size telling the
 * library how much of it the caller knows. Only the fields we set are
 * named; the rest is kept as opaque bytes at the same offsets.
 */
struct spdk_env_opts_v15 {
    const char *name;       /* 0 */
    const char *core_mask;  /* 8 */
    const char *lcore_map;  /* 16 */
    int shm_id;             /* 24 */
    int mem_channel;        /* 28 */
    int main_core;          /* 32 */
    int mem_size;           /* 36: MiB */
    bool no_pci;            /* 40 */
    bool hugepage_single_segments;
    bool unlink_hugepage;
    bool no_huge;           /* 43 */
    uint8_t opaque_a[68];   /* 44: pci lists, hugedir, iova mode, base address, ... */
    size_t opts_size;       /* 112 */
    uint8_t opaque_b[8];    /* 120: enforce_numa and reserved bytes */
};
_Static_assert(sizeof(struct spdk_env_opts_v15) == 128, "spdk_env_opts is 128 bytes");
_Static_assert(offsetof(struct spdk_env_opts_v15, no_huge) == 43, "no_huge at 43");
_Static_assert(offsetof(struct spdk_env_opts_v15, opts_size) == 112, "opts_size at 112");

/* libspdk_env_dpdk SO versions whose spdk_env_opts is the layout above. */
static const uint32_t known_env_so[] = {15, 16, 17};

/*
 * struct spdk_nvme_transport_id is about 560 bytes in every SPDK release
 * we know; we never look inside it, so give SPDK a zeroed block that is
 * comfortably larger.
 */
#define TRID_BYTES 2048

/* NVMe completion queue entry: 16 bytes, status word in bytes 14-15 (NVMe
 * base spec, "Completion Queue Entry"): bit 0 phase, bits 1-8 status code,
 * bits 9-11 status code type. */
#define CPL_STATUS_OFFSET 14
#define NVME_SC_INVALID_OPCODE 0x01 /* generic status type (0) */

/* Requests one thread keeps in flight for one large I/O (a segment). */
#define QUEUE_DEPTH 32
/* Busy-poll this long before yielding between polls: a loopback NVMe/TCP
 * read completes in tens of microseconds, and the machine may be shared. */
#define SPIN_NS 50000ull
/* Period of the admin-queue poller (keep-alive, asynchronous events). */
#define ADMIN_POLL_MS 100

static struct ss_spdk_entry_points g_ep;
static atomic_int g_env_state; /* 0 = not started, 1 = starting, 2 = started */

struct spdk_qp {
    void *qpair;
    struct spdk_qp *next;    /* every queue pair of the device */
    int orphaned;            /* its thread has exited: another may adopt it */
};

struct ss_device_spdk {
    struct ss_device dev;
    void *ctrlr;
    void *ns;
    uint32_t sector;
    uint32_t max_xfer;       /* bytes per NVMe command */
    pthread_key_t key;       /* this thread's struct spdk_qp */
    pthread_mutex_t lock;    /* qps */
    struct spdk_qp *qps;
    atomic_int no_flush;     /* the controller has no Flush: writes are durable */
    atomic_llong last_msg_s; /* rate limit of error messages */
    pthread_t admin_thread;
    atomic_int admin_stop;
    int admin_started;
    char name[];             /* "nsid N of <trid>" */
};

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* An error on the I/O path, at most one line a second per device: the
 * store only sees -errno, so this is where the device gets named. */
static void spdk_complain(struct ss_device_spdk *d, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void spdk_complain(struct ss_device_spdk *d, const char *fmt, ...)
{
    long long now = (long long)(mono_ns() / 1000000000ull);
    long long last = atomic_load(&d->last_msg_s);
    if (last == now || !atomic_compare_exchange_strong(&d->last_msg_s, &last, now))
        return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fprintf(stderr, "smartswitch: spdk device %s: %s\n", d->name, msg);
}

/* ---- environment ---- */

static int ep_missing(const struct ss_spdk_entry_points *ep)
{
    const void *const fns[] = {
        (const void *)ep->env_opts_init, (const void *)ep->env_init,
        (const void *)ep->env_dpdk_post_init,
        (const void *)ep->transport_id_parse, (const void *)ep->connect,
        (const void *)ep->detach, (const void *)ep->ctrlr_process_admin_completions,
        (const void *)ep->ctrlr_get_ns, (const void *)ep->ns_is_active,
        (const void *)ep->ns_get_sector_size, (const void *)ep->ns_get_num_sectors,
        (const void *)ep->ns_get_max_io_xfer_size, (const void *)ep->ctrlr_alloc_io_qpair,
        (const void *)ep->ctrlr_free_io_qpair, (const void *)ep->ns_cmd_read,
        (const void *)ep->ns_cmd_write, (const void *)ep->ns_cmd_flush,
        (const void *)ep->qpair_process_completions,
    };
    for (size_t i = 0; i < sizeof(fns) / sizeof(fns[0]); i++)
        if (!fns[i])
            return (int)i;
    return -1;
}

int ss_spdk_env_start(const struct ss_spdk_entry_points *ep, const char *app_name,
                      uint32_t mem_mb, int no_huge, char *err, size_t errlen)
{
    if (!ep) {
        snprintf(err, errlen, "no SPDK entry points given");
        return -EINVAL;
    }
    int missing = ep_missing(ep);
    if (missing >= 0) {
        snprintf(err, errlen, "SPDK entry point #%d of struct ss_spdk_entry_points is NULL; "
                 "the SPDK libraries loaded are incomplete", missing);
        return -EINVAL;
    }
    int known = 0;
    for (size_t i = 0; i < sizeof(known_env_so) / sizeof(known_env_so[0]); i++)
        known |= ep->env_so_major == known_env_so[i];
    if (!known) {
        snprintf(err, errlen, "SPDK %s (libspdk_env_dpdk.so.%u) is a version SmartSwitch does "
                 "not know: its spdk_env_opts may be laid out differently; use SPDK 24.09 to "
                 "26.05 (libspdk_env_dpdk.so.15 to .17)",
                 ep->version ? ep->version : "(unknown version)", ep->env_so_major);
        return -ENOTSUP;
    }
    if (mem_mb < 64 || mem_mb > 1u << 20) {
        snprintf(err, errlen, "SPDK environment memory %u MiB is out of range (64..1048576)",
                 mem_mb);
        return -EINVAL;
    }
    int expect = 0;
    if (!atomic_compare_exchange_strong(&g_env_state, &expect, 1))
        return -EALREADY;

    if (ss_switch_eal_ready()) {
        /* Legacy memory (every segment registered at once) is what --no-huge
         * gives the EAL; with hugepages, SPDK follows the EAL's memory events. */
        int rc = ep->env_dpdk_post_init(no_huge != 0);
        if (rc) {
            atomic_store(&g_env_state, 0);
            snprintf(err, errlen, "spdk_env_dpdk_post_init on switch mode's EAL failed "
                     "(%s%s): %s; SPDK's own messages on stderr say why",
                     ep->version ? ep->version : "SPDK", no_huge ? ", no hugepages" : "",
                     strerror(rc < 0 ? -rc : EINVAL));
            return rc < 0 ? rc : -EINVAL;
        }
        g_ep = *ep;
        g_ep.version = NULL;
        atomic_store(&g_env_state, 2);
        return 0;
    }

    struct spdk_env_opts_v15 opts;
    memset(&opts, 0, sizeof(opts));
    opts.opts_size = sizeof(opts); /* read by env_opts_init */
    ep->env_opts_init(&opts);
    opts.opts_size = sizeof(opts);
    opts.name = app_name ? app_name : "smartswitch";
    opts.mem_size = (int)mem_mb;
    opts.no_huge = no_huge != 0;
    opts.no_pci = no_huge != 0; /* PCIe devices need hugepage (DMA) memory */

    cpu_set_t saved;
    int have_saved = pthread_getaffinity_np(pthread_self(), sizeof(saved), &saved) == 0;
    int rc = ep->env_init(&opts);
    if (have_saved)
        pthread_setaffinity_np(pthread_self(), sizeof(saved), &saved);
    if (rc) {
        atomic_store(&g_env_state, 0);
        snprintf(err, errlen, "spdk_env_init failed (%s, %u MiB%s): %s; SPDK's own messages "
                 "on stderr say why", ep->version ? ep->version : "SPDK", mem_mb,
                 no_huge ? ", no hugepages" : "", strerror(rc < 0 ? -rc : EINVAL));
        return rc < 0 ? rc : -EINVAL;
    }
    g_ep = *ep;
    g_ep.version = NULL; /* the caller's string may not outlive us */
    atomic_store(&g_env_state, 2);
    return 0;
}

/* ---- I/O ---- */

struct io_batch {
    int inflight;
    uint16_t status; /* first failed completion's status word (0 = none) */
};

static void io_done(void *arg, const void *cpl)
{
    struct io_batch *b = arg;
    uint16_t st;
    memcpy(&st, (const char *)cpl + CPL_STATUS_OFFSET, sizeof(st));
    if ((st >> 1) & 0x7ffu && !b->status)
        b->status = st;
    b->inflight--;
}

static void qp_orphan(void *arg)
{
    /* Thread exit: the queue pair stays with the device for another thread
     * (freed at close). The flag is read under the device lock. */
    struct spdk_qp *qp = arg;
    __atomic_store_n(&qp->orphaned, 1, __ATOMIC_RELEASE);
}

/* This thread's queue pair: its own, an orphaned one, or a new one. */
static struct spdk_qp *thread_qp(struct ss_device_spdk *d)
{
    struct spdk_qp *qp = pthread_getspecific(d->key);
    if (qp)
        return qp;
    pthread_mutex_lock(&d->lock);
    for (qp = d->qps; qp; qp = qp->next)
        if (__atomic_load_n(&qp->orphaned, __ATOMIC_ACQUIRE) && qp->qpair) {
            qp->orphaned = 0;
            break;
        }
    if (!qp) {
        void *qpair = g_ep.ctrlr_alloc_io_qpair(d->ctrlr, NULL, 0);
        qp = qpair ? calloc(1, sizeof(*qp)) : NULL;
        if (qp) {
            qp->qpair = qpair;
            qp->next = d->qps;
            d->qps = qp;
        } else if (qpair) {
            g_ep.ctrlr_free_io_qpair(qpair);
        }
    }
    pthread_mutex_unlock(&d->lock);
    if (!qp) {
        spdk_complain(d, "cannot create an I/O queue pair (is the target still up?)");
        return NULL;
    }
    pthread_setspecific(d->key, qp);
    return qp;
}

/*
 * The queue pair failed or timed out: free it, which completes what is still
 * in flight on it as aborted (so no late completion touches the caller's
 * buffer or io_batch), and let this thread's next I/O create a new one.
 */
static void thread_qp_drop(struct ss_device_spdk *d, struct spdk_qp *qp)
{
    pthread_mutex_lock(&d->lock);
    void *qpair = qp->qpair;
    qp->qpair = NULL;
    qp->orphaned = 1; /* an empty record: never adopted, freed at close */
    pthread_mutex_unlock(&d->lock);
    pthread_setspecific(d->key, NULL);
    if (qpair)
        g_ep.ctrlr_free_io_qpair(qpair);
}

enum spdk_op { OP_READ, OP_WRITE, OP_FLUSH };
static const char *const op_name[] = {"read", "write", "flush"};

/* Submit one command of an I/O. 0 or -errno from SPDK (-ENOMEM: queue full). */
static int submit(struct ss_device_spdk *d, void *qpair, enum spdk_op op, char *buf,
                  uint64_t lba, uint32_t nlb, struct io_batch *b)
{
    if (op == OP_FLUSH)
        return g_ep.ns_cmd_flush(d->ns, qpair, io_done, b);
    if (op == OP_READ)
        return g_ep.ns_cmd_read(d->ns, qpair, buf, lba, nlb, io_done, b, 0);
    return g_ep.ns_cmd_write(d->ns, qpair, buf, lba, nlb, io_done, b, 0);
}

/*
 * One synchronous I/O of len bytes at off (both whole sectors): split into
 * commands of at most max_xfer, QUEUE_DEPTH of them in flight, the queue
 * pair polled on this thread until all complete or the deadline passes.
 * Returns 0, -EIO (a command failed or the queue pair broke), -ETIMEDOUT.
 */
static int spdk_io(struct ss_device_spdk *d, enum spdk_op op, uint64_t off, char *buf,
                   size_t len)
{
    struct spdk_qp *qp = thread_qp(d);
    if (!qp)
        return -EIO;
    struct io_batch b = {0, 0};
    uint64_t lba = off / d->sector, end = (off + len) / d->sector;
    uint32_t per_cmd = d->max_xfer / d->sector;
    int todo = op == OP_FLUSH, rc = 0;
    uint64_t start = mono_ns(), deadline = start + SS_SPDK_IO_TIMEOUT_MS * 1000000ull;
    for (;;) {
        while (!rc && b.inflight < QUEUE_DEPTH && (lba < end || todo)) {
            uint32_t nlb = end - lba < per_cmd ? (uint32_t)(end - lba) : per_cmd;
            int s = submit(d, qp->qpair, op, buf, lba, nlb, &b);
            if (s == -ENOMEM)
                break; /* queue full: poll, then go on */
            if (s) {
                spdk_complain(d, "%s of %zu bytes at %llu: submit failed: %s", op_name[op],
                              len, (unsigned long long)off, strerror(-s));
                rc = -EIO;
                break;
            }
            b.inflight++;
            todo = 0;
            buf += (size_t)nlb * d->sector;
            lba += nlb;
        }
        if (!b.inflight && (rc || (lba >= end && !todo)))
            break;
        int32_t n = g_ep.qpair_process_completions(qp->qpair, 0);
        if (n < 0) {
            spdk_complain(d, "%s of %zu bytes at %llu: the I/O queue pair failed (%s); "
                          "is spdk_tgt still serving this namespace?", op_name[op], len,
                          (unsigned long long)off, strerror(-n));
            thread_qp_drop(d, qp);
            return -EIO;
        }
        if (n > 0)
            continue;
        uint64_t now = mono_ns();
        if (now > deadline) {
            spdk_complain(d, "%s of %zu bytes at %llu timed out after %u ms; I/O on it "
                          "is aborted", op_name[op], len, (unsigned long long)off,
                          SS_SPDK_IO_TIMEOUT_MS);
            thread_qp_drop(d, qp);
            return -ETIMEDOUT;
        }
        if (now - start > SPIN_NS)
            sched_yield();
    }
    if (rc)
        return rc;
    if (b.status) {
        unsigned sc = (b.status >> 1) & 0xffu, sct = (b.status >> 9) & 0x7u;
        if (op == OP_FLUSH && sct == 0 && sc == NVME_SC_INVALID_OPCODE) {
            /* No Flush command means no volatile write cache: a completed
             * write is already durable. */
            atomic_store(&d->no_flush, 1);
            return 0;
        }
        spdk_complain(d, "%s of %zu bytes at %llu failed: NVMe status type %u code 0x%02x",
                      op_name[op], len, (unsigned long long)off, sct, sc);
        return -EIO;
    }
    return 0;
}

static int spdk_in_range(struct ss_device_spdk *d, uint64_t off, size_t len)
{
    return off <= d->dev.size && len <= d->dev.size - off;
}

static int spdk_read(struct ss_device *dev, uint64_t off, void *buf, size_t len)
{
    struct ss_device_spdk *d = (struct ss_device_spdk *)dev;
    if (!spdk_in_range(d, off, len))
        return -EINVAL;
    if (!len)
        return 0;
    uint64_t m = d->sector - 1;
    if (!((off | (uint64_t)len) & m))
        return spdk_io(d, OP_READ, off, buf, len); /* straight into the caller's buffer */
    /* Misaligned (the superblock's header): the enclosing sectors, copied. */
    uint64_t from = off & ~m, to = (off + len + m) & ~m;
    char *tmp = malloc((size_t)(to - from));
    if (!tmp)
        return -ENOMEM;
    int rc = spdk_io(d, OP_READ, from, tmp, (size_t)(to - from));
    if (!rc)
        memcpy(buf, tmp + (off - from), len);
    free(tmp);
    return rc;
}

static int spdk_write(struct ss_device *dev, uint64_t off, const void *buf, size_t len)
{
    struct ss_device_spdk *d = (struct ss_device_spdk *)dev;
    if (!spdk_in_range(d, off, len) || ((off | (uint64_t)len) & (d->sector - 1)))
        return -EINVAL; /* see ss_device.h: no read-modify-write */
    if (!len)
        return 0;
    /* SPDK's write takes a non-const payload; it only reads it. */
    return spdk_io(d, OP_WRITE, off, (char *)(uintptr_t)buf, len);
}

static int spdk_sync(struct ss_device *dev)
{
    struct ss_device_spdk *d = (struct ss_device_spdk *)dev;
    if (atomic_load(&d->no_flush))
        return 0;
    return spdk_io(d, OP_FLUSH, 0, NULL, 0);
}

static void *admin_poller(void *arg)
{
    struct ss_device_spdk *d = arg;
    while (!atomic_load(&d->admin_stop)) {
        g_ep.ctrlr_process_admin_completions(d->ctrlr);
        struct timespec ts = {0, ADMIN_POLL_MS * 1000000L};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

static void spdk_close(struct ss_device *dev)
{
    struct ss_device_spdk *d = (struct ss_device_spdk *)dev;
    if (d->admin_started) {
        atomic_store(&d->admin_stop, 1);
        pthread_join(d->admin_thread, NULL);
    }
    pthread_key_delete(d->key); /* no destructor runs for it any more */
    struct spdk_qp *qp = d->qps;
    while (qp) {
        struct spdk_qp *next = qp->next;
        if (qp->qpair)
            g_ep.ctrlr_free_io_qpair(qp->qpair);
        free(qp);
        qp = next;
    }
    if (d->ctrlr)
        g_ep.detach(d->ctrlr);
    pthread_mutex_destroy(&d->lock);
    free(d);
}

static const struct ss_device_ops spdk_ops = {
    .read = spdk_read,
    .write = spdk_write,
    .sync = spdk_sync,
    .close = spdk_close,
};

/* Whether the transport-id string names TCP (the only transport whose
 * payloads may live in ordinary memory). */
static int trid_is_tcp(const char *trid)
{
    for (const char *p = trid; (p = strcasestr(p, "trtype")); p += 6) {
        if (p != trid && p[-1] != ' ' && p[-1] != '\t')
            continue;
        const char *v = p + 6;
        while (*v == ' ')
            v++;
        if (*v != ':' && *v != '=')
            continue;
        v++;
        while (*v == ' ')
            v++;
        return strncasecmp(v, "tcp", 3) == 0 && (v[3] == '\0' || v[3] == ' ' || v[3] == '\t');
    }
    return 0;
}

struct ss_device *ss_device_spdk_open(const char *trid, uint32_t nsid, char *err,
                                      size_t errlen)
{
    if (atomic_load(&g_env_state) != 2) {
        snprintf(err, errlen, "the SPDK environment is not started: call "
                 "ss_spdk_env_start (SpdkDataPath.start_env) first");
        return NULL;
    }
    if (!trid || !*trid || nsid == 0) {
        snprintf(err, errlen, "an SPDK namespace needs a transport id and an nsid >= 1");
        return NULL;
    }
    if (!trid_is_tcp(trid)) {
        snprintf(err, errlen, "SPDK transport id '%s': only trtype:TCP is supported (the "
                 "store's buffers are ordinary memory); export the lvol over NVMe/TCP", trid);
        return NULL;
    }
    size_t nlen = strlen(trid) + 32;
    struct ss_device_spdk *d = calloc(1, sizeof(*d) + nlen);
    void *t = calloc(1, TRID_BYTES);
    if (!d || !t) {
        free(d);
        free(t);
        snprintf(err, errlen, "out of memory opening SPDK namespace %u of %s", nsid, trid);
        return NULL;
    }
    snprintf(d->name, nlen, "nsid %u of %s", nsid, trid);
    pthread_mutex_init(&d->lock, NULL);
    if (pthread_key_create(&d->key, qp_orphan)) {
        snprintf(err, errlen, "no thread-local key left for SPDK device %s", d->name);
        pthread_mutex_destroy(&d->lock);
        free(d);
        free(t);
        return NULL;
    }
    d->dev.ops = &spdk_ops;
    d->dev.kind = "spdk";
    d->dev.priv = d;
    d->dev.name = d->name;
    int rc = g_ep.transport_id_parse(t, trid);
    if (rc) {
        snprintf(err, errlen, "SPDK cannot parse transport id '%s' (%s); expected e.g. "
                 "'trtype:TCP adrfam:IPv4 traddr:127.0.0.1 trsvcid:4420 subnqn:NQN'", trid,
                 strerror(rc < 0 ? -rc : EINVAL));
        goto fail;
    }
    d->ctrlr = g_ep.connect(t, NULL, 0);
    if (!d->ctrlr) {
        snprintf(err, errlen, "cannot connect to the NVMe-oF controller %s; check that "
                 "spdk_tgt listens there and the subsystem allows this host", trid);
        goto fail;
    }
    d->ns = g_ep.ctrlr_get_ns(d->ctrlr, nsid);
    if (!d->ns || !g_ep.ns_is_active(d->ns)) {
        snprintf(err, errlen, "SPDK device %s: no active namespace %u in that subsystem "
                 "(nvmf_subsystem_add_ns)", d->name, nsid);
        goto fail;
    }
    d->sector = g_ep.ns_get_sector_size(d->ns);
    d->max_xfer = g_ep.ns_get_max_io_xfer_size(d->ns);
    if (d->sector < 512 || d->sector > 4096 || (d->sector & (d->sector - 1))) {
        snprintf(err, errlen, "SPDK device %s has %u-byte sectors; the store needs 512 to "
                 "4096 (a power of two)", d->name, d->sector);
        goto fail;
    }
    if (d->max_xfer < d->sector)
        d->max_xfer = d->sector;
    d->max_xfer -= d->max_xfer % d->sector;
    d->dev.size = g_ep.ns_get_num_sectors(d->ns) * d->sector;
    d->dev.block_size = d->sector;
    d->dev.align = d->sector;
    if (pthread_create(&d->admin_thread, NULL, admin_poller, d)) {
        snprintf(err, errlen, "cannot start the admin-queue poller of SPDK device %s",
                 d->name);
        goto fail;
    }
    d->admin_started = 1;
    free(t);
    return &d->dev;
fail:
    free(t);
    spdk_close(&d->dev);
    return NULL;
}

/* ---- for the binding (any backend) ---- */

void ss_device_close(struct ss_device *dev)
{
    if (dev)
        dev->ops->close(dev);
}

uint64_t ss_device_size(struct ss_device *dev)
{
    return dev ? dev->size : 0;
}

uint32_t ss_device_block_size(struct ss_device *dev)
{
    return dev ? dev->block_size : 0;
}
