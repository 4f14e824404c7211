/*
 * pinned_crash.c - the pinned-record scenarios with more than one thread or
 * process: kill -9 in the middle of writes and copies forward, and readers
 * that must see every pinned key, whole, while the ring turns under them.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pinned_util.h"

void scenario_crash(const char *dir);
void scenario_reader(const char *dir);

#define CRASH_KEYS 420u
#define CRASH_CYCLES 10u
#define CRASH_ROUNDS 60u

/* The version key k gets in round r of crash cycle c, or 0 if the round
 * does not write it. Every key is written in the very first round. */
static uint32_t crash_version(uint32_t c, uint32_t r, uint32_t k)
{
    if ((c == 0 && r == 0) || t_hash(k, c * 1000u + r) % 4u == 0)
        return c * 1000u + r + 1u;
    return 0;
}

static uint32_t crash_len(uint32_t k, uint32_t ver)
{
    return t_value_len(k, ver, 100, 3000);
}

/*
 * The child: rounds of pinned overwrites and unpinned churn (so the ring
 * turns and copies forward run), each ended by ss_store_sync, the store's
 * durability point, after which the round is acknowledged on fd. Killed by
 * the parent somewhere in the middle.
 */
static void __attribute__((noreturn)) crash_child(const char *dir, uint32_t c, int fd)
{
    struct t_store s;
    t_open(&s, dir, T_SEGMENTS, 0);
    uint32_t next = c * 1000000u;
    for (uint32_t r = 0; r < CRASH_ROUNDS; r++) {
        for (uint32_t k = 0; k < CRASH_KEYS; k++) {
            uint32_t ver = crash_version(c, r, k);
            if (!ver)
                continue;
            int rc = t_write(&s.t, 'p', k, ver, crash_len(k, ver), SS_WRITE_PINNED);
            struct ss_store_stats st;
            t_stats(&s, &st);
            CHECK(rc == 0, "child: p%u v%u: %d (pinned %llu of %llu)", k, ver, rc,
                  (unsigned long long)st.pinned_bytes, (unsigned long long)st.pinned_limit);
        }
        t_churn(&s, 96u << 10, &next);
        CHECK(ss_store_sync(&s.t) == 0, "child: ss_store_sync");
        char line[32];
        int n = snprintf(line, sizeof(line), "ack %u\n", r);
        CHECK(write(fd, line, (size_t)n) == n, "child: ack");
    }
    _exit(0); /* the parent should have killed it long before */
}

/* Read acks from fd until round `until` is acknowledged (or the child
 * ends, or 60 s pass). Returns the last round acknowledged, -1 for none. */
static int read_acks(int fd, int last, int until, int timeout_ms)
{
    static char buf[4096];
    static size_t have;
    uint64_t deadline = t_now_ms() + (uint64_t)timeout_ms;
    while (last < until && t_now_ms() < deadline) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, 100) <= 0)
            continue;
        ssize_t n = read(fd, buf + have, sizeof(buf) - 1 - have);
        if (n <= 0)
            break; /* the child is gone */
        have += (size_t)n;
        buf[have] = 0;
        char *line = buf, *nl;
        while ((nl = strchr(line, '\n'))) {
            unsigned r;
            if (sscanf(line, "ack %u", &r) == 1 && (int)r > last)
                last = (int)r;
            line = nl + 1;
        }
        have = strlen(line);
        memmove(buf, line, have);
    }
    return last;
}

/* After cycle c's crash, with rounds up to `acked` acknowledged: every key
 * holds its acknowledged version or a later one written before the kill,
 * whole; the figures match what is there. ver[] is updated to it. */
