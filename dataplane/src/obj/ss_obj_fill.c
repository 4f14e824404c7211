/*
 * ss_obj_fill.c - fetches from origins shared by every request for one
 * object (collapsed misses), and how long an origin's answer stays fresh.
 *
 * The fill table maps an object's metadata key to its fetch in progress.
 * A request for a cached object that is missing or stale joins the fetch it
 * finds there; only the first request starts one, found or registered under
 * one lock. A fetch stores its copy before it leaves the table, and each
 * slot counts the fetches that left it: a request that looked at the store
 * before such a fetch ended is told to look again, since the copy it missed
 * may be there now (it would otherwise fetch a second time). Waiting
 * requests do not hold pointers into other workers: each worker looks at
 * the fills its own requests wait for once per loop turn (ss_obj_cached.c),
 * so the fetching worker never touches another worker's connections.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ss_obj_internal.h"

static unsigned fill_slot(const unsigned char *mkey)
{
    return mkey[1] % OBJ_FILL_BUCKETS; /* the key is already a digest */
}

uint32_t obj_fill_ended(struct ss_obj *o, const unsigned char *mkey)
{
    /* Acquire: the stored copy a fetch wrote before it left the table is
     * seen by a lookup that reads the count first. */
    return __atomic_load_n(&o->fills_ended[fill_slot(mkey)], __ATOMIC_ACQUIRE);
}

static struct obj_fill *find_locked(struct ss_obj *o, const unsigned char *mkey)
{
    struct obj_fill *f = o->fills[fill_slot(mkey)];
    while (f && memcmp(f->mkey, mkey, OBJ_META_KEY_LEN) != 0)
        f = f->next;
    return f;
}

int obj_fill_join(struct ss_obj *o, struct obj_bucket *b, const unsigned char *mkey,
                  const uint32_t *ended_seen, struct obj_fill **fill, bool *started)
{
    unsigned slot = fill_slot(mkey);
    int rc = 0;
    *started = false;
    pthread_mutex_lock(&o->fill_lock);
    struct obj_fill *f = find_locked(o, mkey);
    if (f) {
        f->refs++;
    } else if (ended_seen && o->fills_ended[slot] != *ended_seen) {
        /* A fetch ended between the caller's look at the store and now; had
         * it been this object's, its copy is stored, and a fetch started
         * here would be a second one. */
        rc = -EAGAIN;
    } else if ((f = obj_fill_private(o, b, mkey, ss_store_next_cas(o->store)))) {
        /* Made under the lock: only the one miss that starts a fetch pays. */
        f->next = o->fills[slot];
        o->fills[slot] = f;
        *started = true;
    } else {
        rc = -ENOMEM;
    }
    pthread_mutex_unlock(&o->fill_lock);
    *fill = f;
    return rc;
}

struct obj_fill *obj_fill_private(struct ss_obj *o, struct obj_bucket *b,
                                  const unsigned char *mkey, uint64_t version)
{
    struct obj_fill *f = calloc(1, sizeof(*f));
    if (!f)
        return NULL;
    memcpy(f->mkey, mkey, OBJ_META_KEY_LEN);
    f->b = b;
    f->version = version;
    f->chunk_data = o->chunk_data;
    f->refs = 2; /* the caller's, and the fetch's own until it ends */
    f->size = -1;
    return f;
}

static void unlink_fill(struct ss_obj *o, struct obj_fill *f)
{
    unsigned slot = fill_slot(f->mkey);
    struct obj_fill **link = &o->fills[slot];
    while (*link && *link != f)
        link = &(*link)->next;
    if (*link) {
        *link = f->next;
        __atomic_store_n(&o->fills_ended[slot], o->fills_ended[slot] + 1, __ATOMIC_RELEASE);
    }
    f->next = NULL;
}

