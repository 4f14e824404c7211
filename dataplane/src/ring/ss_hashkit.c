/*
 * ss_hashkit.c - key hashes, bit-exact with libmemcached's libhashkit and
 * twemproxy's src/hashkit.
 *
 * Operators put the appliance in front of a pool their clients (libmemcached)
 * or twemproxy already shard; a key must land where those put it, so each
 * function reproduces the reference's arithmetic exactly, quirks included:
 *  - both read keys as `const char *`; where they widen a byte to 32 or 64
 *    bits it is sign-extended (signed char on Linux x86/ARM64), and we do the
 *    same with an explicit (signed char) cast;
 *  - "crc32" is ((crc32 >> 16) & 0x7fff), as both call it; "crc32a" is
 *    twemproxy's full IEEE CRC-32;
 *  - fnv1a_64 is computed in 32 bits with the low halves of the 64-bit
 *    constants, as both do; fnv1_64 keeps 64 bits and returns the low 32;
 *  - md5 is the first 4 digest bytes read little-endian;
 *  - jenkins is lookup3's hashlittle with initval 13; the references switch
 *    to word reads on aligned keys, which on little-endian hosts yields the
 *    same value as the byte loop used here (and never reads past the key).
 * Vectors pinned in tests/unit/test_ring.py were produced by the references.
 */
#include <string.h>

#include "ss_hashkit.h"

/* Sign-extend a key byte as `(uint32_t)key[i]` does with signed char. */
#define SS_SX32(c) ((uint32_t)(int32_t)(signed char)(c))
#define SS_SX64(c) ((uint64_t)(int64_t)(signed char)(c))

/* ------------------------------------------------------------------ md5 */

/* floor(|sin(i + 1)| * 2^32), RFC 1321 section 3.4; shared with ss_hashkit_md5x.c. */
const uint32_t ss_hashkit_md5_t[64] = {
    0xd76aa478u, 0xe8c7b756u, 0x242070dbu, 0xc1bdceeeu, 0xf57c0fafu, 0x4787c62au,
    0xa8304613u, 0xfd469501u, 0x698098d8u, 0x8b44f7afu, 0xffff5bb1u, 0x895cd7beu,
    0x6b901122u, 0xfd987193u, 0xa679438eu, 0x49b40821u, 0xf61e2562u, 0xc040b340u,
    0x265e5a51u, 0xe9b6c7aau, 0xd62f105du, 0x02441453u, 0xd8a1e681u, 0xe7d3fbc8u,
    0x21e1cde6u, 0xc33707d6u, 0xf4d50d87u, 0x455a14edu, 0xa9e3e905u, 0xfcefa3f8u,
    0x676f02d9u, 0x8d2a4c8au, 0xfffa3942u, 0x8771f681u, 0x6d9d6122u, 0xfde5380cu,
    0xa4beea44u, 0x4bdecfa9u, 0xf6bb4b60u, 0xbebfbc70u, 0x289b7ec6u, 0xeaa127fau,
    0xd4ef3085u, 0x04881d05u, 0xd9d4d039u, 0xe6db99e5u, 0x1fa27cf8u, 0xc4ac5665u,
    0xf4292244u, 0x432aff97u, 0xab9423a7u, 0xfc93a039u, 0x655b59c3u, 0x8f0ccc92u,
    0xffeff47du, 0x85845dd1u, 0x6fa87e4fu, 0xfe2ce6e0u, 0xa3014314u, 0x4e0811a1u,
    0xf7537e82u, 0xbd3af235u, 0x2ad7d2bbu, 0xeb86d391u,
};

static inline uint32_t rotl32(uint32_t x, unsigned n)
{
    return (x << n) | (x >> (32 - n));
}

static inline uint32_t load_le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/*
 * One 64-byte block into the running state. Written out step by step
 * (RFC 1321 section 3.4) rather than as a loop over a switch: with
 * constant rotations and message indices the compiler keeps everything in
 * registers, which roughly halves the cost of a ketama lookup (the switch
 * fast path hashes every miss's key with it).
 */
