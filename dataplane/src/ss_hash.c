/*
 * ss_hash.c - 64-bit hash for DRAM tables and lock stripes.
 *
 * A multiply-xorshift hash over 8-byte words (the mixing constants are the
 * 64-bit finalizer of MurmurHash3). Keys are at most 250 bytes, so a simple
 * word loop is as fast as anything fancier here.
 */
#include <string.h>

#include "ss_hash.h"

static inline uint64_t mix64(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

uint64_t ss_hash64(const void *key, size_t len)
{
    const unsigned char *p = key;
    uint64_t h = 0x9e3779b97f4a7c15ULL ^ (len * 0x100000001b3ULL);
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = mix64(h ^ w) + 0x9e3779b97f4a7c15ULL;
        p += 8;
        len -= 8;
    }
    uint64_t tail = 0;
    memcpy(&tail, p, len);
    return mix64(h ^ tail ^ ((uint64_t)len << 56));
}
