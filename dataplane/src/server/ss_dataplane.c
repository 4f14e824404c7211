/*
 * ss_dataplane.c - the data plane's lifecycle: settings, listeners, workers,
 * the store; stop and destroy.
 *
 * Listeners: every worker gets its own TCP and its own UDP socket, all bound
 * to the same address with SO_REUSEPORT, and the kernel spreads connections
 * and datagrams over them by flow hash. Compared with one shared listener
 * under EPOLLEXCLUSIVE this needs no cross-worker hand-off, keeps a UDP
 * client's datagrams on one worker (so one reply socket, in order), and
 * leaves no thundering herd. The cost: a worker that never runs strands the
 * connections hashed to its socket, so Python must run every worker.
 *
 * SO_REUSEPORT would also let a second copy of SmartSwitch (same user) join
 * our group silently and share the port, and the store, which is not
 * multi-process safe. So before binding the group we bind a probe socket
 * without SO_REUSEPORT: it fails if anyone holds the port, whatever their
 * options. Listeners are opened before the store for the same reason: a
 * second instance fails on the port and never touches the store's files.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/ss_clock.h"
#include "ss_device.h"
#include "ss_server_internal.h"

#define SS_DEFAULT_LISTEN "127.0.0.1"
#define SS_DEFAULT_VERSION "1.6.0"
#define SS_DEFAULT_BACKLOG 1024
#define SS_UDP_RCVBUF (4 << 20) /* best effort; capped by net.core.rmem_max */

static void ss_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void ss_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static char *dup_or(const char *s, const char *fallback)
{
    const char *v = s ? s : fallback;
    return v ? strdup(v) : NULL;
}

/* A numeric host, with or without [brackets] around an IPv6 address. */
static int parse_host(const char *host, int port, struct sockaddr_storage *ss, socklen_t *len)
{
    char buf[64];
    size_t n = strlen(host);

    if (n >= 2 && host[0] == '[' && host[n - 1] == ']' && n - 2 < sizeof(buf)) {
        memcpy(buf, host + 1, n - 2);
        buf[n - 2] = '\0';
        host = buf;
    }
    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in *sin = (struct sockaddr_in *)ss;
    if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)port);
        *len = sizeof(*sin);
        return 0;
    }
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)port);
        *len = sizeof(*sin6);
        return 0;
    }
    return -EINVAL;
}