#define MD5_F(x, y, z) ((z) ^ ((x) & ((y) ^ (z))))
#define MD5_G(x, y, z) ((y) ^ ((z) & ((x) ^ (y))))
#define MD5_H(x, y, z) ((x) ^ (y) ^ (z))
#define MD5_I(x, y, z) ((y) ^ ((x) | ~(z)))
#define MD5_STEP(fn, a, b, c, d, k, i, r) \
    (a) = (b) + rotl32((a) + fn((b), (c), (d)) + m[k] + ss_hashkit_md5_t[i], (r))

static void md5_block(uint32_t h[4], const unsigned char *blk)
{
    uint32_t m[16];
    for (int i = 0; i < 16; i++)
        m[i] = load_le32(blk + 4 * i);
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3];
    /* Round 1: message words in order. */
    for (int i = 0; i < 16; i += 4) {
        MD5_STEP(MD5_F, a, b, c, d, i, i, 7);
        MD5_STEP(MD5_F, d, a, b, c, i + 1, i + 1, 12);
        MD5_STEP(MD5_F, c, d, a, b, i + 2, i + 2, 17);
        MD5_STEP(MD5_F, b, c, d, a, i + 3, i + 3, 22);
    }
    /* Round 2: word (5i + 1) mod 16. */
    for (int i = 16; i < 32; i += 4) {
        MD5_STEP(MD5_G, a, b, c, d, (5 * i + 1) & 15, i, 5);
        MD5_STEP(MD5_G, d, a, b, c, (5 * i + 6) & 15, i + 1, 9);
        MD5_STEP(MD5_G, c, d, a, b, (5 * i + 11) & 15, i + 2, 14);
        MD5_STEP(MD5_G, b, c, d, a, (5 * i + 16) & 15, i + 3, 20);
    }
    /* Round 3: word (3i + 5) mod 16. */
    for (int i = 32; i < 48; i += 4) {
        MD5_STEP(MD5_H, a, b, c, d, (3 * i + 5) & 15, i, 4);
        MD5_STEP(MD5_H, d, a, b, c, (3 * i + 8) & 15, i + 1, 11);
        MD5_STEP(MD5_H, c, d, a, b, (3 * i + 11) & 15, i + 2, 16);
        MD5_STEP(MD5_H, b, c, d, a, (3 * i + 14) & 15, i + 3, 23);
    }
    /* Round 4: word 7i mod 16. */
    for (int i = 48; i < 64; i += 4) {
        MD5_STEP(MD5_I, a, b, c, d, (7 * i) & 15, i, 6);
        MD5_STEP(MD5_I, d, a, b, c, (7 * i + 7) & 15, i + 1, 10);
        MD5_STEP(MD5_I, c, d, a, b, (7 * i + 14) & 15, i + 2, 15);
        MD5_STEP(MD5_I, b, c, d, a, (7 * i + 21) & 15, i + 3, 21);
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
}

void ss_md5_init(struct ss_md5 *x)
{
    x->h[0] = 0x67452301u;
    x->h[1] = 0xefcdab89u;
    x->h[2] = 0x98badcfeu;
    x->h[3] = 0x10325476u;
    x->nbytes = 0;
    x->nbuf = 0;
}

void ss_md5_update(struct ss_md5 *x, const void *data, size_t len)
{
    const unsigned char *p = data;
    x->nbytes += len;
    if (x->nbuf > 0) {
        size_t take = 64 - x->nbuf < len ? 64 - x->nbuf : len;
        memcpy(x->buf + x->nbuf, p, take);
        x->nbuf += take;
        p += take;
        len -= take;
        if (x->nbuf < 64)
            return;
        md5_block(x->h, x->buf);
        x->nbuf = 0;
    }
    for (; len >= 64; p += 64, len -= 64)
        md5_block(x->h, p);
    memcpy(x->buf, p, len);
    x->nbuf = len;
}

