/*
 * ss_spdk_embedded.c - SPDK inside the appliance (storage.spdk.mode: embedded).
 *
 * Instead of reaching a separate spdk_tgt over NVMe/TCP, this process runs
 * SPDK's thread library, its subsystems and its JSON-RPC server itself:
 *
 * - A thread of ours, ss-spdk, owns SPDK's app thread and polls it: the
 *   subsystems are initialised there, the RPC server's poller accepts and
 *   serves requests there, and bdev modules send it their management
 *   messages. It sleeps a little when a poll found nothing to do, so an idle
 *   appliance does not burn a core on it.
 * - Every other thread that does I/O on a bdev gets an SPDK thread of its
 *   own, created at its first I/O, with an I/O channel per bdev; it polls
 *   that SPDK thread itself while it waits for its I/O, so I/O needs no
 *   lock and no hand-off between threads (SPDK's model).
 * - Buffers go through DMA-able memory (a per-thread bounce buffer), which
 *   any bdev accepts, local NVMe over PCIe included.
 *
 * SPDK is not linked: the entry points arrive in a table (ss_device.h)
 * filled by the control plane from SPDK's shared libraries.
 */
#define _GNU_SOURCE /* pthread_setname_np */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ss_device.h"

/* include/spdk/rpc.h's state bits (part of SPDK's RPC contract). */
#define RPC_STARTUP 0x1u
#define RPC_RUNTIME 0x2u
/* How long ss-spdk sleeps after a poll that found nothing to do. */
#define IDLE_SLEEP_US 200
/* Bdevs one process may have open at once (a pool each). */
#define MAX_BDEVS 16
/* How long a stop waits for SPDK's subsystems to finish. */
#define STOP_SECONDS 10
/* DMA bounce buffers are allocated with this alignment. */
#define DMA_ALIGN 4096u

static struct ss_spdk_embedded_ep g_em;

static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pthread_t thread;
    void *app;               /* the app SPDK thread, polled by ss-spdk */
    bool running;            /* ss-spdk is up and serving */
    bool started;            /* ss_spdk_embedded_start succeeded once */
    atomic_bool stop;
    int init_rc;
    bool init_done, fini_done;
    char rpc_socket[108];
    char err[512];
} g_rt = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

/* ---- the app thread ---- */

static int poll_idle_io_threads(void); /* the I/O threads nobody polls now (below) */

static void init_done_cb(int rc, void *ctx)
{
    (void)ctx;
    g_rt.init_rc = rc;
    g_rt.init_done = true;
}

static void fini_done_cb(void *ctx)
{
    (void)ctx;
    g_rt.fini_done = true;
}

/* framework_wait_init, which provisioning calls first: spdk_tgt's comes with
 * SPDK's app framework, which we do not run. Registered once the subsystems
 * are up, so it can answer at once. */
static void rpc_wait_init(void *request, const void *params)
{
    (void)params;
    g_em.jsonrpc_send_bool_response(request, true);
}

static void started(int rc)
{
    pthread_mutex_lock(&g_rt.lock);
    g_rt.init_rc = rc;
    g_rt.running = rc == 0;
    g_rt.init_done = true;
    pthread_cond_broadcast(&g_rt.cond);
    pthread_mutex_unlock(&g_rt.lock);
}

static void poll_until(bool *flag)
{
    while (!__atomic_load_n(flag, __ATOMIC_ACQUIRE))
        if (g_em.thread_poll(g_rt.app, 0, 0) == 0)
            usleep(IDLE_SLEEP_US / 4);
}