void obj_fill_put(struct ss_obj *o, struct obj_fill *f)
{
    pthread_mutex_lock(&o->fill_lock);
    int last = --f->refs == 0;
    if (last)
        unlink_fill(o, f); /* normally gone already: when the fetch ended */
    pthread_mutex_unlock(&o->fill_lock);
    if (!last)
        return;
    for (uint32_t i = 0; i < OBJ_FILL_HELD; i++)
        if (f->held[i])
            ss_store_value_put(f->held[i]);
    free(f);
}

void obj_fill_meta(const struct obj_fill *f, uint64_t size, struct obj_meta *m)
{
    *m = (struct obj_meta){.version = f->version, .size = size, .chunk_bytes = f->chunk_data,
                           .mtime = f->mtime, .etag = f->etag, .etag_len = strlen(f->etag),
                           .fields = f->fields, .fields_len = f->fields_len};
}

void obj_fill_hold(struct ss_obj *o, struct obj_fill *f, uint32_t index,
                   struct ss_value_hold *hold)
{
    if (index >= OBJ_FILL_HELD) {
        ss_store_value_put(hold);
        return;
    }
    pthread_mutex_lock(&o->fill_lock);
    struct ss_value_hold *old = f->held[index];
    f->held[index] = hold;
    pthread_mutex_unlock(&o->fill_lock);
    if (old)
        ss_store_value_put(old);
}

struct ss_value_hold *obj_fill_held(struct ss_obj *o, struct obj_fill *f, uint32_t index)
{
    if (index >= OBJ_FILL_HELD)
        return NULL;
    pthread_mutex_lock(&o->fill_lock);
    struct ss_value_hold *h = f->held[index] ? ss_store_value_dup(f->held[index]) : NULL;
    pthread_mutex_unlock(&o->fill_lock);
    return h;
}

void obj_fill_set(struct ss_obj *o, struct obj_fill *f, int state, int status)
{
    pthread_mutex_lock(&o->fill_lock);
    f->state = state;
    f->status = status;
    /* An ended fetch takes no new requests: they find the stored copy (or
     * start a fetch of their own after a failure). */
    if (state == FILL_DONE || state == FILL_FRESH || state == FILL_FAILED)
        unlink_fill(o, f);
    pthread_mutex_unlock(&o->fill_lock);
}

void obj_fill_commit(struct ss_obj *o, struct obj_fill *f, uint64_t committed)
{
    pthread_mutex_lock(&o->fill_lock);
    f->committed = committed;
    pthread_mutex_unlock(&o->fill_lock);
}

int64_t obj_freshness(const struct obj_bucket *b, const struct ss_http_resp *r, int64_t now,
                      int64_t *age)
{
    struct ss_http_cache_control cc;
    ss_http_cache_control_init(&cc);
    for (int i = 0; i < r->nfields; i++) {
        const struct ss_http_field *f = &r->fields[i];
        if (f->name_len == 13 && strncasecmp(f->name, "cache-control", 13) == 0)
            ss_http_cache_control_parse(f->value, f->value_len, &cc);
    }
    *age = 0;
    const struct ss_http_field *a = ss_http_resp_header(r, "age");
    if (a) {
        char num[24] = {0};
        memcpy(num, a->value, a->value_len < 23 ? a->value_len : 23);
        long long v = strtoll(num, NULL, 10);
        *age = v > 0 ? v : 0;
    }
    /* A shared cache stores neither no-store nor private answers (RFC 9111
     * sections 5.2.2.5, 5.2.2.7); no-cache may be stored but must be
     * revalidated before each use, which a lifetime of 0 does. */
    if (cc.no_store || cc.private)
        return -1;
    if (cc.no_cache)
        return 0;
    int64_t life = cc.s_maxage >= 0 ? cc.s_maxage : cc.max_age; /* a shared cache's first */
    if (life < 0) {
        const struct ss_http_field *e = ss_http_resp_header(r, "expires");
        int64_t t;
        if (e) /* an invalid Expires means already expired */
            life = ss_http_date_parse(e->value, e->value_len, now, &t) == 0 && t > now
                       ? t - now : 0;
    }
    if (life < 0)
        life = b->default_ttl_s;
    return life;
}