void ss_md5_final(struct ss_md5 *x, unsigned char out[16])
{
    static const unsigned char pad[64] = {0x80};
    uint64_t bits = x->nbytes * 8;
    unsigned char lenle[8];
    for (int i = 0; i < 8; i++)
        lenle[i] = (unsigned char)(bits >> (8 * i));
    /* Pad to 56 mod 64, then the bit length little-endian. */
    ss_md5_update(x, pad, x->nbuf < 56 ? 56 - x->nbuf : 120 - x->nbuf);
    ss_md5_update(x, lenle, 8);
    for (int i = 0; i < 4; i++) {
        out[4 * i] = (unsigned char)x->h[i];
        out[4 * i + 1] = (unsigned char)(x->h[i] >> 8);
        out[4 * i + 2] = (unsigned char)(x->h[i] >> 16);
        out[4 * i + 3] = (unsigned char)(x->h[i] >> 24);
    }
}

/*
 * MD5 digest of key (RFC 1321). Contract: out receives 16 bytes; len may be 0.
 */
void ss_hashkit_md5_digest(const void *key, size_t len, unsigned char out[16])
{
    struct ss_md5 x;
    ss_md5_init(&x);
    ss_md5_update(&x, key, len);
    ss_md5_final(&x, out);
}

/* md5: the digest's first 4 bytes, little-endian (hashkit_md5, hash_md5). */
uint32_t ss_hashkit_md5(const char *key, size_t len)
{
    unsigned char d[16];
    ss_hashkit_md5_digest(key, len, d);
    return load_le32(d);
}

/* ---------------------------------------------------------------- crc32 */