static void *rt_main(void *arg)
{
    (void)arg;
    pthread_setname_np(pthread_self(), "ss-spdk");
    g_rt.app = g_em.thread_create("smartswitch", NULL);
    if (!g_rt.app) {
        snprintf(g_rt.err, sizeof(g_rt.err), "spdk_thread_create failed for the app thread");
        started(-ENOMEM);
        return NULL;
    }
    g_em.set_thread(g_rt.app);
    g_rt.init_done = false;
    g_em.subsystem_init(init_done_cb, NULL);
    poll_until(&g_rt.init_done);
    if (g_rt.init_rc) {
        snprintf(g_rt.err, sizeof(g_rt.err), "SPDK's subsystems failed to start (%s); SPDK's "
                 "own messages on stderr say which (too little storage.spdk.mem_size is the "
                 "usual cause: the bdev layer's buffer pools need about 200 MiB)",
                 strerror(-g_rt.init_rc));
        started(g_rt.init_rc < 0 ? g_rt.init_rc : -EIO);
        return NULL;
    }
    uint32_t mask;
    if (g_em.rpc_get_method_state_mask("framework_wait_init", &mask) != 0)
        g_em.rpc_register_method("framework_wait_init", rpc_wait_init, RPC_STARTUP | RPC_RUNTIME);
    int rc = g_em.rpc_initialize(g_rt.rpc_socket, NULL);
    if (rc) {
        snprintf(g_rt.err, sizeof(g_rt.err), "SPDK's JSON-RPC server cannot listen on %s: %s "
                 "(another SPDK process, or a stale socket file?)", g_rt.rpc_socket,
                 strerror(rc < 0 ? -rc : EINVAL));
        g_rt.fini_done = false;
        g_em.subsystem_fini(fini_done_cb, NULL);
        poll_until(&g_rt.fini_done);
        started(rc < 0 ? rc : -EINVAL);
        return NULL;
    }
    g_em.rpc_set_state(RPC_RUNTIME);
    started(0);

    while (!atomic_load_explicit(&g_rt.stop, memory_order_relaxed)) {
        int busy = g_em.thread_poll(g_rt.app, 0, 0) > 0;
        busy += poll_idle_io_threads();
        if (!busy)
            usleep(IDLE_SLEEP_US);
    }

    g_em.rpc_finish();
    g_rt.fini_done = false;
    g_em.subsystem_fini(fini_done_cb, NULL);
    /* A bdev still open somewhere (a store not closed: the process is dying
     * anyway) would hold the bdev layer's fini forever: give up after a while. */
    time_t give_up = time(NULL) + STOP_SECONDS;
    while (!__atomic_load_n(&g_rt.fini_done, __ATOMIC_ACQUIRE) && time(NULL) < give_up)
        if (g_em.thread_poll(g_rt.app, 0, 0) == 0)
            usleep(IDLE_SLEEP_US / 4);
    if (!g_rt.fini_done) {
        fprintf(stderr, "smartswitch: embedded SPDK: its subsystems did not stop within "
                "%d s (a bdev still open); leaving them to the process exit\n", STOP_SECONDS);
        return NULL;
    }
    g_em.thread_exit(g_rt.app);
    while (!g_em.thread_is_exited(g_rt.app))
        g_em.thread_poll(g_rt.app, 0, 0);
    g_em.thread_destroy(g_rt.app);
    g_rt.app = NULL;
    return NULL;
}

static int ep_missing(const struct ss_spdk_embedded_ep *ep)
{
    const void *const fns[] = {
        (const void *)ep->thread_lib_init, (const void *)ep->thread_create,
        (const void *)ep->set_thread, (const void *)ep->thread_poll,
        (const void *)ep->thread_exit, (const void *)ep->thread_is_exited,
        (const void *)ep->thread_destroy, (const void *)ep->thread_send_msg,
        (const void *)ep->subsystem_init, (const void *)ep->subsystem_fini,
        (const void *)ep->rpc_initialize, (const void *)ep->rpc_finish,
        (const void *)ep->rpc_set_state, (const void *)ep->rpc_get_method_state_mask,
        (const void *)ep->rpc_register_method, (const void *)ep->jsonrpc_send_bool_response,
        (const void *)ep->bdev_open_ext, (const void *)ep->bdev_close,
        (const void *)ep->bdev_desc_get_bdev, (const void *)ep->bdev_get_block_size,
        (const void *)ep->bdev_get_num_blocks, (const void *)ep->bdev_get_io_channel,
        (const void *)ep->put_io_channel, (const void *)ep->bdev_read,
        (const void *)ep->bdev_write, (const void *)ep->bdev_flush,
        (const void *)ep->bdev_free_io, (const void *)ep->dma_zmalloc,
        (const void *)ep->dma_free,
    };
    for (size_t i = 0; i < sizeof(fns) / sizeof(fns[0]); i++)
        if (!fns[i])
            return (int)i;
    return -1;
}

