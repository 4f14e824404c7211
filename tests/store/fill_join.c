/*
 * fill_join.c - the objects plane's fill table (dataplane/src/obj/ss_obj_fill.c):
 * concurrent misses for one object join one fetch, and a miss that looked at
 * the store before a fetch of its slot ended is sent back to look again
 * rather than starting a second fetch (the fetch stored its copy before it
 * left the table). Run by tests/unit/test_store_pinned.py with the pinned
 * scenarios (same program): the table needs only a store for its versions.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "obj/ss_obj_internal.h"
#include "pinned_util.h"

#define RACERS 4u
#define RACE_ROUNDS 2000u

struct race {
    struct ss_obj *o;
    unsigned char mkey[OBJ_META_KEY_LEN];
    pthread_barrier_t start, done;
    int started[RACERS];
    struct obj_fill *got[RACERS];
};

static void mkey_of(unsigned char *mkey, uint32_t id)
{
    memset(mkey, 0, OBJ_META_KEY_LEN);
    snprintf((char *)mkey, OBJ_META_KEY_LEN, "m%u", id);
    mkey[1] = (unsigned char)id; /* the slot: the table takes a digest's byte */
}

struct racer_arg {
    struct race *r;
    unsigned me;
};

/* obj_fill_join's answer as the fill (NULL on an error), *started and *err. */
static struct obj_fill *join(struct ss_obj *o, const unsigned char *mkey, const uint32_t *seen,
                             int *started, int *err)
{
    struct obj_fill *f;
    bool s;
    *err = obj_fill_join(o, NULL, mkey, seen, &f, &s);
    *started = s;
    return *err ? NULL : f;
}

static void *racer(void *arg)
{
    struct race *r = ((struct racer_arg *)arg)->r;
    unsigned me = ((struct racer_arg *)arg)->me;
    for (uint32_t round = 0; round < RACE_ROUNDS; round++) {
        pthread_barrier_wait(&r->start);
        int err;
        uint32_t seen = obj_fill_ended(r->o, r->mkey);
        r->got[me] = join(r->o, r->mkey, &seen, &r->started[me], &err);
        CHECK(r->got[me] || err == -EAGAIN, "racer %u round %u: err %d", me, round, err);
        pthread_barrier_wait(&r->done);
        pthread_barrier_wait(&r->start); /* the checker looked */
    }
    return NULL;
}

void scenario_fill_join(const char *dir)
{
    struct t_store s;
    t_open(&s, dir, T_SEGMENTS, 0);
    struct ss_obj *o = calloc(1, sizeof(*o));
    CHECK(o, "calloc");
    o->store = s.st;
    o->chunk_data = 4096;
    pthread_mutex_init(&o->fill_lock, NULL);

    /* One fetch, then joins; once it ended, a join on the old count is refused. */
    unsigned char a[OBJ_META_KEY_LEN], b[OBJ_META_KEY_LEN];
    mkey_of(a, 7);
    mkey_of(b, 7 + OBJ_FILL_BUCKETS); /* the same slot, another object */
    uint32_t seen = obj_fill_ended(o, a);
    int started, err;
    struct obj_fill *f = join(o, a, &seen, &started, &err);
    CHECK(f && started == 1 && err == 0, "first miss: f %p started %d err %d", (void *)f,
          started, err);
    struct obj_fill *g = join(o, a, &seen, &started, &err);
    CHECK(g == f && started == 0, "second miss did not join: %p started %d", (void *)g, started);
    obj_fill_put(o, g);
    obj_fill_set(o, f, FILL_DONE, 200); /* the fetch ends: its copy is stored */
    CHECK(obj_fill_ended(o, a) != seen, "the slot's count did not move");
    g = join(o, a, &seen, &started, &err);
    CHECK(!g && err == -EAGAIN, "a miss that looked before the end: %p err %d", (void *)g, err);
    g = join(o, b, &seen, &started, &err);
    CHECK(!g && err == -EAGAIN, "another object of the slot: %p err %d", (void *)g, err);
    uint32_t seen_now = obj_fill_ended(o, a);
    g = join(o, a, &seen_now, &started, &err);
    CHECK(g && g != f && started == 1, "a miss after the end starts its own: started %d",
          started);
    struct obj_fill *h = join(o, a, NULL, &started, &err);
    CHECK(h == g && started == 0, "a join that never refuses did not join");
    obj_fill_put(o, h);
    obj_fill_set(o, g, FILL_FAILED, 502);
    h = join(o, a, NULL, &started, &err);
    CHECK(h && started == 1, "a join that never refuses was refused (err %d)", err);
    obj_fill_set(o, h, FILL_FAILED, 502);
    obj_fill_put(o, h);
    obj_fill_put(o, h); /* the fetch's own reference */
    obj_fill_put(o, g);
    obj_fill_put(o, g);
    obj_fill_put(o, f);
    obj_fill_put(o, f);

    /* Racing misses on several threads: exactly one starts each fetch. */
    static struct race r;
    r.o = o;
    mkey_of(r.mkey, 9);
    pthread_barrier_init(&r.start, NULL, RACERS + 1);
    pthread_barrier_init(&r.done, NULL, RACERS + 1);
    pthread_t th[RACERS];
    struct racer_arg args[RACERS];
    for (unsigned i = 0; i < RACERS; i++) {
        args[i] = (struct racer_arg){&r, i};
        CHECK(pthread_create(&th[i], NULL, racer, &args[i]) == 0, "pthread_create");
    }
    for (uint32_t round = 0; round < RACE_ROUNDS; round++) {
        pthread_barrier_wait(&r.start);
        pthread_barrier_wait(&r.done);
        unsigned starters = 0;
        struct obj_fill *fill = NULL;
        for (unsigned i = 0; i < RACERS; i++) {
            starters += r.started[i] != 0;
            if (r.started[i])
                fill = r.got[i];
        }
        CHECK(starters == 1, "round %u: %u racers started a fetch", round, starters);
        for (unsigned i = 0; i < RACERS; i++)
            CHECK(r.got[i] == fill, "round %u: racer %u holds another fill", round, i);
        obj_fill_set(o, fill, FILL_DONE, 200);
        for (unsigned i = 0; i < RACERS; i++)
            obj_fill_put(o, r.got[i]);
        obj_fill_put(o, fill); /* the fetch's own */
        pthread_barrier_wait(&r.start);
    }
    for (unsigned i = 0; i < RACERS; i++)
        pthread_join(th[i], NULL);
    pthread_mutex_destroy(&o->fill_lock);
    free(o);
    printf("ok fill_join rounds=%u racers=%u\n", RACE_ROUNDS, RACERS);
    t_close(&s);
}
