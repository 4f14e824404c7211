/*
 * ss_hash.c - 64-bit hash for DRAM tables, lock stripes, the DRAM filter and
 * the switch's reply cache.
 *
 * Every lookup on the switch's fast path hashes its key first, so this is
 * built for short keys: the key is read as at most two (overlapping) 8-byte
 * words per 16 bytes, and words are mixed by a 64x64->128-bit multiply whose
 * halves are xored ("fold"), which spreads every input bit over the output
 * in one multiply. Nothing hashed with it is persisted: tables and the
 * filter are rebuilt at start, so it may change between releases.
 */
#include <string.h>

#include "ss_hash.h"

#define K0 0xa0761d6478bd642fULL /* odd constants with well-spread bits */
#define K1 0xe7037ed1a0b428dbULL
#define K2 0x8ebc6af09c88c6e3ULL

static inline uint64_t fold_mul(uint64_t a, uint64_t b)
{
    __uint128_t r = (__uint128_t)a * b;
    return (uint64_t)r ^ (uint64_t)(r >> 64);
}

static inline uint64_t load64(const unsigned char *p)
{
    uint64_t w;
    memcpy(&w, p, 8);
    return w;
}

static inline uint64_t load32(const unsigned char *p)
{
    uint32_t w;
    memcpy(&w, p, 4);
    return w;
}

uint64_t ss_hash64(const void *key, size_t len)
{
    const unsigned char *p = key;
    uint64_t seed = K0 ^ fold_mul(len ^ K1, K2);
    uint64_t a, b;
    if (len <= 16) {
        if (len >= 8) {
            a = load64(p);
            b = load64(p + len - 8);
        } else if (len >= 4) {
            a = load32(p);
            b = load32(p + len - 4);
        } else if (len) {
            a = (uint64_t)p[0] << 16 | (uint64_t)p[len >> 1] << 8 | p[len - 1];
            b = 0;
        } else {
            a = b = 0;
        }
    } else {
        size_t left = len;
        while (left > 16) {
            seed = fold_mul(load64(p) ^ K1, load64(p + 8) ^ seed);
            p += 16;
            left -= 16;
        }
        /* The last 16 bytes of the key, overlapping what was mixed. */
        a = load64(p + left - 16);
        b = load64(p + left - 8);
    }
    return fold_mul(K1 ^ len, fold_mul(a ^ K1, b ^ seed));
}