int ss_spdk_embedded_start(const struct ss_spdk_embedded_ep *ep, const char *rpc_socket,
                           char *err, size_t errlen)
{
    int missing = ep ? ep_missing(ep) : 0;
    if (!ep || missing >= 0) {
        snprintf(err, errlen, "SPDK entry point #%d of struct ss_spdk_embedded_ep is NULL; "
                 "the SPDK libraries loaded are incomplete", missing);
        return -EINVAL;
    }
    if (!rpc_socket || !*rpc_socket || strlen(rpc_socket) >= sizeof(g_rt.rpc_socket)) {
        snprintf(err, errlen, "storage.spdk.rpc_socket must be a socket path of 1 to %zu bytes",
                 sizeof(g_rt.rpc_socket) - 1);
        return -EINVAL;
    }
    pthread_mutex_lock(&g_rt.lock);
    if (g_rt.started) {
        pthread_mutex_unlock(&g_rt.lock);
        snprintf(err, errlen, "SPDK is already running in this process");
        return -EALREADY;
    }
    g_em = *ep;
    int rc = g_em.thread_lib_init(NULL, 0);
    if (rc) {
        pthread_mutex_unlock(&g_rt.lock);
        snprintf(err, errlen, "spdk_thread_lib_init failed: %s", strerror(rc < 0 ? -rc : EINVAL));
        return rc < 0 ? rc : -EINVAL;
    }
    snprintf(g_rt.rpc_socket, sizeof(g_rt.rpc_socket), "%s", rpc_socket);
    g_rt.init_done = false;
    g_rt.err[0] = 0;
    atomic_store(&g_rt.stop, false);
    rc = pthread_create(&g_rt.thread, NULL, rt_main, NULL);
    if (rc) {
        pthread_mutex_unlock(&g_rt.lock);
        snprintf(err, errlen, "cannot start the ss-spdk thread: %s", strerror(rc));
        return -rc;
    }
    while (!g_rt.init_done)
        pthread_cond_wait(&g_rt.cond, &g_rt.lock);
    rc = g_rt.running ? 0 : g_rt.init_rc;
    g_rt.started = rc == 0;
    pthread_mutex_unlock(&g_rt.lock);
    if (rc) {
        pthread_join(g_rt.thread, NULL);
        snprintf(err, errlen, "%s", g_rt.err);
    }
    return rc;
}

void ss_spdk_embedded_stop(void)
{
    pthread_mutex_lock(&g_rt.lock);
    bool running = g_rt.running;
    g_rt.running = false;
    pthread_mutex_unlock(&g_rt.lock);
    if (!running)
        return;
    atomic_store(&g_rt.stop, true);
    pthread_join(g_rt.thread, NULL);
}

/* Run fn(ctx) on the app thread and wait for it (ss-spdk polls it). */
struct app_call {
    void (*fn)(void *ctx);
    void *ctx;
    bool done;
};

static void app_call_run(void *arg)
{
    struct app_call *c = arg;
    c->fn(c->ctx);
    __atomic_store_n(&c->done, true, __ATOMIC_RELEASE);
}

static int on_app_thread(void (*fn)(void *ctx), void *ctx)
{
    if (!g_rt.running)
        return -ENODEV;
    struct app_call c = {fn, ctx, false};
    int rc = g_em.thread_send_msg(g_rt.app, app_call_run, &c);
    if (rc)
        return rc;
    while (!__atomic_load_n(&c.done, __ATOMIC_ACQUIRE))
        usleep(50);
    return 0;
}

/* ---- per-thread I/O context ---- */

struct async_read;

/*
 * An SPDK thread must keep being polled even while its pthread does no I/O:
 * management work (an lvol resize, a channel's creation or teardown) sends
 * a message to every thread holding a channel and waits for all of them. So
 * ss-spdk also polls every I/O thread that nobody polls at the moment: each
 * io_ctx has a lock that whoever polls it holds (its own pthread while it
 * does I/O, or ss-spdk with a trylock when idle). Completions of
 * asynchronous reads are only queued where they complete (done_list) and
 * handed to the store by the owner's own poll, so the store's per-thread
 * state is touched by its own thread alone.
 */
