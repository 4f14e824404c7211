/*
 * ss_objects.h - object requests: an HTTP/1.1 listener serving S3 path-style
 * GET, HEAD, PUT, DELETE and PURGE on /<bucket>/<key> from a pool with
 * `role: objects` (dataplane/src/obj/).
 *
 * The objects pool is a second item store (struct ss_store) beside the
 * memcached one, on the same worker threads: an object is a metadata item
 * plus its data in chunks of chunk_bytes, each an item of that store, so
 * objects of any size stream both ways without being held in memory.
 * Local buckets are the store of record: their items are pinned (never
 * evicted from the log). The control plane fills these settings from the
 * `objects:` section (appliance/config/objects.py).
 */
#ifndef SS_OBJECTS_H
#define SS_OBJECTS_H

#include <stdint.h>

#include "ss_store.h"

/* cffi: begin */
enum ss_bucket_kind {
    SS_BUCKET_LOCAL = 0, /* the appliance is the store of record */
    SS_BUCKET_HTTP = 1,  /* a cache of an HTTP origin */
    SS_BUCKET_S3 = 2,    /* a cache of an S3-compatible endpoint */
};

/* When a cached bucket's copy of a fetched object is written to flash. */
enum ss_flash_admission {
    SS_FLASH_ON_MISS = 0,           /* as it arrives, on every cacheable miss */
    SS_FLASH_ON_SECOND_REQUEST = 1, /* a small object lives in DRAM only until it is
                                       requested again: one-hit wonders never cost a
                                       flash write (larger ones: as on a miss) */
};

#define SS_BUCKET_NAME_MAX 63 /* S3's limit on a bucket name */
#define SS_OBJECTS_BUCKETS_MAX 256

struct ss_bucket_settings {
    const char *name;            /* 3..63 bytes: lower-case letters, digits, '-', '.' */
    int kind;                    /* enum ss_bucket_kind */
    /* Origins (kind HTTP or S3): a numeric address, a port, the path the
     * bucket's keys are appended to ("/" or "/prefix/"), the Host header
     * to send. Unused for local buckets. */
    const char *origin_addr;
    int origin_port;
    const char *origin_path;
    const char *origin_host;
    uint32_t origin_timeout_ms;  /* connect, and each read while fetching */
    uint32_t default_ttl_s;      /* freshness when the origin says nothing */
    int flash_admission;         /* enum ss_flash_admission (cached buckets) */
    /* Kind S3: the endpoint's credentials, for AWS Signature Version 4 on
     * every request; a NULL key id sends requests unsigned. */
    const char *s3_access_key_id;
    const char *s3_secret_access_key;
    const char *s3_region;       /* NULL: us-east-1 */
    /* An https origin: TLS, the certificate verified against origin_ca_file
     * (NULL: the system's trust store) and origin_tls_name (the origin's host
     * name, also sent as SNI, or its address). */
    int origin_tls;
    const char *origin_tls_name;
    const char *origin_ca_file;
};

struct ss_objects_settings {
    const char *listen_host;     /* numeric IPv4 or IPv6 address */
    int port;                    /* 0 = any free port */
    struct ss_store_settings store; /* the objects pool; item_size_max = chunk_bytes */
    uint32_t chunk_bytes;        /* data bytes per chunk item */
    uint64_t max_object_bytes;   /* larger PUTs are refused (413) */
    uint32_t max_head_bytes;     /* request line and fields; over it: 431 */
    uint32_t max_fields;
    uint32_t max_uri_bytes;      /* over it: 414 */
    uint32_t request_timeout_ms; /* a started request that makes no progress this long: 408 */
    uint32_t keepalive_timeout_ms; /* an idle kept-alive connection is closed after this */
    uint32_t nbuckets;
    const struct ss_bucket_settings *buckets;
};

/* One bucket's figures since start (summed over workers). */
struct ss_bucket_stats {
    uint64_t requests;
    uint64_t hits;               /* GET/HEAD answered from the store */
    uint64_t misses;             /* GET/HEAD of an object the bucket does not hold */
    uint64_t bytes_out;          /* body bytes sent */
    uint64_t bytes_in;           /* body bytes stored */
    uint64_t puts, deletes, purges;
    uint64_t not_modified;       /* 304 answers */
    uint64_t precondition_failed; /* 412 answers */
    uint64_t ranges;             /* 206 answers */
    uint64_t errors;             /* 4xx/5xx answers other than 304/412/404 */
    uint64_t origin_fetches, collapsed_fetches, revalidations;
    uint64_t objects;            /* objects held now (gauge) */
    uint64_t object_bytes;       /* their bytes (gauge) */
    uint64_t bytes_out_dram;     /* of bytes_out, from the DRAM tier (not the device) */
    /* Cached copies kept in DRAM only when fetched, written to flash when
     * requested again (flash_admission: second_request). */
    uint64_t flash_admitted;
};
/* cffi: end */

#endif