/* Reflected CRC-32 (IEEE 802.3, polynomial 0xedb88320), one entry per byte. */
static const uint32_t crc32_tab[256] = {
    0x00000000u, 0x77073096u, 0xee0e612cu, 0x990951bau, 0x076dc419u, 0x706af48fu,
    0xe963a535u, 0x9e6495a3u, 0x0edb8832u, 0x79dcb8a4u, 0xe0d5e91eu, 0x97d2d988u,
    0x09b64c2bu, 0x7eb17cbdu, 0xe7b82d07u, 0x90bf1d91u, 0x1db71064u, 0x6ab020f2u,
    0xf3b97148u, 0x84be41deu, 0x1adad47du, 0x6ddde4ebu, 0xf4d4b551u, 0x83d385c7u,
    0x136c9856u, 0x646ba8c0u, 0xfd62f97au, 0x8a65c9ecu, 0x14015c4fu, 0x63066cd9u,
    0xfa0f3d63u, 0x8d080df5u, 0x3b6e20c8u, 0x4c69105eu, 0xd56041e4u, 0xa2677172u,
    0x3c03e4d1u, 0x4b04d447u, 0xd20d85fdu, 0xa50ab56bu, 0x35b5a8fau, 0x42b2986cu,
    0xdbbbc9d6u, 0xacbcf940u, 0x32d86ce3u, 0x45df5c75u, 0xdcd60dcfu, 0xabd13d59u,
    0x26d930acu, 0x51de003au, 0xc8d75180u, 0xbfd06116u, 0x21b4f4b5u, 0x56b3c423u,
    0xcfba9599u, 0xb8bda50fu, 0x2802b89eu, 0x5f058808u, 0xc60cd9b2u, 0xb10be924u,
    0x2f6f7c87u, 0x58684c11u, 0xc1611dabu, 0xb6662d3du, 0x76dc4190u, 0x01db7106u,
    0x98d220bcu, 0xefd5102au, 0x71b18589u, 0x06b6b51fu, 0x9fbfe4a5u, 0xe8b8d433u,
    0x7807c9a2u, 0x0f00f934u, 0x9609a88eu, 0xe10e9818u, 0x7f6a0dbbu, 0x086d3d2du,
    0x91646c97u, 0xe6635c01u, 0x6b6b51f4u, 0x1c6c6162u, 0x856530d8u, 0xf262004eu,
    0x6c0695edu, 0x1b01a57bu, 0x8208f4c1u, 0xf50fc457u, 0x65b0d9c6u, 0x12b7e950u,
    0x8bbeb8eau, 0xfcb9887cu, 0x62dd1ddfu, 0x15da2d49u, 0x8cd37cf3u, 0xfbd44c65u,
    0x4db26158u, 0x3ab551ceu, 0xa3bc0074u, 0xd4bb30e2u, 0x4adfa541u, 0x3dd895d7u,
    0xa4d1c46du, 0xd3d6f4fbu, 0x4369e96au, 0x346ed9fcu, 0xad678846u, 0xda60b8d0u,
    0x44042d73u, 0x33031de5u, 0xaa0a4c5fu, 0xdd0d7cc9u, 0x5005713cu, 0x270241aau,
    0xbe0b1010u, 0xc90c2086u, 0x5768b525u, 0x206f85b3u, 0xb966d409u, 0xce61e49fu,
    0x5edef90eu, 0x29d9c998u, 0xb0d09822u, 0xc7d7a8b4u, 0x59b33d17u, 0x2eb40d81u,
    0xb7bd5c3bu, 0xc0ba6cadu, 0xedb88320u, 0x9abfb3b6u, 0x03b6e20cu, 0x74b1d29au,
    0xead54739u, 0x9dd277afu, 0x04db2615u, 0x73dc1683u, 0xe3630b12u, 0x94643b84u,
    0x0d6d6a3eu, 0x7a6a5aa8u, 0xe40ecf0bu, 0x9309ff9du, 0x0a00ae27u, 0x7d079eb1u,
    0xf00f9344u, 0x8708a3d2u, 0x1e01f268u, 0x6906c2feu, 0xf762575du, 0x806567cbu,
    0x196c3671u, 0x6e6b06e7u, 0xfed41b76u, 0x89d32be0u, 0x10da7a5au, 0x67dd4accu,
    0xf9b9df6fu, 0x8ebeeff9u, 0x17b7be43u, 0x60b08ed5u, 0xd6d6a3e8u, 0xa1d1937eu,
    0x38d8c2c4u, 0x4fdff252u, 0xd1bb67f1u, 0xa6bc5767u, 0x3fb506ddu, 0x48b2364bu,
    0xd80d2bdau, 0xaf0a1b4cu, 0x36034af6u, 0x41047a60u, 0xdf60efc3u, 0xa867df55u,
    0x316e8eefu, 0x4669be79u, 0xcb61b38cu, 0xbc66831au, 0x256fd2a0u, 0x5268e236u,
    0xcc0c7795u, 0xbb0b4703u, 0x220216b9u, 0x5505262fu, 0xc5ba3bbeu, 0xb2bd0b28u,
    0x2bb45a92u, 0x5cb36a04u, 0xc2d7ffa7u, 0xb5d0cf31u, 0x2cd99e8bu, 0x5bdeae1du,
    0x9b64c2b0u, 0xec63f226u, 0x756aa39cu, 0x026d930au, 0x9c0906a9u, 0xeb0e363fu,
    0x72076785u, 0x05005713u, 0x95bf4a82u, 0xe2b87a14u, 0x7bb12baeu, 0x0cb61b38u,
    0x92d28e9bu, 0xe5d5be0du, 0x7cdcefb7u, 0x0bdbdf21u, 0x86d3d2d4u, 0xf1d4e242u,
    0x68ddb3f8u, 0x1fda836eu, 0x81be16cdu, 0xf6b9265bu, 0x6fb077e1u, 0x18b74777u,
    0x88085ae6u, 0xff0f6a70u, 0x66063bcau, 0x11010b5cu, 0x8f659effu, 0xf862ae69u,
    0x616bffd3u, 0x166ccf45u, 0xa00ae278u, 0xd70dd2eeu, 0x4e048354u, 0x3903b3c2u,
    0xa7672661u, 0xd06016f7u, 0x4969474du, 0x3e6e77dbu, 0xaed16a4au, 0xd9d65adcu,
    0x40df0b66u, 0x37d83bf0u, 0xa9bcae53u, 0xdebb9ec5u, 0x47b2cf7fu, 0x30b5ffe9u,
    0xbdbdf21cu, 0xcabac28au, 0x53b39330u, 0x24b4a3a6u, 0xbad03605u, 0xcdd70693u,
    0x54de5729u, 0x23d967bfu, 0xb3667a2eu, 0xc4614ab8u, 0x5d681b02u, 0x2a6f2b94u,
    0xb40bbe37u, 0xc30c8ea1u, 0x5a05df1bu, 0x2d02ef8du,
};