struct io_ctx {
    pthread_mutex_t lock;    /* held by whoever polls `thread` */
    struct io_ctx *next;     /* every live io_ctx (g_ctxs) */
    struct async_read *done_list; /* completed asynchronous reads, newest first */
    void *thread;            /* this pthread's SPDK thread */
    void *ch[MAX_BDEVS];     /* its I/O channel per open bdev (by slot) */
    char *dma;               /* bounce buffer of synchronous I/O */
    size_t dma_cap;
    struct async_read *free_reads; /* asynchronous reads' own DMA buffers */
};

static void free_async_reads(struct io_ctx *x);

static pthread_mutex_t g_ctxs_lock = PTHREAD_MUTEX_INITIALIZER;
static struct io_ctx *g_ctxs;

/* ss-spdk, between polls of the app thread: poll the I/O threads idle now. */
static int poll_idle_io_threads(void)
{
    int busy = 0;
    pthread_mutex_lock(&g_ctxs_lock);
    for (struct io_ctx *x = g_ctxs; x; x = x->next) {
        if (pthread_mutex_trylock(&x->lock) != 0)
            continue; /* its owner polls it */
        busy += g_em.thread_poll(x->thread, 0, 0) > 0;
        pthread_mutex_unlock(&x->lock);
    }
    pthread_mutex_unlock(&g_ctxs_lock);
    return busy;
}

static pthread_key_t g_ctx_key;
static pthread_once_t g_ctx_once = PTHREAD_ONCE_INIT;

static void ctx_free(void *arg)
{
    struct io_ctx *x = arg;
    pthread_mutex_lock(&g_ctxs_lock);
    for (struct io_ctx **l = &g_ctxs; *l; l = &(*l)->next)
        if (*l == x) {
            *l = x->next;
            break;
        }
    pthread_mutex_unlock(&g_ctxs_lock);
    /* Thread exit: give the channels back on this thread's SPDK thread, let
     * it exit (polling it until the messages that takes are done). */
    pthread_mutex_lock(&x->lock);
    g_em.set_thread(x->thread);
    for (int i = 0; i < MAX_BDEVS; i++)
        if (x->ch[i])
            g_em.put_io_channel(x->ch[i]);
    g_em.thread_exit(x->thread);
    while (!g_em.thread_is_exited(x->thread))
        g_em.thread_poll(x->thread, 0, 0);
    g_em.thread_destroy(x->thread);
    pthread_mutex_unlock(&x->lock);
    pthread_mutex_destroy(&x->lock);
    if (x->dma)
        g_em.dma_free(x->dma);
    free_async_reads(x);
    free(x);
}

static void ctx_key_init(void)
{
    pthread_key_create(&g_ctx_key, ctx_free);
}

static struct io_ctx *thread_ctx(void)
{
    pthread_once(&g_ctx_once, ctx_key_init);
    struct io_ctx *x = pthread_getspecific(g_ctx_key);
    if (x)
        return x;
    x = calloc(1, sizeof(*x));
    if (!x)
        return NULL;
    char name[32];
    snprintf(name, sizeof(name), "ss-io-%lx", (unsigned long)pthread_self() & 0xffffff);
    x->thread = g_em.thread_create(name, NULL);
    if (!x->thread) {
        free(x);
        return NULL;
    }
    pthread_mutex_init(&x->lock, NULL);
    g_em.set_thread(x->thread);
    pthread_setspecific(g_ctx_key, x);
    pthread_mutex_lock(&g_ctxs_lock);
    x->next = g_ctxs;
    g_ctxs = x;
    pthread_mutex_unlock(&g_ctxs_lock);
    return x;
}

/* ---- the bdev device ---- */

struct bdev_dev {
    struct ss_device dev;
    void *desc;
    int slot;                /* index into struct io_ctx's channels */
    bool no_flush;           /* the bdev has no flush: sync is a no-op */
    char name[];             /* "bdev <name>" */
};

static pthread_mutex_t g_slots_lock = PTHREAD_MUTEX_INITIALIZER;
static bool g_slot_used[MAX_BDEVS];

struct pending {
    bool done, ok;
};

