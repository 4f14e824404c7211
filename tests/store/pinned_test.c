/*
 * pinned_test.c - scenarios for the store's pinned records (SS_WRITE_PINNED):
 * never evicted, copied forward when the ring comes round, counted, refused
 * past the limit, kept across restarts and crashes.
 *
 *     pinned_test SCENARIO DIR
 *
 * runs one scenario on a fresh store in DIR and prints "ok SCENARIO ..."
 * (exit 0) or "FAIL file:line: ..." (exit 1). tests/unit/test_store_pinned.py
 * builds it against the store's sources and runs each scenario as a case.
 * Every loop is bounded, and an alarm ends a scenario that hangs.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pinned_util.h"

void scenario_crash(const char *dir);  /* pinned_crash.c */
void scenario_reader(const char *dir); /* pinned_crash.c */
void scenario_dram_only(const char *dir); /* dram_only.c */
void scenario_fill_join(const char *dir); /* fill_join.c */
void scenario_lost_roll(const char *dir); /* lost_roll.c */
void scenario_overtaken_put(const char *dir); /* overtaken_put.c */
void scenario_flush_snapshot(const char *dir); /* flush_snapshot.c */

/* Pinned keys survive many turns of the ring while unpinned ones churn
 * through it and are evicted as before. */
static void scenario_wraps(const char *dir)
{
    struct t_store s;
    static struct t_pins p;
    t_open(&s, dir, T_SEGMENTS, 0);
    for (uint32_t i = 0; i < 150; i++)
        t_pin(&s, &p, i, 1, t_value_len(i, 1, 100, 2000));
    t_pins_check(&s, &p);
    uint32_t next = 0;
    for (uint32_t turn = 0; turn < 20; turn++) {
        t_churn(&s, T_RING, &next);
        for (uint32_t k = 0; k < 10; k++) {
            uint32_t i = (turn * 10 + k) % 150;
            t_expect(&s.t, 'p', i, 1, p.len[i], true);
        }
    }
    t_pins_check(&s, &p);
    char buf[T_VALUE_MAX];
    uint32_t len, bits;
    CHECK(t_read(&s.t, 'u', 0, buf, &len, &bits) == -ENOENT, "u0 outlived 20 turns");
    uint64_t evictions = T_COUNTER(&s, evictions);
    CHECK(evictions > next / 2, "only %llu evictions of %u unpinned writes",
          (unsigned long long)evictions, next);
    struct ss_store_stats st;
    t_stats(&s, &st);
    CHECK(st.pinned_copied >= 150u * 15, "copied forward %llu times",
          (unsigned long long)st.pinned_copied);
    CHECK(T_COUNTER(&s, pinned_copied) == st.pinned_copied, "counter and stats disagree");
    t_verify(&s);
    printf("ok wraps evictions=%llu pinned_copied=%llu pinned_copy_bytes=%llu\n",
           (unsigned long long)evictions, (unsigned long long)st.pinned_copied,
           (unsigned long long)st.pinned_copy_bytes);
    t_close(&s);
}

/* Overwrites, removals, expiry and flush_all free pinned bytes; meta
 * updates keep the pin; only the flag sets it. */
