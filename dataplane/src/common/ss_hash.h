/*
 * ss_hash.h - the hash used for DRAM tables and lock striping.
 *
 * Not the ketama ring's hash (that one must match libmemcached and lives with
 * the ring); this one only needs to be fast and well mixed.
 */
#ifndef SS_HASH_H
#define SS_HASH_H

#include <stddef.h>
#include <stdint.h>

uint64_t ss_hash64(const void *key, size_t len);

#endif
