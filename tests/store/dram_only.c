/*
 * dram_only.c - the store's DRAM-only copies (SS_WRITE_DRAM_ONLY), as proxy
 * mode keeps a value a client wrote through it: served from DRAM, never
 * logged or indexed, rewritten in place after ss_store_withdraw, and never
 * letting an older device copy of the key show through once DRAM lets go of
 * them (eviction, restart). Run by tests/unit/test_store_pinned.py with the
 * pinned scenarios (same program, same helpers).
 * A DRAM-only write puts no index entry: the filter (which notes every put)
 * sees no insert.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "pinned_util.h"

#define LEN 200u

/* Write (kind, id) at version ver with flags, under the key's lock. */
static int put(struct ss_store_thread *t, uint32_t id, uint32_t ver, unsigned flags)
{
    return t_write(t, 'u', id, ver, LEN, flags);
}

/* The key must be absent: not found, neither in DRAM nor on the device. */
static void expect_gone(struct ss_store_thread *t, uint32_t id, const char *when)
{
    char buf[T_VALUE_MAX];
    uint32_t len = 0, bits = 0, ver = 0;
    int rc = t_read(t, 'u', id, buf, &len, &bits);
    if (rc == 0)
        t_value_parse(buf, len, 'u', id, &ver);
    CHECK(rc == -ENOENT, "u%u %s: find gave %d (version %u), want -ENOENT", id, when, rc, ver);
}

static int withdraw(struct ss_store_thread *t, uint32_t id)
{
    char key[16];
    size_t nkey = t_key(key, 'u', id);
    ss_store_lock(t, key, nkey);
    int rc = ss_store_withdraw(t, key, nkey);
    ss_store_unlock(t);
    return rc;
}

/* Push every earlier item out of a DRAM tier of hot bytes, through the log. */
static void flush_dram(struct t_store *s, uint64_t hot)
{
    for (uint32_t i = 0; i < 4 * hot / LEN; i++)
        CHECK(put(&s->t, 100000 + i, 1, 0) == 0, "filler %u not written", i);
}