static void scenario_accounting(const char *dir)
{
    struct t_store s;
    static struct t_pins p;
    t_open(&s, dir, T_SEGMENTS, 64u << 10);
    for (uint32_t i = 0; i < 10; i++)
        t_pin(&s, &p, i, 1, 500 + i * 100);
    t_pins_check(&s, &p);
    t_pin(&s, &p, 0, 2, 3000); /* pinned over pinned: the old record is freed */
    t_pins_check(&s, &p);
    CHECK(t_write(&s.t, 'p', 1, 2, 700, 0) == 0, "unpinned overwrite");
    p.live[1] = false;
    t_expect(&s.t, 'p', 1, 2, 700, false);
    struct ss_store_stats st;
    t_stats(&s, &st);
    CHECK(st.pinned_bytes == t_pins_bytes(&p), "after an unpinned overwrite: %llu bytes",
          (unsigned long long)st.pinned_bytes);
    CHECK(t_remove(&s.t, 'p', 1) == 0, "remove p1");
    CHECK(t_remove(&s.t, 'p', 2) == 0, "remove p2");
    p.live[2] = false;
    char key[16];
    size_t nkey = t_key(key, 'p', 3);
    ss_store_lock(&s.t, key, nkey);
    ss_store_forget(&s.t, key, nkey);
    ss_store_unlock(&s.t);
    p.live[3] = false;
    t_pins_check(&s, &p);

    /* A meta update keeps the pin, whatever bits it passes. */
    nkey = t_key(key, 'p', 4);
    struct ss_item it;
    ss_store_lock(&s.t, key, nkey);
    CHECK(ss_store_find(&s.t, key, nkey, &it, 0) == 0, "find p4");
    it.bits = 0;
    it.flags = 77;
    CHECK(ss_store_update_meta(&s.t, key, nkey, &it) == 0, "update_meta p4");
    ss_store_unlock(&s.t);
    t_pins_check(&s, &p);
    /* KEEP_META with the pinned bit but not the flag: not pinned. */
    char val[64];
    t_value(val, 'p', 5, 2, 64);
    struct iovec iov = {.iov_base = val, .iov_len = 64};
    nkey = t_key(key, 'p', 5);
    struct ss_item kept = {.bits = SS_ITEM_PINNED};
    ss_store_lock(&s.t, key, nkey);
    CHECK(ss_store_write(&s.t, key, nkey, &kept, &iov, 1, SS_WRITE_KEEP_META) == 0, "write");
    ss_store_unlock(&s.t);
    p.live[5] = false;
    t_expect(&s.t, 'p', 5, 2, 64, false);
    CHECK(t_remove(&s.t, 'p', 5) == 0, "remove p5");
    t_pins_check(&s, &p);

    /* Expired and flushed pinned items are gone like any other. */
    t_value(val, 'p', 6, 3, 64);
    nkey = t_key(key, 'p', 6);
    struct ss_item expired = {.exptime = 1};
    ss_store_lock(&s.t, key, nkey);
    CHECK(ss_store_write(&s.t, key, nkey, &expired, &iov, 1, SS_WRITE_PINNED) == 0, "write");
    CHECK(ss_store_find(&s.t, key, nkey, &it, 0) == -ETIME, "expired pinned item found");
    ss_store_unlock(&s.t);
    p.live[6] = false;
    t_pins_check(&s, &p);
    CHECK(ss_store_flush_all(&s.t, 0) == 0, "flush_all");
    for (uint32_t i = 0; i < p.n; i++)
        p.live[i] = false;
    t_pins_check(&s, &p); /* the finds drop them */

    /* Freed bytes are room again: fill to near the limit twice over. */
    t_stats(&s, &st);
    uint32_t per = (uint32_t)((st.pinned_limit * 9 / 10) / t_record_bytes('p', 0, 3000));
    uint32_t next = 0;
    for (uint32_t pass = 0; pass < 2; pass++) {
        for (uint32_t i = 0; i < per; i++)
            t_pin(&s, &p, 100 + i, 10 + pass, 3000);
        t_churn(&s, T_RING, &next);
        t_pins_check(&s, &p);
        for (uint32_t i = 0; i < per && pass == 0; i++) {
            CHECK(t_remove(&s.t, 'p', 100 + i) == 0, "remove");
            p.live[100 + i] = false;
        }
    }
    t_verify(&s);
    t_stats(&s, &st);
    printf("ok accounting pinned_items=%llu pinned_bytes=%llu limit=%llu\n",
           (unsigned long long)st.pinned_items, (unsigned long long)st.pinned_bytes,
           (unsigned long long)st.pinned_limit);
    t_close(&s);
}

/* Pinned writes past the limit fail and change nothing; unpinned writes go
 * on (and terminate) with the ring full of pinned records; deletes make
 * room again. */