static void io_done(void *bdev_io, bool success, void *arg)
{
    struct pending *p = arg;
    p->ok = success;
    p->done = true;
    g_em.bdev_free_io(bdev_io);
}

enum bdev_op { OP_READ, OP_WRITE, OP_FLUSH };

static int bdev_io_locked(struct bdev_dev *d, struct io_ctx *x, enum bdev_op op, uint64_t off,
                          void *buf, size_t len);

static int bdev_io(struct bdev_dev *d, enum bdev_op op, uint64_t off, void *buf, size_t len)
{
    struct io_ctx *x = thread_ctx();
    if (!x)
        return -ENOMEM;
    pthread_mutex_lock(&x->lock);
    int rc = bdev_io_locked(d, x, op, off, buf, len);
    pthread_mutex_unlock(&x->lock);
    return rc;
}

static int bdev_io_locked(struct bdev_dev *d, struct io_ctx *x, enum bdev_op op, uint64_t off,
                          void *buf, size_t len)
{
    /* A misaligned read (the superblock's header) reads the enclosing blocks
     * and copies its part out; writes are whole blocks (ss_device.h). */
    uint64_t m = d->dev.block_size - 1, skip = 0;
    size_t want = len;
    if (op == OP_READ && ((off | (uint64_t)len) & m)) {
        skip = off & m;
        off -= skip;
        len = (size_t)((skip + len + m) & ~m);
    } else if (op == OP_WRITE && ((off | (uint64_t)len) & m)) {
        return -EINVAL;
    }
    g_em.set_thread(x->thread);
    if (!x->ch[d->slot]) {
        x->ch[d->slot] = g_em.bdev_get_io_channel(d->desc);
        if (!x->ch[d->slot])
            return -ENOMEM;
    }
    if (op != OP_FLUSH && x->dma_cap < len) {
        size_t cap = (len + DMA_ALIGN - 1) & ~(size_t)(DMA_ALIGN - 1);
        char *b = g_em.dma_zmalloc(cap, DMA_ALIGN, NULL);
        if (!b)
            return -ENOMEM;
        if (x->dma)
            g_em.dma_free(x->dma);
        x->dma = b;
        x->dma_cap = cap;
    }
    if (op == OP_WRITE)
        memcpy(x->dma, buf, len);
    struct pending p = {false, false};
    void *ch = x->ch[d->slot];
    for (;;) {
        int rc = op == OP_READ    ? g_em.bdev_read(d->desc, ch, x->dma, off, len, io_done, &p)
                 : op == OP_WRITE ? g_em.bdev_write(d->desc, ch, x->dma, off, len, io_done, &p)
                                  : g_em.bdev_flush(d->desc, ch, off, len, io_done, &p);
        if (rc == 0)
            break;
        if (rc == -ENOTSUP && op == OP_FLUSH) {
            /* A bdev without flush (an lvol: its blobstore writes through) has
             * nothing to make durable. */
            d->no_flush = true;
            return 0;
        }
        if (rc != -ENOMEM) {
            fprintf(stderr, "smartswitch: %s: %s of %zu bytes at %llu refused: %s\n", d->name,
                    op == OP_READ ? "read" : op == OP_WRITE ? "write" : "flush", len,
                    (unsigned long long)off, strerror(-rc));
            return rc;
        }
        g_em.thread_poll(x->thread, 0, 0); /* out of bdev_io: let some complete */
    }
    /* The bdev layer fails a stuck I/O itself (bdev_nvme's timeouts); the
     * buffer is the device's until then, so this waits for the completion. */
    while (!p.done)
        g_em.thread_poll(x->thread, 0, 0);
    if (!p.ok)
        return -EIO;
    if (op == OP_READ)
        memcpy(buf, x->dma + skip, want);
    return 0;
}

static int bdev_read_op(struct ss_device *dev, uint64_t off, void *buf, size_t len)
{
    return bdev_io((struct bdev_dev *)dev, OP_READ, off, buf, len);
}

static int bdev_write_op(struct ss_device *dev, uint64_t off, const void *buf, size_t len)
{
    return bdev_io((struct bdev_dev *)dev, OP_WRITE, off, (void *)buf, len);
}

