/*
 * pinned_util.c - helpers of the pinned-record scenarios (pinned_util.h).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pinned_util.h"

void t_fail(const char *file, int line, const char *cond, const char *fmt, ...)
{
    fprintf(stdout, "FAIL %s:%d: %s: ", file, line, cond);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stdout, fmt, ap);
    va_end(ap);
    fprintf(stdout, "\n");
    fflush(stdout);
    exit(1);
}

uint64_t t_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint32_t t_hash(uint32_t a, uint32_t b)
{
    uint64_t x = ((uint64_t)a << 32 | b) * 0x9e3779b97f4a7c15ull;
    x ^= x >> 29;
    x *= 0xbf58476d1ce4e5b9ull;
    return (uint32_t)(x >> 32);
}

uint64_t t_pool_bytes(uint32_t segments)
{
    return 4096u + (uint64_t)segments * T_SEGMENT_BYTES;
}

void t_open(struct t_store *s, const char *dir, uint32_t segments, uint64_t hot_bytes)
{
    char index_dir[600], device[600], err[512] = "";
    snprintf(s->dir, sizeof(s->dir), "%s", dir);
    snprintf(index_dir, sizeof(index_dir), "%s/index", dir);
    snprintf(device, sizeof(device), "%s/device", dir);
    struct ss_store_settings set = {
        .index_dir = index_dir,
        .device_path = device,
        .device_bytes = t_pool_bytes(segments),
        .segment_bytes = T_SEGMENT_BYTES,
        .hot_bytes = hot_bytes,
        .item_size_max = T_ITEM_MAX,
        .flush_interval_ms = 20,
        /* O_DIRECT: every flush a whole aligned block, and a reopened head
         * rewrites the block it goes on in (test_store_pinned.py sets it) */
        .direct_io = getenv("PINNED_DIRECT_IO") != NULL,
    };
    s->segments = segments;
    s->hot_bytes = hot_bytes;
    s->st = ss_store_open(&set, err, sizeof(err));
    CHECK(s->st != NULL, "ss_store_open: %s", err);
    memset(&s->ctr, 0, sizeof(s->ctr));
    CHECK(ss_store_thread_init(&s->t, s->st, &s->ctr) == 0, "thread init");
}

void t_close(struct t_store *s)
{
    ss_store_thread_fini(&s->t);
    ss_store_close(s->st);
    s->st = NULL;
}

size_t t_key(char *buf, char kind, uint32_t id)
{
    return (size_t)sprintf(buf, "%c%07u", kind, id);
}

uint32_t t_value_len(uint32_t id, uint32_t ver, uint32_t min, uint32_t max)
{
    return min + t_hash(id, ver) % (max - min + 1);
}

#define T_HEADER_LEN 19 /* "k0000000.00000000:" and a NUL we overwrite */

void t_value(char *buf, char kind, uint32_t id, uint32_t ver, uint32_t len)
{
    char head[32];
    snprintf(head, sizeof(head), "%c%07u.%08u:", kind, id, ver);
    uint32_t seed = t_hash(id * 131u + (uint32_t)kind, ver);
    for (uint32_t i = 0; i < len; i++)
        buf[i] = i < T_HEADER_LEN - 1 ? head[i] : (char)('a' + (seed + i * 7u) % 26u);
}

bool t_value_parse(const char *val, uint32_t len, char kind, uint32_t id, uint32_t *ver)
{
    if (len < T_HEADER_LEN - 1 || val[0] != kind)
        return false;
    char head[T_HEADER_LEN];
    memcpy(head, val, T_HEADER_LEN - 1);
    head[T_HEADER_LEN - 1] = 0;
    unsigned got_id, got_ver;
    if (sscanf(head + 1, "%7u.%8u:", &got_id, &got_ver) != 2 || got_id != id)
        return false;
    static __thread char want[T_VALUE_MAX];
    if (len > sizeof(want))
        return false;
    t_value(want, kind, id, got_ver, len);
    if (memcmp(want, val, len) != 0)
        return false;
    *ver = got_ver;
    return true;
}

int t_write(struct ss_store_thread *t, char kind, uint32_t id, uint32_t ver, uint32_t len,
            unsigned flags)
{
    char key[16], val[T_VALUE_MAX];
    size_t nkey = t_key(key, kind, id);
    t_value(val, kind, id, ver, len);
    struct iovec iov = {.iov_base = val, .iov_len = len};
    int rc = -EAGAIN;
    /* -EAGAIN: the write waited for a copy forward without its stripe lock
     * and the stripe changed; a caller redoes it (bounded here). */
    for (int tries = 0; tries < 1000 && rc == -EAGAIN; tries++) {
        struct ss_item it = {0};
        ss_store_lock(t, key, nkey);
        rc = ss_store_write(t, key, nkey, &it, &iov, 1, flags);
        ss_store_unlock(t);
    }
    return rc;
}

int t_read(struct ss_store_thread *t, char kind, uint32_t id, char *buf, uint32_t *len,
           uint32_t *bits)
{
    char key[16];
    size_t nkey = t_key(key, kind, id);
    struct ss_item it;
    ss_store_lock(t, key, nkey);
    int rc = ss_store_find(t, key, nkey, &it, SS_FIND_VALUE | SS_FIND_NO_BUMP);
    if (rc == 0) {
        *len = t->value_len;
        *bits = it.bits;
        memcpy(buf, t->value, t->value_len < T_VALUE_MAX ? t->value_len : T_VALUE_MAX);
    }
    ss_store_unlock(t);
    return rc;
}

