/*
 * ss_hashkit.h - the key hashes of libmemcached's libhashkit and twemproxy's
 * src/hashkit, bit-exact (internal to the data plane; ss_hash_key() in
 * ss_ring.c is the public entry).
 *
 * Every function takes the key as the bytes a client sent and returns the
 * 32-bit value those libraries return for it. Both libraries read keys
 * through `const char *`, so on x86/ARM64-Linux (signed char) a byte >= 0x80
 * is sign-extended where they widen it; we do the same, deliberately.
 */
#ifndef SS_HASHKIT_H
#define SS_HASHKIT_H

#include <stddef.h>
#include <stdint.h>

/* MD5's additive constants T[1..64] (RFC 1321 section 3.4), for the
 * multi-buffer MD5 in ss_hashkit_md5x.c. */
extern const uint32_t ss_hashkit_md5_t[64];

/* MD5 (RFC 1321) of key into out[16]; the ring builder's points use it. */
void ss_hashkit_md5_digest(const void *key, size_t len, unsigned char out[16]);
/* The same digest over data fed in pieces (object ETags, obj/). */
struct ss_md5 {
    uint32_t h[4];
    uint64_t nbytes;
    unsigned char buf[64];
    size_t nbuf;
};
void ss_md5_init(struct ss_md5 *x);
void ss_md5_update(struct ss_md5 *x, const void *data, size_t len);
void ss_md5_final(struct ss_md5 *x, unsigned char out[16]);

uint32_t ss_hashkit_md5(const char *key, size_t len);
uint32_t ss_hashkit_crc32(const char *key, size_t len);
uint32_t ss_hashkit_crc32a(const char *key, size_t len);
uint32_t ss_hashkit_fnv1_64(const char *key, size_t len);
uint32_t ss_hashkit_fnv1a_64(const char *key, size_t len);
uint32_t ss_hashkit_fnv1_32(const char *key, size_t len);
uint32_t ss_hashkit_fnv1a_32(const char *key, size_t len);
uint32_t ss_hashkit_one_at_a_time(const char *key, size_t len);
uint32_t ss_hashkit_murmur(const char *key, size_t len);
uint32_t ss_hashkit_jenkins(const char *key, size_t len);
uint32_t ss_hashkit_hsieh(const char *key, size_t len);

#endif