static int bdev_sync_op(struct ss_device *dev)
{
    struct bdev_dev *d = (struct bdev_dev *)dev;
    return d->no_flush ? 0 : bdev_io(d, OP_FLUSH, 0, NULL, d->dev.size);
}

/* ---- asynchronous reads (ss_read.c's polled devices) ---- */

struct async_read {
    struct async_read *next; /* this thread's free list */
    char *dma;
    size_t cap;
    void *buf;
    size_t len;
    void (*done)(void *arg, int res);
    void *arg;
    int res;
    struct io_ctx *x;
};

static void async_read_done(void *bdev_io, bool success, void *arg)
{
    struct async_read *r = arg;
    g_em.bdev_free_io(bdev_io);
    if (success)
        memcpy(r->buf, r->dma, r->len);
    r->res = success ? (int)r->len : -EIO;
    r->next = r->x->done_list; /* handed on by the owner's poll (bdev_poll_op) */
    r->x->done_list = r;
}

static int read_start_locked(struct bdev_dev *d, struct io_ctx *x, uint64_t off, void *buf,
                             size_t len, void (*done)(void *arg, int res), void *arg);

static int bdev_read_start_op(struct ss_device *dev, uint64_t off, void *buf, size_t len,
                              void (*done)(void *arg, int res), void *arg)
{
    struct bdev_dev *d = (struct bdev_dev *)dev;
    if ((off | (uint64_t)len) & (d->dev.block_size - 1))
        return -EAGAIN; /* the synchronous read handles a misaligned one */
    struct io_ctx *x = thread_ctx();
    if (!x)
        return -ENOMEM;
    pthread_mutex_lock(&x->lock);
    int rc = read_start_locked(d, x, off, buf, len, done, arg);
    pthread_mutex_unlock(&x->lock);
    return rc;
}

static int read_start_locked(struct bdev_dev *d, struct io_ctx *x, uint64_t off, void *buf,
                             size_t len, void (*done)(void *arg, int res), void *arg)
{
    g_em.set_thread(x->thread);
    if (!x->ch[d->slot] && !(x->ch[d->slot] = g_em.bdev_get_io_channel(d->desc)))
        return -ENOMEM;
    struct async_read *r = x->free_reads;
    if (r && r->cap < len) {
        g_em.dma_free(r->dma);
        r->dma = NULL;
        r->cap = 0;
    }
    if (r)
        x->free_reads = r->next;
    else if (!(r = calloc(1, sizeof(*r))))
        return -ENOMEM;
    if (!r->dma) {
        size_t cap = (len + DMA_ALIGN - 1) & ~(size_t)(DMA_ALIGN - 1);
        if (!(r->dma = g_em.dma_zmalloc(cap, DMA_ALIGN, NULL))) {
            free(r);
            return -ENOMEM;
        }
        r->cap = cap;
    }
    r->buf = buf;
    r->len = len;
    r->done = done;
    r->arg = arg;
    r->x = x;
    int rc = g_em.bdev_read(d->desc, x->ch[d->slot], r->dma, off, len, async_read_done, r);
    if (rc) {
        r->next = x->free_reads;
        x->free_reads = r;
        return rc == -ENOMEM ? -EAGAIN : rc;
    }
    return 0;
}

static unsigned bdev_poll_op(struct ss_device *dev)
{
    (void)dev;
    struct io_ctx *x = pthread_getspecific(g_ctx_key);
    if (!x)
        return 0;
    pthread_mutex_lock(&x->lock);
    g_em.set_thread(x->thread);
    g_em.thread_poll(x->thread, 0, 0);
    struct async_read *done = NULL;
    while (x->done_list) { /* newest first: reverse into completion order */
        struct async_read *r = x->done_list;
        x->done_list = r->next;
        r->next = done;
        done = r;
    }
    pthread_mutex_unlock(&x->lock);
    unsigned n = 0;
    while (done) {
        struct async_read *r = done;
        done = r->next;
        void (*cb)(void *arg, int res) = r->done;
        void *cb_arg = r->arg;
        int res = r->res;
        pthread_mutex_lock(&x->lock);
        r->next = x->free_reads;
        x->free_reads = r;
        pthread_mutex_unlock(&x->lock);
        cb(cb_arg, res); /* may start reads: the lock is not held */
        n++;
    }
    return n;
}