void t_expect(struct ss_store_thread *t, char kind, uint32_t id, uint32_t ver, uint32_t len,
              bool pinned)
{
    char buf[T_VALUE_MAX];
    uint32_t got_len = 0, bits = 0, got_ver = 0;
    int rc = t_read(t, kind, id, buf, &got_len, &bits);
    CHECK(rc == 0, "%c%u: find returned %d (%s), want version %u", kind, id, rc,
          strerror(-rc), ver);
    CHECK(got_len == len, "%c%u: %u bytes, want %u", kind, id, got_len, len);
    CHECK(t_value_parse(buf, got_len, kind, id, &got_ver), "%c%u: not a whole value", kind, id);
    CHECK(got_ver == ver, "%c%u: version %u, want %u", kind, id, got_ver, ver);
    CHECK(!(bits & SS_ITEM_PINNED) == !pinned, "%c%u: bits %#x, pinned %d", kind, id, bits,
          pinned);
}

int t_remove(struct ss_store_thread *t, char kind, uint32_t id)
{
    char key[16];
    size_t nkey = t_key(key, kind, id);
    ss_store_lock(t, key, nkey);
    int rc = ss_store_remove(t, key, nkey);
    ss_store_unlock(t);
    return rc;
}

uint64_t t_record_bytes(char kind, uint32_t id, uint32_t len)
{
    char key[16];
    size_t nkey = t_key(key, kind, id);
    /* the store's own rule (ss_store_internal.h: ss_record_size): a 32-byte
     * header, the key and the value, rounded up to 8 */
    return (32u + nkey + len + 7u) & ~7ull;
}

void t_stats(struct t_store *s, struct ss_store_stats *out)
{
    ss_store_get_stats(s->st, out);
}

uint64_t t_counter(struct t_store *s, size_t offset)
{
    const struct ss_counters *w = ss_store_writer_counters(s->st);
    uint64_t a, b;
    memcpy(&a, (const char *)&s->ctr + offset, sizeof(a));
    memcpy(&b, (const char *)w + offset, sizeof(b));
    return a + b;
}

void t_verify(struct t_store *s)
{
    /* Right after a roll the segment writer is still deleting the entries
     * of the unpinned records it just evicted (delete_reclaimed): those fail
     * verification for a moment. So: sync, and look again a few times. */
    CHECK(ss_store_sync(&s->t) == 0, "ss_store_sync");
    uint64_t checked = 0;
    long bad = -1;
    for (int tries = 0; tries < 100 && bad != 0; tries++) {
        if (tries)
            usleep(20000);
        bad = ss_store_verify(&s->t, &checked);
    }
    CHECK(bad == 0, "ss_store_verify: %ld of %llu entries fail", bad,
          (unsigned long long)checked);
}

void t_churn(struct t_store *s, uint64_t bytes, uint32_t *next)
{
    for (uint64_t done = 0; done < bytes; done += 1024) {
        int rc = t_write(&s->t, 'u', (*next)++, 0, 1024, 0);
        CHECK(rc == 0, "unpinned write u%u: %d (%s)", *next - 1, rc, strerror(-rc));
        if (*next % 256 == 0)
            ss_store_housekeep(&s->t); /* as the control plane's tick would */
    }
}

void t_pin(struct t_store *s, struct t_pins *p, uint32_t id, uint32_t ver, uint32_t len)
{
    CHECK(id < T_MAX_PINS, "pinned key id %u", id);
    int rc = t_write(&s->t, 'p', id, ver, len, SS_WRITE_PINNED);
    CHECK(rc == 0, "pinned write p%u v%u (%u bytes): %d (%s)", id, ver, len, rc, strerror(-rc));
    p->live[id] = true;
    p->ver[id] = ver;
    p->len[id] = len;
    if (id >= p->n)
        p->n = id + 1;
}

uint64_t t_pins_bytes(const struct t_pins *p)
{
    uint64_t sum = 0;
    for (uint32_t i = 0; i < p->n; i++)
        if (p->live[i])
            sum += t_record_bytes('p', i, p->len[i]);
    return sum;
}

void t_pins_check(struct t_store *s, const struct t_pins *p)
{
    uint64_t items = 0;
    for (uint32_t i = 0; i < p->n; i++) {
        if (p->live[i]) {
            t_expect(&s->t, 'p', i, p->ver[i], p->len[i], true);
            items++;
        } else {
            char buf[T_VALUE_MAX];
            uint32_t len, bits;
            int rc = t_read(&s->t, 'p', i, buf, &len, &bits);
            /* a flushed or expired one is dropped by this very find */
            CHECK(rc == -ENOENT || rc == -ECANCELED || rc == -ETIME,
                  "p%u was removed but find returned %d", i, rc);
        }
    }
    struct ss_store_stats st;
    t_stats(s, &st);
    CHECK(st.pinned_items == items, "pinned_items %llu, want %llu",
          (unsigned long long)st.pinned_items, (unsigned long long)items);
    CHECK(st.pinned_bytes == t_pins_bytes(p), "pinned_bytes %llu, want %llu",
          (unsigned long long)st.pinned_bytes, (unsigned long long)t_pins_bytes(p));
}