static void crash_check(struct t_store *s, uint32_t c, int acked, uint32_t *ver)
{
    uint64_t bytes = 0;
    char buf[T_VALUE_MAX];
    for (uint32_t k = 0; k < CRASH_KEYS; k++) {
        uint32_t want = ver[k];
        for (int r = 0; r <= acked; r++)
            if (crash_version(c, (uint32_t)r, k))
                want = crash_version(c, (uint32_t)r, k);
        uint32_t len = 0, bits = 0, got = 0;
        int rc = t_read(&s->t, 'p', k, buf, &len, &bits);
        CHECK(rc == 0 || (rc == -ENOENT && want == 0), "cycle %u: p%u (acked v%u): find %d",
              c, k, want, rc);
        if (rc)
            continue;
        CHECK(t_value_parse(buf, len, 'p', k, &got), "cycle %u: p%u torn or foreign", c, k);
        CHECK(len == crash_len(k, got) && (bits & SS_ITEM_PINNED), "cycle %u: p%u v%u", c, k,
              got);
        bool later = false;
        for (uint32_t r = (uint32_t)(acked + 1); r < CRASH_ROUNDS && !later; r++)
            later = crash_version(c, r, k) == got;
        CHECK(got == want || later, "cycle %u: p%u holds v%u, acknowledged v%u", c, k, got, want);
        ver[k] = got;
        bytes += t_record_bytes('p', k, len);
    }
    struct ss_store_stats st;
    t_stats(s, &st);
    CHECK(st.pinned_items == CRASH_KEYS && st.pinned_bytes == bytes,
          "cycle %u: figures %llu items %llu bytes, the keys %u and %llu", c,
          (unsigned long long)st.pinned_items, (unsigned long long)st.pinned_bytes, CRASH_KEYS,
          (unsigned long long)bytes);
    t_verify(s);
}

void scenario_crash(const char *dir)
{
    static uint32_t ver[CRASH_KEYS];
    for (uint32_t c = 0; c < CRASH_CYCLES; c++) {
        int fds[2];
        CHECK(pipe(fds) == 0, "pipe");
        fflush(stdout);
        pid_t pid = fork();
        CHECK(pid >= 0, "fork");
        if (pid == 0) {
            close(fds[0]);
            crash_child(dir, c, fds[1]);
        }
        close(fds[1]);
        int target = 2 + (int)(t_hash(c, 7) % 6u);
        int acked = read_acks(fds[0], -1, target, 60000);
        CHECK(acked >= target, "cycle %u: only round %d acknowledged", c, acked);
        usleep(1000u * (t_hash(c, 11) % 40u)); /* into the next round's writes */
        kill(pid, SIGKILL);
        int status = 0;
        CHECK(waitpid(pid, &status, 0) == pid, "waitpid");
        CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
              "cycle %u: the child ended by itself (status %#x)", c, status);
        acked = read_acks(fds[0], acked, CRASH_ROUNDS, 200); /* acks sent before the kill */
        close(fds[0]);
        struct t_store s;
        t_open(&s, dir, T_SEGMENTS, 0);
        crash_check(&s, c, acked, ver);
        uint32_t next = 900000000u + c * 100000u;
        t_churn(&s, T_RING, &next); /* the reopened store takes writes */
        t_close(&s);
        printf("cycle %u: killed after round %d acknowledged\n", c, acked);
    }
    printf("ok crash cycles=%u keys=%u\n", CRASH_CYCLES, CRASH_KEYS);
}

/* ---- readers while the ring turns ---- */

#define READ_KEYS 200u
#define WRITE_KEYS 100u
#define WRITE_BASE 1000u

struct reader_run {
    struct t_store *s;
    const struct t_pins *fixed;
    atomic_bool stop;
    atomic_ulong lookups, failures;
    char first_failure[256];
    uint32_t wver[WRITE_KEYS], wlen[WRITE_KEYS]; /* the overwriter's, read after join */
};

static void note_failure(struct reader_run *run, const char *fmt, uint32_t id, int rc)
{
    if (atomic_fetch_add(&run->failures, 1) == 0)
        snprintf(run->first_failure, sizeof(run->first_failure), fmt, id, rc);
}