void scenario_dram_only(const char *dir)
{
    const uint64_t hot = 64u << 10;
    struct t_store s;
    t_open(&s, dir, T_SEGMENTS, hot);
    struct ss_store_thread *t = &s.t;

    /* A device-backed copy, withdrawn (gone as a remove makes it), then a
     * DRAM-only value: found in DRAM, with no index entry written for it. */
    CHECK(put(t, 1, 1, 0) == 0, "u1 v1 not written");
    CHECK(ss_store_sync(t) == 0, "sync failed");
    CHECK(withdraw(t, 1) == 0, "u1 had a copy to withdraw");
    expect_gone(t, 1, "withdrawn");
    uint64_t appended = T_COUNTER(&s, total_items);
    struct ss_store_stats before, after;
    t_stats(&s, &before);
    CHECK(put(t, 1, 2, SS_WRITE_DRAM_ONLY) == 0, "u1 v2 (DRAM only) not kept");
    t_stats(&s, &after);
    CHECK(after.filter_inserts == before.filter_inserts,
          "a DRAM-only write put %llu index entries",
          (unsigned long long)(after.filter_inserts - before.filter_inserts));
    CHECK(T_COUNTER(&s, total_items) == appended + 1, "total_items not counted");
    t_expect(t, 'u', 1, 2, LEN, false);

    /* Withdrawn again: hidden from every lookup; the next DRAM-only write
     * of the same length takes the same memory, and the tier's figures do
     * not move. */
    CHECK(withdraw(t, 1) == 0, "u1's DRAM-only copy not withdrawn");
    expect_gone(t, 1, "DRAM-only copy withdrawn");
    t_stats(&s, &before);
    CHECK(put(t, 1, 3, SS_WRITE_DRAM_ONLY) == 0, "u1 v3 not rewritten");
    t_stats(&s, &after);
    CHECK(after.hot_items == before.hot_items && after.hot_bytes_used == before.hot_bytes_used,
          "in-place rewrite changed the tier: %llu items / %llu bytes, then %llu / %llu",
          (unsigned long long)before.hot_items, (unsigned long long)before.hot_bytes_used,
          (unsigned long long)after.hot_items, (unsigned long long)after.hot_bytes_used);
    t_expect(t, 'u', 1, 3, LEN, false);

    /* Withdrawn and then removed (the back end refused the write). */
    CHECK(withdraw(t, 1) == 0, "u1 not withdrawn");
    CHECK(t_remove(t, 'u', 1) == 0, "a withdrawn copy counts as one to remove");
    expect_gone(t, 1, "removed");
    CHECK(put(t, 1, 4, SS_WRITE_DRAM_ONLY) == 0, "u1 v4 not kept");

    /* A DRAM-only write over a device-backed copy still in DRAM (nothing
     * withdrawn first) deletes that copy's index entry. */
    CHECK(put(t, 2, 1, 0) == 0, "u2 v1 not written");
    CHECK(put(t, 2, 2, SS_WRITE_DRAM_ONLY) == 0, "u2 v2 not kept");
    t_expect(t, 'u', 2, 2, LEN, false);

    /* A value DRAM will not take is refused, nothing kept. */
    {
        char key[16], big[T_VALUE_MAX];
        size_t nkey = t_key(key, 'u', 3);
        memset(big, 'b', sizeof(big));
        struct iovec iov = {big, sizeof(big)};
        struct ss_item it = {0};
        ss_store_lock(t, key, nkey);
        int rc = ss_store_write(t, key, nkey, &it, &iov, 1, SS_WRITE_DRAM_ONLY);
        ss_store_unlock(t);
        CHECK(rc == -ENOBUFS, "a value over the tier's item share gave %d, want -ENOBUFS", rc);
        expect_gone(t, 3, "refused by DRAM");
    }

    CHECK(put(t, 4, 1, 0) == 0, "u4 v1 not written");
    CHECK(withdraw(t, 4) == 0, "u4 not withdrawn");
    CHECK(put(t, 4, 2, SS_WRITE_DRAM_ONLY) == 0, "u4 v2 not kept");

    /* A DRAM-only item is not evicted in its first moments (its writer may
     * be about to read it back): a flood right after it is refused room
     * instead. */
    flush_dram(&s, hot);
    t_expect(t, 'u', 1, 4, LEN, false);

    /* Older, DRAM lets go: the keys are misses, never their older device
     * copies. */
    usleep(250 * 1000);
    CHECK(ss_store_sync(t) == 0, "sync failed");
    flush_dram(&s, hot);
    CHECK(ss_store_sync(t) == 0, "sync failed");
    expect_gone(t, 1, "evicted from DRAM");
    expect_gone(t, 2, "evicted from DRAM");
    expect_gone(t, 4, "evicted from DRAM");
    CHECK(put(t, 4, 3, 0) == 0, "u4 v3 not written");
    CHECK(withdraw(t, 4) == 0, "u4 not withdrawn");
    /* Each stripe makes room from its own items: this one may have none
     * left after the flood, and then DRAM refuses (the proxy writes the
     * value normally instead). */
    int kept = put(t, 4, 4, SS_WRITE_DRAM_ONLY);
    CHECK(kept == 0 || kept == -ENOBUFS, "u4 v4 gave %d", kept);
    CHECK(ss_store_sync(t) == 0, "sync failed");

    /* And a restart keeps none of them either (u4's DRAM-only copy is
     * still in DRAM when the store closes). */
    t_close(&s);
    t_open(&s, dir, T_SEGMENTS, hot);
    t = &s.t;
    expect_gone(t, 4, "after a restart");
    expect_gone(t, 1, "after a restart");
    t_expect(t, 'u', 100000 + (uint32_t)(4 * hot / LEN) - 1, 1, LEN, false);
    printf("ok dram_only\n");
    t_close(&s);
}
