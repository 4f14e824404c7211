/*
 * lost_roll.c - a crash just after a roll that the log's state never
 * recorded. The roll opened the segment after the head for its next use,
 * whose first records reached the device, but the crash came before the
 * new generation was persisted; the restarted store still takes that
 * segment for its previous use, the one the index names. The reclaim walk
 * that evicts a segment follows its records from offset 0 and stops at
 * the first record of another use, so it could reach none of that use's
 * records: the entries of every record the new use did not overwrite
 * would outlive the segment's next reuse (stale entries, counted by
 * `smartswitch verify-index`). The repair at open must drop them.
 *
 * The crash is made by hand, so that the scenario fails every time the
 * repair misses them: a clean close, then the first record of the
 * segment after the head marked as the next use's (its generation is
 * outside the record's checksum), and the index marked unclean.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pinned_util.h"
#include "store/ss_index.h"
#include "store/ss_store_internal.h"

void scenario_lost_roll(const char *dir);

#define LOST_ROLL_IDS 2400u /* 1 KiB values: about 1.5 turns of the ring */

/* The segment after the head and its current use (the store is idle). */
static void next_segment(struct t_store *s, uint32_t *seg, uint32_t *gen, uint64_t *at)
{
    struct ss_log *log = &s->st->log;
    pthread_mutex_lock(&log->lock);
    *seg = log->order[(log->pos + 1) % log->nsegments];
    *gen = log->gens[*seg];
    *at = ss_log_seg_off(log, *seg);
    pthread_mutex_unlock(&log->lock);
}

/* Where key u<id>'s entry puts its record; false when it has none. */
static bool entry_of(struct t_store *s, uint32_t id, struct ss_index_entry *e)
{
    char key[16];
    size_t nkey = t_key(key, 'u', id);
    ss_store_lock(&s->t, key, nkey);
    bool found = ss_entry_get(&s->t, key, nkey, e) == 0;
    ss_store_unlock(&s->t);
    return found;
}

/* The first record of the segment at `at` becomes one of use gen + 1. */
static void overwrite_first_generation(const char *dir, uint64_t at, uint32_t gen)
{
    char device[600];
    snprintf(device, sizeof(device), "%s/device", dir);
    int fd = open(device, O_RDWR);
    CHECK(fd >= 0, "open %s", device);
    struct ss_record_hdr h;
    CHECK(pread(fd, &h, sizeof(h), (off_t)at) == (ssize_t)sizeof(h), "read the first header");
    CHECK(ss_record_magic_ok(h.magic) && h.seg_gen == gen,
          "the segment's first record is of use %u, not %u", h.seg_gen, gen);
    h.seg_gen = gen + 1;
    CHECK(pwrite(fd, &h, sizeof(h), (off_t)at) == (ssize_t)sizeof(h), "write the header");
    CHECK(fsync(fd) == 0 && close(fd) == 0, "fsync");
}

/* What a crash leaves in the index's metadata: the store was not closed. */
static void mark_unclean(const char *dir)
{
    char index_dir[600], err[256] = "";
    snprintf(index_dir, sizeof(index_dir), "%s/index", dir);
    struct ss_index *ix = ss_index_open(index_dir, 2 * t_pool_bytes(T_SEGMENTS) + (64ull << 20),
                                        err, sizeof(err));
    CHECK(ix != NULL, "ss_index_open: %s", err);
    uint32_t clean = 0;
    CHECK(ss_index_meta_put(ix, "clean", &clean, sizeof(clean)) == 0, "meta put");
    CHECK(ss_index_sync(ix) == 0, "index sync");
    ss_index_close(ix);
}

void scenario_lost_roll(const char *dir)
{
    static bool in_next[LOST_ROLL_IDS], live[LOST_ROLL_IDS];
    char buf[T_VALUE_MAX];
    struct t_store s;
    t_open(&s, dir, T_SEGMENTS, 0);
    uint32_t id = 0;
    t_churn(&s, (uint64_t)LOST_ROLL_IDS * 1024u, &id);
    CHECK(id == LOST_ROLL_IDS, "churn wrote %u keys", id);
    CHECK(ss_store_sync(&s.t) == 0, "ss_store_sync");
    uint32_t seg, gen;
    uint64_t at;
    next_segment(&s, &seg, &gen, &at);
    CHECK(gen > 0, "the ring has not turned: segment %u never used", seg);
    uint32_t victims = 0, others = 0;
    for (uint32_t i = 0; i < LOST_ROLL_IDS; i++) {
        /* Live: it reads back now (an entry alone may be one a reclaim
         * already made stale, which the read drops). */
        uint32_t len = 0, bits = 0;
        live[i] = t_read(&s.t, 'u', i, buf, &len, &bits) == 0;
        struct ss_index_entry e;
        in_next[i] = live[i] && entry_of(&s, i, &e) && e.segment == seg && e.seg_gen == gen;
        victims += in_next[i];
        others += live[i] && !in_next[i];
    }
    CHECK(victims > 2, "only %u entries name segment %u", victims, seg);
    t_close(&s);

    overwrite_first_generation(dir, at, gen);
    mark_unclean(dir);

    t_open(&s, dir, T_SEGMENTS, 0);
    t_verify(&s); /* the stale entries are what it would find */
    uint32_t kept = 0;
    for (uint32_t i = 0; i < LOST_ROLL_IDS; i++) {
        uint32_t len = 0, bits = 0, ver = 0;
        int rc = t_read(&s.t, 'u', i, buf, &len, &bits);
        if (in_next[i] || !live[i]) {
            CHECK(rc != 0, "u%u: its segment was reused, yet it reads back", i);
            continue;
        }
        CHECK(rc == 0, "u%u: lost, though its record is in segment other than %u: %d", i, seg,
              rc);
        CHECK(t_value_parse(buf, len, 'u', i, &ver) && ver == 0, "u%u: not its value", i);
        kept++;
    }
    CHECK(kept == others, "%u of %u keys outside segment %u read back", kept, others, seg);
    t_close(&s);
    printf("ok lost_roll segment=%u use=%u victims=%u kept=%u\n", seg, gen, victims, kept);
}