static void scenario_enospc(const char *dir)
{
    struct t_store s;
    static struct t_pins p;
    t_open(&s, dir, T_SEGMENTS, 0);
    struct ss_store_stats st;
    t_stats(&s, &st);
    uint64_t largest = (32u + SS_KEY_MAX_LENGTH + T_ITEM_MAX + 7u) & ~7ull;
    CHECK(st.pinned_limit == (T_SEGMENTS - 2) * (T_SEGMENT_BYTES - largest),
          "limit %llu", (unsigned long long)st.pinned_limit);
    uint64_t rec = t_record_bytes('p', 0, 2000);
    uint32_t filled = 0;
    int rc = 0;
    for (; filled < st.pinned_limit / rec + 10; filled++) {
        rc = t_write(&s.t, 'p', filled, 1, 2000, SS_WRITE_PINNED);
        if (rc)
            break;
        p.live[filled] = true, p.ver[filled] = 1, p.len[filled] = 2000, p.n = filled + 1;
    }
    CHECK(rc == -ENOSPC, "filling ended with %d after %u writes", rc, filled);
    CHECK(filled == st.pinned_limit / rec, "%u writes fit, want %llu", filled,
          (unsigned long long)(st.pinned_limit / rec));
    CHECK(T_COUNTER(&s, pinned_refused) >= 1, "pinned_refused not counted");
    t_pins_check(&s, &p); /* the refused key is missing, the figures unchanged */
    rc = t_write(&s.t, 'p', 0, 2, 4000, SS_WRITE_PINNED);
    CHECK(rc == -ENOSPC, "a larger overwrite past the limit returned %d", rc);
    t_expect(&s.t, 'p', 0, 1, 2000, true);
    t_pin(&s, &p, 0, 3, 1000); /* a smaller one fits */

    uint64_t t0 = t_now_ms();
    uint32_t next = 0;
    t_churn(&s, 3 * T_RING, &next);
    uint64_t took = t_now_ms() - t0;
    CHECK(took < 90000, "3 turns of unpinned writes at the limit took %llu ms",
          (unsigned long long)took);
    t_pins_check(&s, &p);
    for (uint32_t i = 0; i < filled; i += 2) {
        CHECK(t_remove(&s.t, 'p', i) == 0, "remove p%u", i);
        p.live[i] = false;
    }
    for (uint32_t i = 0; i < filled; i += 2)
        t_pin(&s, &p, filled + i, 1, 2000);
    t_churn(&s, T_RING, &next);
    t_pins_check(&s, &p);
    t_verify(&s);
    t_stats(&s, &st);
    printf("ok enospc filled=%u pinned_bytes=%llu limit=%llu churn_ms=%llu copied=%llu\n",
           filled, (unsigned long long)st.pinned_bytes, (unsigned long long)st.pinned_limit,
           (unsigned long long)took, (unsigned long long)st.pinned_copied);
    t_close(&s);
}

/* A clean close and reopen keeps every pinned key and the same figures, and
 * the reopened store goes on copying forward. */
static void scenario_reopen(const char *dir)
{
    struct t_store s;
    static struct t_pins p;
    uint32_t next = 0;
    t_open(&s, dir, T_SEGMENTS, 256u << 10);
    for (uint32_t i = 0; i < 200; i++)
        t_pin(&s, &p, i, 1, t_value_len(i, 1, 100, 3000));
    for (uint32_t cycle = 0; cycle < 4; cycle++) {
        t_churn(&s, T_RING + T_RING / 3 * cycle, &next);
        for (uint32_t i = cycle; i < 200; i += 7)
            t_pin(&s, &p, i, 2 + cycle, t_value_len(i, 2 + cycle, 100, 3000));
        t_pins_check(&s, &p);
        struct ss_store_stats before, after;
        t_stats(&s, &before);
        t_close(&s);
        t_open(&s, dir, T_SEGMENTS, 256u << 10);
        t_stats(&s, &after);
        CHECK(after.pinned_bytes == before.pinned_bytes && after.pinned_items ==
              before.pinned_items, "cycle %u: %llu bytes / %llu items before, %llu / %llu "
              "after", cycle, (unsigned long long)before.pinned_bytes,
              (unsigned long long)before.pinned_items, (unsigned long long)after.pinned_bytes,
              (unsigned long long)after.pinned_items);
        t_pins_check(&s, &p);
        t_verify(&s);
    }
    t_churn(&s, 2 * T_RING, &next);
    t_pins_check(&s, &p);
    struct ss_store_stats st;
    t_stats(&s, &st);
    printf("ok reopen pinned_items=%llu pinned_bytes=%llu copied_since_open=%llu\n",
           (unsigned long long)st.pinned_items, (unsigned long long)st.pinned_bytes,
           (unsigned long long)st.pinned_copied);
    t_close(&s);
}

/* A shrink never evicts a pinned record: refused with a reason when they
 * would not fit or sit where it cuts; allowed where they are kept. */