static uint32_t crc32_ieee(const char *key, size_t len)
{
    const unsigned char *p = (const unsigned char *)key;
    uint32_t crc = UINT32_MAX;
    while (len--)
        crc = (crc >> 8) ^ crc32_tab[(crc ^ *p++) & 0xff];
    return ~crc;
}

/* crc32: bits 16..30 of the CRC, as libmemcached and twemproxy call "crc32". */
uint32_t ss_hashkit_crc32(const char *key, size_t len)
{
    return (crc32_ieee(key, len) >> 16) & 0x7fff;
}

/* crc32a: twemproxy's full 32-bit CRC-32. */
uint32_t ss_hashkit_crc32a(const char *key, size_t len)
{
    return crc32_ieee(key, len);
}

/* ------------------------------------------------------------------ fnv */

#define FNV64_INIT 0xcbf29ce484222325ull
#define FNV64_PRIME 0x100000001b3ull
#define FNV32_INIT 2166136261u
#define FNV32_PRIME 16777619u

/* fnv1_64: 64-bit FNV-1, low 32 bits returned; bytes sign-extended to 64. */
uint32_t ss_hashkit_fnv1_64(const char *key, size_t len)
{
    uint64_t h = FNV64_INIT;
    for (size_t i = 0; i < len; i++) {
        h *= FNV64_PRIME;
        h ^= SS_SX64(key[i]);
    }
    return (uint32_t)h;
}

/* fnv1a_64: the references' 32-bit truncation of FNV-1a 64 (see top). */
uint32_t ss_hashkit_fnv1a_64(const char *key, size_t len)
{
    uint32_t h = (uint32_t)FNV64_INIT;
    for (size_t i = 0; i < len; i++) {
        h ^= SS_SX32(key[i]);
        h *= (uint32_t)FNV64_PRIME;
    }
    return h;
}

/* fnv1_32: 32-bit FNV-1. */
uint32_t ss_hashkit_fnv1_32(const char *key, size_t len)
{
    uint32_t h = FNV32_INIT;
    for (size_t i = 0; i < len; i++) {
        h *= FNV32_PRIME;
        h ^= SS_SX32(key[i]);
    }
    return h;
}

/* fnv1a_32: 32-bit FNV-1a. */
uint32_t ss_hashkit_fnv1a_32(const char *key, size_t len)
{
    uint32_t h = FNV32_INIT;
    for (size_t i = 0; i < len; i++) {
        h ^= SS_SX32(key[i]);
        h *= FNV32_PRIME;
    }
    return h;
}

/* ------------------------------------------------------- one_at_a_time */

/* one_at_a_time: Bob Jenkins' one-at-a-time hash (libmemcached's default). */
uint32_t ss_hashkit_one_at_a_time(const char *key, size_t len)
{
    uint32_t v = 0;
    for (size_t i = 0; i < len; i++) {
        v += SS_SX32(key[i]);
        v += v << 10;
        v ^= v >> 6;
    }
    v += v << 3;
    v ^= v >> 11;
    v += v << 15;
    return v;
}

/* --------------------------------------------------------------- murmur */