static void close_on_app(void *desc)
{
    g_em.bdev_close(desc);
}

static void bdev_close_op(struct ss_device *dev)
{
    struct bdev_dev *d = (struct bdev_dev *)dev;
    /* This thread's channel goes back first; other threads gave theirs back
     * when they exited (the workers and the segment writer have by now). */
    struct io_ctx *x = pthread_getspecific(g_ctx_key);
    if (x && x->ch[d->slot]) {
        pthread_mutex_lock(&x->lock);
        g_em.set_thread(x->thread);
        g_em.put_io_channel(x->ch[d->slot]);
        x->ch[d->slot] = NULL;
        for (int i = 0; i < 64; i++)
            g_em.thread_poll(x->thread, 0, 0);
        pthread_mutex_unlock(&x->lock);
    }
    on_app_thread(close_on_app, d->desc);
    pthread_mutex_lock(&g_slots_lock);
    g_slot_used[d->slot] = false;
    pthread_mutex_unlock(&g_slots_lock);
    free(d);
}

static void free_async_reads(struct io_ctx *x)
{
    while (x->free_reads) {
        struct async_read *r = x->free_reads;
        x->free_reads = r->next;
        g_em.dma_free(r->dma);
        free(r);
    }
}

static const struct ss_device_ops bdev_ops = {
    .read = bdev_read_op,
    .write = bdev_write_op,
    .sync = bdev_sync_op,
    .close = bdev_close_op,
    .read_start = bdev_read_start_op,
    .poll = bdev_poll_op,
};

/* The bdev went away under us (hot remove): I/O on it fails from now on. */
static void bdev_event(int type, void *bdev, void *ctx)
{
    (void)type;
    (void)bdev;
    (void)ctx;
}

struct open_req {
    const char *name;
    void *desc;
    int rc;
};

static void open_on_app(void *arg)
{
    struct open_req *r = arg;
    r->rc = g_em.bdev_open_ext(r->name, true, bdev_event, NULL, &r->desc);
}

struct ss_device *ss_device_spdk_bdev_open(const char *name, char *err, size_t errlen)
{
    if (!g_rt.running) {
        snprintf(err, errlen, "bdev %s: SPDK is not running in this process "
                 "(ss_spdk_embedded_start first)", name);
        return NULL;
    }
    pthread_mutex_lock(&g_slots_lock);
    int slot = -1;
    for (int i = 0; i < MAX_BDEVS && slot < 0; i++)
        if (!g_slot_used[i])
            slot = i;
    if (slot >= 0)
        g_slot_used[slot] = true;
    pthread_mutex_unlock(&g_slots_lock);
    if (slot < 0) {
        snprintf(err, errlen, "bdev %s: more than %d SPDK pools in one appliance", name,
                 MAX_BDEVS);
        return NULL;
    }
    struct open_req r = {name, NULL, 0};
    int rc = on_app_thread(open_on_app, &r);
    if (rc == 0)
        rc = r.rc;
    struct bdev_dev *d = rc ? NULL : calloc(1, sizeof(*d) + strlen(name) + 6);
    if (!d) {
        if (r.desc)
            on_app_thread(close_on_app, r.desc);
        pthread_mutex_lock(&g_slots_lock);
        g_slot_used[slot] = false;
        pthread_mutex_unlock(&g_slots_lock);
        snprintf(err, errlen, "bdev %s cannot be opened in the embedded SPDK: %s (is it "
                 "provisioned? `bdev_get_bdevs` on the appliance's rpc_socket lists them)",
                 name, strerror(rc ? (rc < 0 ? -rc : rc) : ENOMEM));
        return NULL;
    }
    const void *bdev = g_em.bdev_desc_get_bdev(r.desc);
    uint32_t block = g_em.bdev_get_block_size(bdev);
    d->desc = r.desc;
    d->slot = slot;
    sprintf(d->name, "bdev %s", name);
    d->dev.ops = &bdev_ops;
    d->dev.kind = "spdk";
    d->dev.size = (uint64_t)block * g_em.bdev_get_num_blocks(bdev);
    d->dev.block_size = block;
    d->dev.align = block;
    d->dev.name = d->name;
    return &d->dev;
}