static void scenario_shrink(const char *dir)
{
    struct t_store s;
    static struct t_pins p;
    char why[256] = "";
    t_open(&s, dir, T_SEGMENTS, 0);
    for (uint32_t i = 0; i < 100; i++)
        t_pin(&s, &p, i, 1, 1500);
    int rc = ss_store_shrink_check(s.st, t_pool_bytes(2), why, sizeof(why));
    CHECK(rc == -ENOSPC && why[0], "check for 2 segments: %d '%s'", rc, why);
    CHECK(ss_store_shrink(s.st, t_pool_bytes(2)) == -ENOSPC, "shrink to 2 segments");
    t_pins_check(&s, &p);
    CHECK(ss_store_shrink(s.st, t_pool_bytes(8)) == 0, "shrink to 8 (unused segments)");
    struct ss_store_stats st;
    t_stats(&s, &st);
    CHECK(st.segments == 8, "%llu segments", (unsigned long long)st.segments);
    t_pins_check(&s, &p);
    uint32_t next = 0;
    t_churn(&s, 3 * 8 * (uint64_t)T_SEGMENT_BYTES, &next);
    t_pins_check(&s, &p);
    for (uint32_t i = 0; i < 100; i++) {
        if (i % 3) {
            CHECK(t_remove(&s.t, 'p', i) == 0, "remove");
            p.live[i] = false;
        }
    }
    why[0] = 0;
    rc = ss_store_shrink_check(s.st, t_pool_bytes(4), why, sizeof(why));
    CHECK(rc == 0 || (rc == -EBUSY && why[0]), "check for 4 segments: %d '%s'", rc, why);
    int shrunk = ss_store_shrink(s.st, t_pool_bytes(4));
    CHECK(shrunk == rc, "shrink said %d, its check %d", shrunk, rc);
    t_pins_check(&s, &p);
    t_churn(&s, 2 * T_RING, &next);
    t_pins_check(&s, &p);
    t_verify(&s);
    t_stats(&s, &st);
    printf("ok shrink segments=%llu to4=%d (%s)\n", (unsigned long long)st.segments, rc,
           rc ? why : "allowed");
    t_close(&s);
}

/* Growing the pool under pinned records keeps them and raises the limit. */
static void scenario_grow(const char *dir)
{
    struct t_store s;
    static struct t_pins p;
    t_open(&s, dir, 8, 0);
    for (uint32_t i = 0; i < 120; i++)
        t_pin(&s, &p, i, 1, t_value_len(i, 1, 100, 2000));
    uint32_t next = 0;
    t_churn(&s, 2 * 8 * (uint64_t)T_SEGMENT_BYTES, &next);
    struct ss_store_stats before, after;
    t_stats(&s, &before);
    char device[600];
    snprintf(device, sizeof(device), "%s/device", dir);
    CHECK(truncate(device, (off_t)t_pool_bytes(T_SEGMENTS)) == 0, "extend %s", device);
    CHECK(ss_store_grow(s.st, t_pool_bytes(T_SEGMENTS)) == 0, "grow");
    t_stats(&s, &after);
    CHECK(after.pinned_limit > before.pinned_limit, "limit %llu -> %llu",
          (unsigned long long)before.pinned_limit, (unsigned long long)after.pinned_limit);
    t_pins_check(&s, &p);
    t_churn(&s, 3 * T_RING, &next);
    t_pins_check(&s, &p);
    t_verify(&s);
    printf("ok grow limit=%llu->%llu\n", (unsigned long long)before.pinned_limit,
           (unsigned long long)after.pinned_limit);
    t_close(&s);
}

static const struct {
    const char *name;
    void (*run)(const char *dir);
} scenarios[] = {
    {"wraps", scenario_wraps},   {"accounting", scenario_accounting},
    {"enospc", scenario_enospc}, {"reopen", scenario_reopen},
    {"crash", scenario_crash},   {"reader", scenario_reader},
    {"shrink", scenario_shrink}, {"grow", scenario_grow},
    {"dram_only", scenario_dram_only}, {"fill_join", scenario_fill_join},
    {"lost_roll", scenario_lost_roll}, {"overtaken_put", scenario_overtaken_put},
    {"flush_snapshot", scenario_flush_snapshot},
};

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc != 3) {
        fprintf(stderr, "usage: %s SCENARIO DIR\n", argv[0]);
        return 2;
    }
    alarm(300); /* a scenario that hangs dies of SIGALRM */
    for (size_t i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++) {
        if (strcmp(argv[1], scenarios[i].name) == 0) {
            scenarios[i].run(argv[2]);
            return 0;
        }
    }
    fprintf(stderr, "%s: no scenario %s\n", argv[0], argv[1]);
    return 2;
}
