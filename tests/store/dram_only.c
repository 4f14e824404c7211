/*
 * dram_only.c - the store's DRAM-only copies (SS_WRITE_DRAM_ONLY), as proxy
 * mode keeps a value a client wrote through it: served from DRAM, never
 * logged or indexed, rewritten in place after ss_store_withdraw (found again
 * through the reference it gives, ss_store_write_over), and never
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
    int rc = ss_store_withdraw(t, key, nkey, NULL);
    ss_store_unlock(t);
    return rc;
}

/* Withdraw (kind u, id) keeping a reference, as proxy mode does for a set. */
static struct ss_value_hold *withdraw_held(struct ss_store_thread *t, uint32_t id)
{
    char key[16];
    size_t nkey = t_key(key, 'u', id);
    struct ss_value_hold *held = NULL;
    ss_store_lock(t, key, nkey);
    int rc = ss_store_withdraw(t, key, nkey, &held);
    ss_store_unlock(t);
    CHECK(rc == 0, "u%u had no copy to withdraw", id);
    return held;
}

/* Write (u, id) at version ver DRAM-only over the copy held, as post_write
 * does. */
static int put_over(struct ss_store_thread *t, struct ss_value_hold *held, uint32_t id,
                    uint32_t ver)
{
    char key[16], val[LEN];
    size_t nkey = t_key(key, 'u', id);
    t_value(val, 'u', id, ver, LEN);
    struct iovec iov = {val, LEN};
    struct ss_item it = {0};
    ss_store_lock(t, key, nkey);
    int rc = ss_store_write_over(t, held, key, nkey, &it, &iov, 1, 0);
    ss_store_unlock(t);
    return rc;
}

/* Which version of (u, id) the held item's bytes are now. */
static uint32_t held_version(struct ss_value_hold *held, uint32_t id)
{
    size_t len = 0;
    const char *val = ss_store_value_bytes(held, &len);
    uint32_t ver = 0;
    CHECK(t_value_parse(val, (uint32_t)len, 'u', id, &ver), "held bytes are no value of u%u", id);
    return ver;
}

/* The reference a withdraw gives saves the rewrite its lookup, and never
 * lets it write into an item the table has let go of meanwhile. */
static void check_held_copies(struct t_store *s)
{
    struct ss_store_thread *t = &s->t;
    struct ss_store_stats before, after;
    CHECK(put(t, 5, 2, SS_WRITE_DRAM_ONLY) == 0, "u5 v2 not kept");
    struct ss_value_hold *held = withdraw_held(t, 5);
    CHECK(held != NULL, "a DRAM-only copy withdrawn gave no reference");
    expect_gone(t, 5, "withdrawn with a reference");
    t_stats(s, &before);
    CHECK(put_over(t, held, 5, 3) == 0, "u5 v3 not written over its held copy");
    CHECK(held_version(held, 5) == 3, "u5 v3 not written into the held item");
    ss_store_value_put(held);
    t_stats(s, &after);
    CHECK(after.hot_items == before.hot_items && after.hot_bytes_used == before.hot_bytes_used,
          "a held copy was not rewritten in place: %llu items / %llu bytes, then %llu / %llu",
          (unsigned long long)before.hot_items, (unsigned long long)before.hot_bytes_used,
          (unsigned long long)after.hot_items, (unsigned long long)after.hot_bytes_used);
    t_expect(t, 'u', 5, 3, LEN, false);

    /* Removed while held (the back end refused, another client's write
     * ended first): the write stores a new item, the old one stays hidden. */
    held = withdraw_held(t, 5);
    CHECK(t_remove(t, 'u', 5) == 0, "u5 not removed");
    CHECK(put_over(t, held, 5, 4) == 0, "u5 v4 not written after its held copy went");
    CHECK(held_version(held, 5) == 3, "u5 v4 written into an item removed from the table");
    ss_store_value_put(held);
    t_expect(t, 'u', 5, 4, LEN, false);

    /* Replaced while held by an ordinary write: the held item is not the
     * key's any more, so it must not take the value (a lookup would find the
     * ordinary copy, v5, and serve it). */
    held = withdraw_held(t, 5);
    CHECK(put(t, 5, 5, 0) == 0, "u5 v5 not written");
    CHECK(put_over(t, held, 5, 6) == 0, "u5 v6 not written over a replaced copy");
    CHECK(held_version(held, 5) == 4, "u5 v6 written into a replaced item");
    ss_store_value_put(held);
    t_expect(t, 'u', 5, 6, LEN, false);

    /* A device-backed copy withdrawn with a reference becomes DRAM-only (its
     * index entry deleted): the write reuses its item, and no restart brings
     * the device copy back (checked after the restart below). */
    CHECK(put(t, 6, 1, 0) == 0, "u6 v1 not written");
    CHECK(ss_store_sync(t) == 0, "sync failed");
    held = withdraw_held(t, 6);
    CHECK(held != NULL, "a device-backed copy withdrawn gave no reference");
    expect_gone(t, 6, "device-backed copy withdrawn with a reference");
    CHECK(put_over(t, held, 6, 2) == 0, "u6 v2 not written over its held copy");
    CHECK(held_version(held, 6) == 2, "u6 v2 not written into the device-backed copy's item");
    ss_store_value_put(held);
    t_expect(t, 'u', 6, 2, LEN, false);
    CHECK(ss_store_sync(t) == 0, "sync failed");
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

    check_held_copies(&s);

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
    expect_gone(t, 5, "after a restart"); /* its ordinary v5 was deleted by v6 */
    expect_gone(t, 6, "after a restart"); /* its v1 lost its index entry when withdrawn */
    t_expect(t, 'u', 100000 + (uint32_t)(4 * hot / LEN) - 1, 1, LEN, false);
    printf("ok dram_only\n");
    t_close(&s);
}
