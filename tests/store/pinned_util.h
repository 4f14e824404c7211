/*
 * pinned_util.h - what the pinned-record scenarios share: a small store
 * opened on a file in a scratch directory, self-describing values, key
 * operations with the stripe lock taken as a worker takes it, and checks
 * that print why they failed.
 *
 * Built by tests/unit/test_store_pinned.py together with the store's own
 * sources (dataplane/src/store, the file device, common/), so the tests see
 * the store exactly as the data plane links it.
 */
#ifndef PINNED_UTIL_H
#define PINNED_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ss_store.h"

/* A small ring, so that tests wrap it many times in seconds: 16 segments
 * of 64 KiB, values up to 4 KiB. */
#define T_SEGMENT_BYTES (64u << 10)
#define T_SEGMENTS 16u
#define T_ITEM_MAX 4096u
#define T_VALUE_MAX T_ITEM_MAX
#define T_RING ((uint64_t)T_SEGMENTS * T_SEGMENT_BYTES) /* one turn of the ring */

/* Fail the scenario: print why, exit 1. */
#define CHECK(cond, ...)                                                         \
    do {                                                                         \
        if (!(cond)) {                                                           \
            t_fail(__FILE__, __LINE__, #cond, __VA_ARGS__);                      \
        }                                                                        \
    } while (0)
void t_fail(const char *file, int line, const char *cond, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 4, 5)));

struct t_store {
    struct ss_store *st;
    struct ss_store_thread t;
    struct ss_counters ctr;
    char dir[512];
    uint32_t segments;
    uint64_t hot_bytes;
};

/* Open (creating) the store in dir with that many segments. */
void t_open(struct t_store *s, const char *dir, uint32_t segments, uint64_t hot_bytes);
void t_close(struct t_store *s);
/* The device bytes a pool of n segments takes (superblock included). */
uint64_t t_pool_bytes(uint32_t segments);

/* Keys: 'p' + number for pinned ones, 'u' + number for churn. */
size_t t_key(char *buf, char kind, uint32_t id);
/* The value of key (kind, id) at version ver: its length follows from
 * (id, ver), its bytes start with "kind id ver" so a reader can tell which
 * version it holds, and the rest is a pattern of all three. */
uint32_t t_value_len(uint32_t id, uint32_t ver, uint32_t min, uint32_t max);
void t_value(char *buf, char kind, uint32_t id, uint32_t ver, uint32_t len);
/* Which version a value read back claims to be; false if it is not a whole
 * value of key (kind, id) at all. */
bool t_value_parse(const char *val, uint32_t len, char kind, uint32_t id, uint32_t *ver);

/* Write under the key's stripe lock, retrying -EAGAIN (bounded): 0 or -errno. */
int t_write(struct ss_store_thread *t, char kind, uint32_t id, uint32_t ver, uint32_t len,
            unsigned flags);
/* Read under the lock into buf: 0 with *len, *bits, or the find's -errno. */
int t_read(struct ss_store_thread *t, char kind, uint32_t id, char *buf, uint32_t *len,
           uint32_t *bits);
/* The key's value must be exactly version ver (pinned when `pinned`). */
void t_expect(struct ss_store_thread *t, char kind, uint32_t id, uint32_t ver, uint32_t len,
              bool pinned);
int t_remove(struct ss_store_thread *t, char kind, uint32_t id);

/* Bytes a record of this key and value length takes in the log. */
uint64_t t_record_bytes(char kind, uint32_t id, uint32_t len);
void t_stats(struct t_store *s, struct ss_store_stats *out);
/* A counter summed over this thread and the segment writer. */
uint64_t t_counter(struct t_store *s, size_t offset);
#define T_COUNTER(s, name) t_counter((s), offsetof(struct ss_counters, name))
/* ss_store_verify must find every entry consistent. */
void t_verify(struct t_store *s);

/* Unpinned writes of about `bytes` in total (1 KiB values), with
 * housekeeping now and then as the control plane runs it; ids from *next. */
void t_churn(struct t_store *s, uint64_t bytes, uint32_t *next);

/* What the pinned keys p0..p(n-1) should hold. */
#define T_MAX_PINS 2048u
struct t_pins {
    uint32_t n;
    bool live[T_MAX_PINS];
    uint32_t ver[T_MAX_PINS], len[T_MAX_PINS];
};
/* Pinned write of key p<id> that must succeed; recorded in p. */
void t_pin(struct t_store *s, struct t_pins *p, uint32_t id, uint32_t ver, uint32_t len);
/* Every live key holds its version, pinned; every other one is missing;
 * the store's pinned figures are exactly those of the live keys. */
void t_pins_check(struct t_store *s, const struct t_pins *p);
uint64_t t_pins_bytes(const struct t_pins *p);

uint64_t t_now_ms(void);
uint32_t t_hash(uint32_t a, uint32_t b);

#endif