static void *reader_main(void *arg)
{
    struct reader_run *run = arg;
    struct ss_counters ctr = {0};
    struct ss_store_thread t;
    if (ss_store_thread_init(&t, run->s->st, &ctr))
        return NULL;
    static __thread char buf[T_VALUE_MAX];
    for (uint32_t i = 0; i < 50000000u && !atomic_load(&run->stop); i++) {
        uint32_t id = i % READ_KEYS, len, bits, ver;
        int rc = t_read(&t, 'p', id, buf, &len, &bits);
        if (rc || !t_value_parse(buf, len, 'p', id, &ver) || ver != 1 ||
            len != run->fixed->len[id])
            note_failure(run, "p%u: find %d or a wrong value", id, rc);
        uint32_t wid = WRITE_BASE + i % WRITE_KEYS;
        rc = t_read(&t, 'p', wid, buf, &len, &bits);
        if (rc == 0 && (!t_value_parse(buf, len, 'p', wid, &ver) || !(bits & SS_ITEM_PINNED)))
            note_failure(run, "p%u: torn or not pinned (%d)", wid, rc);
        else if (rc != 0)
            note_failure(run, "p%u: find %d while it is overwritten", wid, rc);
        atomic_fetch_add(&run->lookups, 2);
    }
    ss_store_thread_fini(&t);
    return NULL;
}

static void *overwriter_main(void *arg)
{
    struct reader_run *run = arg;
    struct ss_counters ctr = {0};
    struct ss_store_thread t;
    if (ss_store_thread_init(&t, run->s->st, &ctr))
        return NULL;
    for (uint32_t i = 0; i < 10000000u && !atomic_load(&run->stop); i++) {
        uint32_t k = i % WRITE_KEYS, ver = run->wver[k] + 1, len = t_value_len(k, ver, 100, 2000);
        int rc = t_write(&t, 'p', WRITE_BASE + k, ver, len, SS_WRITE_PINNED);
        if (rc) {
            note_failure(run, "overwrite p%u: %d", WRITE_BASE + k, rc);
            break;
        }
        run->wver[k] = ver;
        run->wlen[k] = len;
        if (i % 64 == 0)
            usleep(200); /* leave the core to the churn and the reader */
    }
    ss_store_thread_fini(&t);
    return NULL;
}

void scenario_reader(const char *dir)
{
    struct t_store s;
    static struct t_pins p;
    static struct reader_run run;
    t_open(&s, dir, T_SEGMENTS, 0);
    for (uint32_t i = 0; i < READ_KEYS; i++)
        t_pin(&s, &p, i, 1, t_value_len(i, 1, 100, 2000));
    for (uint32_t k = 0; k < WRITE_KEYS; k++) {
        run.wver[k] = 1;
        run.wlen[k] = t_value_len(k, 1, 100, 2000);
        t_pin(&s, &p, WRITE_BASE + k, 1, run.wlen[k]);
    }
    run.s = &s;
    run.fixed = &p;
    pthread_t reader, writer;
    CHECK(pthread_create(&reader, NULL, reader_main, &run) == 0, "reader thread");
    CHECK(pthread_create(&writer, NULL, overwriter_main, &run) == 0, "overwriter thread");
    uint32_t next = 0;
    uint64_t t0 = t_now_ms();
    /* At least 8 turns and 3 seconds of them, at most 60 turns or 2 minutes. */
    for (uint32_t turn = 0; turn < 60 && (turn < 8 || t_now_ms() - t0 < 3000) &&
                            t_now_ms() - t0 < 120000; turn++)
        t_churn(&s, T_RING, &next);
    atomic_store(&run.stop, true);
    pthread_join(reader, NULL);
    pthread_join(writer, NULL);
    CHECK(atomic_load(&run.failures) == 0, "%lu failures, first: %s",
          (unsigned long)atomic_load(&run.failures), run.first_failure);
    CHECK(atomic_load(&run.lookups) > 1000, "only %lu lookups",
          (unsigned long)atomic_load(&run.lookups));
    for (uint32_t k = 0; k < WRITE_KEYS; k++)
        p.ver[WRITE_BASE + k] = run.wver[k], p.len[WRITE_BASE + k] = run.wlen[k];
    t_pins_check(&s, &p);
    struct ss_store_stats st;
    t_stats(&s, &st);
    CHECK(st.pinned_copied > READ_KEYS, "copied forward %llu",
          (unsigned long long)st.pinned_copied);
    t_verify(&s);
    printf("ok reader lookups=%lu overwrites=%u copied=%llu\n",
           (unsigned long)atomic_load(&run.lookups), run.wver[0],
           (unsigned long long)st.pinned_copied);
    t_close(&s);
}