/* murmur: MurmurHash2 with seed 0xdeadbeef * len, words read little-endian. */
uint32_t ss_hashkit_murmur(const char *key, size_t len)
{
    const uint32_t m = 0x5bd1e995u;
    const unsigned char *p = (const unsigned char *)key;
    uint32_t h = (0xdeadbeefu * (uint32_t)len) ^ (uint32_t)len;
    for (; len >= 4; p += 4, len -= 4) {
        uint32_t k = load_le32(p);
        k *= m;
        k ^= k >> 24;
        k *= m;
        h *= m;
        h ^= k;
    }
    switch (len) {
    case 3: h ^= (uint32_t)p[2] << 16; /* fall through */
    case 2: h ^= (uint32_t)p[1] << 8;  /* fall through */
    case 1: h ^= p[0]; h *= m; break;
    default: break;
    }
    h ^= h >> 13;
    h *= m;
    h ^= h >> 15;
    return h;
}

/* -------------------------------------------------------------- jenkins */

#define JK_MIX(a, b, c)                                   \
    do {                                                  \
        a -= c; a ^= rotl32(c, 4);  c += b;               \
        b -= a; b ^= rotl32(a, 6);  a += c;               \
        c -= b; c ^= rotl32(b, 8);  b += a;               \
        a -= c; a ^= rotl32(c, 16); c += b;               \
        b -= a; b ^= rotl32(a, 19); a += c;               \
        c -= b; c ^= rotl32(b, 4);  b += a;               \
    } while (0)

#define JK_FINAL(a, b, c)                                 \
    do {                                                  \
        c ^= b; c -= rotl32(b, 14);                       \
        a ^= c; a -= rotl32(c, 11);                       \
        b ^= a; b -= rotl32(a, 25);                       \
        c ^= b; c -= rotl32(b, 16);                       \
        a ^= c; a -= rotl32(c, 4);                        \
        b ^= a; b -= rotl32(a, 14);                       \
        c ^= b; c -= rotl32(b, 24);                       \
    } while (0)

/* Little-endian load of the n (0..4) bytes at p, zero-padded. */
static inline uint32_t load_le_partial(const unsigned char *p, size_t n)
{
    uint32_t v = 0;
    for (size_t i = 0; i < n; i++)
        v |= (uint32_t)p[i] << (8 * i);
    return v;
}

/* jenkins: lookup3 hashlittle(key, len, 13). */
uint32_t ss_hashkit_jenkins(const char *key, size_t len)
{
    const unsigned char *k = (const unsigned char *)key;
    uint32_t a, b, c;
    a = b = c = 0xdeadbeefu + (uint32_t)len + 13u;
    while (len > 12) {
        a += load_le32(k);
        b += load_le32(k + 4);
        c += load_le32(k + 8);
        JK_MIX(a, b, c);
        len -= 12;
        k += 12;
    }
    if (len == 0)
        return c;
    a += load_le_partial(k, len > 4 ? 4 : len);
    if (len > 4)
        b += load_le_partial(k + 4, len > 8 ? 4 : len - 4);
    if (len > 8)
        c += load_le_partial(k + 8, len - 8);
    JK_FINAL(a, b, c);
    return c;
}

/* ---------------------------------------------------------------- hsieh */

static inline uint32_t get16(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8;
}

/* hsieh: Paul Hsieh's SuperFastHash; the 3-byte tail widens a signed char. */
uint32_t ss_hashkit_hsieh(const char *key, size_t len)
{
    const unsigned char *p = (const unsigned char *)key;
    uint32_t h = 0, tmp;
    if (len == 0 || key == NULL)
        return 0;
    size_t rem = len & 3;
    for (len >>= 2; len > 0; len--, p += 4) {
        h += get16(p);
        tmp = (get16(p + 2) << 11) ^ h;
        h = (h << 16) ^ tmp;
        h += h >> 11;
    }
    switch (rem) {
    case 3:
        h += get16(p);
        h ^= h << 16;
        h ^= SS_SX32(p[2]) << 18;
        h += h >> 11;
        break;
    case 2:
        h += get16(p);
        h ^= h << 11;
        h += h >> 17;
        break;
    case 1:
        h += p[0];
        h ^= h << 10;
        h += h >> 1;
        break;
    default:
        break;
    }
    h ^= h << 3;
    h += h >> 5;
    h ^= h << 4;
    h += h >> 17;
    h ^= h << 25;
    h += h >> 6;
    return h;
}