static void set_port(struct sockaddr_storage *ss, int port)
{
    if (ss->ss_family == AF_INET)
        ((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
}

/* Which config keys a listener comes from, for the messages. */
struct listener_keys {
    const char *host; /* "memcached.listen" */
    const char *port; /* "memcached.tcp_port" */
};

/* Say what went wrong binding host:port and what the operator can do. */
static void bind_error(char *err, size_t errlen, const char *host, int port, int udp, int e,
                       const struct listener_keys *k)
{
    const char *proto = udp ? "udp" : "tcp";
    int v6 = strchr(host, ':') != NULL && host[0] != '[';
    char remedy[160];

    if (e == EADDRINUSE)
        snprintf(remedy, sizeof(remedy), "stop whatever holds the port or set %s", k->port);
    else if (e == EADDRNOTAVAIL)
        snprintf(remedy, sizeof(remedy), "the address is not configured on this host; set %s",
                 k->host);
    else if (e == EACCES)
        snprintf(remedy, sizeof(remedy), "ports below 1024 need privileges; set %s", k->port);
    else
        snprintf(remedy, sizeof(remedy), "check %s and %s", k->host, k->port);
    ss_err(err, errlen, "cannot listen on %s%s%s:%d/%s: %s; %s", v6 ? "[" : "", host,
           v6 ? "]" : "", port, proto, strerror(e), remedy);
}

/*
 * Bind one socket for every worker on host:port (0 = a free port, chosen
 * once and shared). Fills fds[0..n) and *bound. Returns 0 or -errno with err
 * filled and nothing left open.
 */
static int listen_group(struct ss_dataplane *dp, const char *host, int udp, int port, int *fds,
                        int *bound, char *err, size_t errlen)
{
    struct listener_keys keys = {"memcached.listen",
                                 udp ? "memcached.udp_port" : "memcached.tcp_port"};
    if (host != dp->s.listen_host)
        keys = (struct listener_keys){"objects.listen", "objects.port"};
    const struct listener_keys *k = &keys;
    int type = udp ? SOCK_DGRAM : SOCK_STREAM;
    int one = 1;
    struct sockaddr_storage addr;
    socklen_t alen;

    if (parse_host(host, port, &addr, &alen) < 0) {
        ss_err(err, errlen, "%s: '%s' is not a numeric IPv4 or IPv6 address", k->host, host);
        return -EINVAL;
    }

    /* The probe: no SO_REUSEPORT, so any holder of the port makes it fail. */
    int probe = socket(addr.ss_family, type | SOCK_CLOEXEC, 0);
    if (probe < 0) {
        int e = errno;
        bind_error(err, errlen, host, port, udp, e, k);
        return -e;
    }
    /* TCP: tolerate our own previous run's TIME_WAIT; UDP must not share. */
    if (!udp)
        (void)setsockopt(probe, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(probe, (struct sockaddr *)&addr, alen) < 0) {
        int e = errno;
        close(probe);
        bind_error(err, errlen, host, port, udp, e, k);
        return -e;
    }
    struct sockaddr_storage got;
    socklen_t glen = sizeof(got);
    if (getsockname(probe, (struct sockaddr *)&got, &glen) == 0)
        port = ntohs(got.ss_family == AF_INET ? ((struct sockaddr_in *)&got)->sin_port
                                              : ((struct sockaddr_in6 *)&got)->sin6_port);
    close(probe);
    set_port(&addr, port);

    int backlog = dp->s.tcp_backlog ? (int)dp->s.tcp_backlog : SS_DEFAULT_BACKLOG;
    for (int i = 0; i < dp->nworkers; i++) {
        int fd = socket(addr.ss_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        int e = 0;
        if (fd < 0) {
            e = errno;
        } else {
            if (!udp)
                (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
            if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
                bind(fd, (struct sockaddr *)&addr, alen) < 0 ||
                (!udp && listen(fd, backlog) < 0))
                e = errno;
        }
        if (e) {
            if (fd >= 0)
                close(fd);
            while (i-- > 0) {
                close(fds[i]);
                fds[i] = -1;
            }
            bind_error(err, errlen, host, port, udp, e, k);
            return -e;
        }
        if (udp) {
            int sz = SS_UDP_RCVBUF;
            (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
        }
        fds[i] = fd;
    }
    *bound = port;
    return 0;
}

static int epoll_add_tag(int epfd, int fd, uint64_t tag)
{
    struct epoll_event ev = { .events = EPOLLIN, .data.u64 = tag };
    return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

/* Give each worker its epoll set and wake-up eventfd. Returns 0 or -errno. */
static int workers_init(struct ss_dataplane *dp)
{
    for (int i = 0; i < dp->nworkers; i++) {
        struct ss_worker *w = &dp->workers[i];
        w->dp = dp;
        w->id = i;
        w->epfd = epoll_create1(EPOLL_CLOEXEC);
        w->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (w->epfd < 0 || w->wakefd < 0)
            return -errno;
        int rc = epoll_add_tag(w->epfd, w->wakefd, SS_EV_WAKE);
        if (!rc && dp->tcp_fds[i] >= 0)
            rc = epoll_add_tag(w->epfd, dp->tcp_fds[i], SS_EV_TCP);
        if (!rc && dp->udp_fds[i] >= 0)
            rc = epoll_add_tag(w->epfd, dp->udp_fds[i], SS_EV_UDP);
        if (!rc && dp->http_fds && dp->http_fds[i] >= 0)
            rc = epoll_add_tag(w->epfd, dp->http_fds[i], SS_EV_HTTP);
        if (rc)
            return rc;
    }
    return 0;
}

/* Everything create may have made, in reverse; safe on a partial dp. */
static void dataplane_free(struct ss_dataplane *dp)
{
    ss_balance_free(dp);
    for (int i = 0; dp->workers && i < dp->nworkers; i++) {
        struct ss_worker *w = &dp->workers[i];
        if (w->epfd >= 0)
            close(w->epfd);
        if (w->wakefd >= 0)
            close(w->wakefd);
    }
    for (int i = 0; i < dp->nworkers; i++) {
        if (dp->tcp_fds && dp->tcp_fds[i] >= 0)
            close(dp->tcp_fds[i]);
        if (dp->udp_fds && dp->udp_fds[i] >= 0)
            close(dp->udp_fds[i]);
        if (dp->http_fds && dp->http_fds[i] >= 0)
            close(dp->http_fds[i]);
    }
    ss_obj_close(dp->obj);
    free(dp->http_fds);
    if (dp->ctl_ready)
        ss_store_thread_fini(&dp->ctl_st);
    if (dp->store)
        ss_store_close(dp->store);
    ss_udp_budget_free(dp->udp_budget);
    ss_px_free(dp);
    pthread_mutex_destroy(&dp->ctl_lock);
    free(dp->workers);
    free(dp->tcp_fds);
    free(dp->udp_fds);
    free(dp->running);
    free(dp->own_listen_host);
    free(dp->own_version);
    free(dp->own_index_dir);
    free(dp->own_device_path);
    free(dp);
}

/*
 * Build the data plane: copy settings, bind listeners, open the store,
 * prepare workers (they start serving in ss_dataplane_run_worker). Returns
 * NULL with a message in err that names the setting at fault.
 */
/* A device handed over in the settings that never reached ss_store_open,
 * which would otherwise have taken it over (see ss_store_settings.device). */
static void drop_device(const struct ss_dataplane_settings *s)
{
    struct ss_device *dev = s->store.device;
    if (dev)
        dev->ops->close(dev);
}

/* The objects listener's descriptors, one per worker, none open yet. 0 or -ENOMEM. */
static int objects_alloc(struct ss_dataplane *dp, const struct ss_objects_settings *os)
{
    dp->http_port = -1;
    if (!os)
        return 0;
    dp->http_fds = malloc(sizeof(int) * (size_t)dp->nworkers);
    if (!dp->http_fds)
        return -ENOMEM;
    for (int i = 0; i < dp->nworkers; i++)
        dp->http_fds[i] = -1;
    return 0;
}

static struct ss_obj *objects_open(const struct ss_objects_settings *os, char *err,
                                   size_t errlen)
{
    char why[512];
    struct ss_obj *o = ss_obj_open(os, why, sizeof(why));
    if (!o)
        ss_err(err, errlen, "objects: %s", why);
    return o;
}

struct ss_dataplane *ss_dataplane_create(const struct ss_dataplane_settings *s, char *err,
                                         size_t errlen)
{
    ss_err(err, errlen, "%s", "");
    if (!s) {
        ss_err(err, errlen, "no settings given");
        return NULL;
    }
    if (s->workers < 1 || s->workers > 1024) {
        ss_err(err, errlen, "memcached.workers: %d is out of range (1..1024)", s->workers);
        drop_device(s);
        return NULL;
    }
    if (s->tcp_port < -1 || s->tcp_port > 65535 || s->udp_port < -1 || s->udp_port > 65535) {
        ss_err(err, errlen, "memcached.%s: %d is not a port (0..65535, or off)",
               s->tcp_port < -1 || s->tcp_port > 65535 ? "tcp_port" : "udp_port",
               s->tcp_port < -1 || s->tcp_port > 65535 ? s->tcp_port : s->udp_port);
        drop_device(s);
        return NULL;
    }

    struct ss_dataplane *dp = calloc(1, sizeof(*dp));
    if (!dp) {
        ss_err(err, errlen, "out of memory creating the data plane");
        drop_device(s);
        return NULL;
    }
    pthread_mutex_init(&dp->ctl_lock, NULL);
    dp->s = *s;
    dp->nworkers = s->workers;
    dp->tcp_port = dp->udp_port = -1;
    dp->own_listen_host = dup_or(s->listen_host, SS_DEFAULT_LISTEN);
    dp->own_version = dup_or(s->version, SS_DEFAULT_VERSION);
    dp->own_index_dir = dup_or(s->store.index_dir, NULL);
    dp->own_device_path = dup_or(s->store.device_path, NULL);
    dp->s.listen_host = dp->own_listen_host;
    dp->s.version = dp->own_version;
    dp->s.store.index_dir = dp->own_index_dir;
    dp->s.store.device_path = dp->own_device_path;
    dp->tcp_fds = malloc(sizeof(int) * (size_t)dp->nworkers);
    dp->udp_fds = malloc(sizeof(int) * (size_t)dp->nworkers);
    dp->running = calloc((size_t)dp->nworkers, sizeof(atomic_int));
    size_t wbytes = sizeof(struct ss_worker) * (size_t)dp->nworkers;
    dp->workers = aligned_alloc(64, (wbytes + 63) & ~(size_t)63);
    dp->udp_budget = ss_udp_budget_new(s->udp_reply_bytes_per_sec, s->udp_reply_burst_bytes);
    if (!dp->own_listen_host || !dp->own_version || (s->store.index_dir && !dp->own_index_dir) ||
        (s->store.device_path && !dp->own_device_path) || !dp->tcp_fds || !dp->udp_fds ||
        !dp->running || !dp->workers || !dp->udp_budget) {
        ss_err(err, errlen, "out of memory creating the data plane");
        dp->nworkers = 0; /* nothing per worker is open yet */
        dataplane_free(dp);
        drop_device(s);
        return NULL;
    }
    memset(dp->workers, 0, wbytes);
    for (int i = 0; i < dp->nworkers; i++) {
        dp->tcp_fds[i] = dp->udp_fds[i] = -1;
        dp->workers[i].epfd = dp->workers[i].wakefd = -1;
    }

    const struct ss_objects_settings *os = s->objects;
    if (objects_alloc(dp, os) < 0) {
        ss_err(err, errlen, "out of memory creating the data plane");
        dataplane_free(dp);
        drop_device(s);
        return NULL;
    }
    if ((s->tcp_port >= 0 &&
         listen_group(dp, dp->s.listen_host, 0, s->tcp_port, dp->tcp_fds, &dp->tcp_port, err,
                      errlen) < 0) ||
        (s->udp_port >= 0 &&
         listen_group(dp, dp->s.listen_host, 1, s->udp_port, dp->udp_fds, &dp->udp_port, err,
                      errlen) < 0) ||
        (os && listen_group(dp, os->listen_host ? os->listen_host : SS_DEFAULT_LISTEN, 0,
                            os->port, dp->http_fds, &dp->http_port, err, errlen) < 0)) {
        dataplane_free(dp);
        drop_device(s);
        return NULL;
    }

    dp->store = ss_store_open(&dp->s.store, err, errlen); /* owns the device now */
    dp->s.store.device = NULL;
    if (!dp->store) {
        if (err && errlen && !err[0])
            ss_err(err, errlen, "cannot open the store");
        goto fail;
    }
    int rc = ss_store_thread_init(&dp->ctl_st, dp->store, &dp->ctl_ctr);
    if (rc) {
        ss_err(err, errlen, "cannot attach the control thread to the store: %s",
               strerror(-rc));
        goto fail;
    }
    dp->ctl_ready = 1;
    if (os && !(dp->obj = objects_open(os, err, errlen)))
        goto fail;

    rc = workers_init(dp);
    if (!rc)
        rc = ss_balance_init(dp);
    if (rc) {
        ss_err(err, errlen, "cannot set up worker event loops: %s", strerror(-rc));
        goto fail;
    }
    rc = ss_px_init(dp);
    if (rc) {
        ss_err(err, errlen, "cannot set up proxy mode: %s", strerror(-rc));
        goto fail;
    }
    dp->started_at = ss_clock_unix_seconds();
    return dp;

fail:
    dataplane_free(dp);
    return NULL;
}

/*
 * Periodic store work (flush a partly filled segment, due flush_all, index
 * sync) on the control plane's store handle. Returns 0 or -errno.
 */
int ss_dataplane_housekeep(struct ss_dataplane *dp)
{
    if (!dp)
        return -EINVAL;
    pthread_mutex_lock(&dp->ctl_lock);
    int rc = ss_store_housekeep(&dp->ctl_st);
    if (dp->obj) {
        int orc = ss_obj_housekeep(dp->obj);
        rc = rc ? rc : orc;
    }
    pthread_mutex_unlock(&dp->ctl_lock);
    ss_px_housekeep(dp);
    return rc;
}

/*
 * Ask every worker to return. Safe from any thread, any number of times:
 * it only sets a flag and pokes each worker's eventfd.
 */
void ss_dataplane_stop(struct ss_dataplane *dp)
{
    if (!dp)
        return;
    atomic_store_explicit(&dp->stopping, 1, memory_order_release);
    for (int i = 0; i < dp->nworkers; i++) {
        uint64_t one = 1;
        ssize_t n = write(dp->workers[i].wakefd, &one, sizeof(one));
        (void)n; /* EAGAIN means the counter is already non-zero: awake */
    }
}

/*
 * Release everything. Call only after every ss_dataplane_run_worker() has
 * returned (each closes its own connections); closes the listeners and the
 * store.
 */
void ss_dataplane_destroy(struct ss_dataplane *dp)
{
    if (!dp)
        return;
    dataplane_free(dp);
}

/* The bound TCP (udp == 0) or UDP port, or -1 when that listener is off. */
int ss_dataplane_bound_port(struct ss_dataplane *dp, int udp)
{
    if (!dp)
        return -1;
    return udp ? dp->udp_port : dp->tcp_port;
}

/* Grow the memcached pool while serving (ss_store_grow). 0 or -errno. */
int ss_dataplane_grow_pool(struct ss_dataplane *dp, uint64_t new_bytes)
{
    if (!dp || !dp->store)
        return -EINVAL;
    pthread_mutex_lock(&dp->ctl_lock);
    int rc = ss_store_grow(dp->store, new_bytes);
    pthread_mutex_unlock(&dp->ctl_lock);
    return rc;
}

/*
 * Shrink the memcached pool (ss_store_shrink): -EBUSY while any worker
 * serves, since the store may only shrink with nobody else using it.
 */
int ss_dataplane_shrink_pool(struct ss_dataplane *dp, uint64_t new_bytes)
{
    if (!dp || !dp->store)
        return -EINVAL;
    for (int i = 0; i < dp->nworkers; i++)
        if (atomic_load(&dp->running[i]))
            return -EBUSY;
    pthread_mutex_lock(&dp->ctl_lock);
    int rc = ss_store_shrink(dp->store, new_bytes);
    pthread_mutex_unlock(&dp->ctl_lock);
    return rc;
}

/* ---- for the planes the server hosts (ss_server.h) ---- */

int ss_dataplane_nworkers(const struct ss_dataplane *dp)
{
    return dp->nworkers;
}

struct ss_worker *ss_dataplane_worker(struct ss_dataplane *dp, int i)
{
    return &dp->workers[i];
}

bool ss_dataplane_worker_running(struct ss_dataplane *dp, int i)
{
    return atomic_load(&dp->running[i]) != 0;
}

pthread_mutex_t *ss_dataplane_ctl_lock(struct ss_dataplane *dp)
{
    return &dp->ctl_lock;
}

void *ss_dataplane_px(const struct ss_dataplane *dp)
{
    return dp->px;
}

void ss_dataplane_set_px(struct ss_dataplane *dp, void *px)
{
    dp->px = px;
}

int ss_dataplane_objects_port(struct ss_dataplane *dp)
{
    return dp && dp->obj ? dp->http_port : -1;
}

int ss_dataplane_bucket_stats(struct ss_dataplane *dp, uint32_t i, struct ss_bucket_stats *out)
{
    return dp && dp->obj ? ss_obj_bucket_stats(dp->obj, i, out) : -EINVAL;
}

int ss_dataplane_objects_store_stats(struct ss_dataplane *dp, struct ss_store_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (!dp || !dp->obj)
        return -EINVAL;
    ss_obj_store_stats(dp->obj, out);
    return 0;
}

long ss_dataplane_objects_purge(struct ss_dataplane *dp, const char *bucket, const char *prefix,
                                size_t nprefix)
{
    if (!dp || !dp->obj)
        return -EINVAL;
    pthread_mutex_lock(&dp->ctl_lock); /* the objects' control handle is shared with housekeeping */
    long rc = ss_obj_purge(dp->obj, bucket, prefix, nprefix);
    pthread_mutex_unlock(&dp->ctl_lock);
    return rc;
}
