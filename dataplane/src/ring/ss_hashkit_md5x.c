/*
 * ss_hashkit_md5x.c - the md5 key hash (ketama) of many keys at once, one key
 * per 32-bit SIMD lane: 8 lanes with AVX2, 16 with AVX-512F.
 *
 * Why: the switch fast path hashes every forwarded miss's key, and the
 * scalar md5_block is the biggest single cost there. MD5 is a chain of
 * dependent 32-bit adds, rotates and boolean functions, so one key cannot use
 * wide registers, but the keys of a burst are independent: side by side, a
 * group of 8 or 16 keys costs about two scalar hashes (bench/md5_batch.py).
 *
 * Only one-block messages are done in lanes. A key of up to 55 bytes plus
 * MD5's padding (0x80, zeros, the 64-bit bit length) fits one 64-byte block;
 * memcached keys are at most 250 bytes but typically short, so the rare
 * longer key goes through the scalar ss_hashkit_md5() on its own.
 *
 * The SIMD kernels are compiled with per-function target attributes, not a
 * global -mavx2, so the shared object still loads on any x86-64; which of
 * them may run is decided once from __builtin_cpu_supports. On other
 * architectures only the scalar path exists.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "ss_hashkit.h"
#include "ss_proxy.h"

/* 55 key bytes + the 0x80 marker + 8 length bytes = 64: one MD5 block. */
#define MD5X_ONE_BLOCK_KEY_MAX 55u

/*
 * Scalar path: the reference itself, so isa 0 is correct by construction and
 * the SIMD paths have something to be compared with.
 */
static void md5x_batch_scalar(const char *const *keys, const uint32_t *lens, uint32_t n,
                              uint32_t *out)
{
    for (uint32_t i = 0; i < n; i++)
        out[i] = ss_hashkit_md5(keys[i], lens[i]);
}

#if defined(__x86_64__)

#define MD5X_LANES_MAX 16u

/* The chaining value before the first block (RFC 1321 section 3.3, word A..D). */
#define MD5X_INIT_A 0x67452301u
#define MD5X_INIT_B 0xefcdab89u
#define MD5X_INIT_C 0x98badcfeu
#define MD5X_INIT_D 0x10325476u

static inline uint32_t md5x_le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/*
 * Write the padded block of one key (len <= MD5X_ONE_BLOCK_KEY_MAX) into
 * lane `lane` of a word-major buffer: word j of every lane sits together at
 * words[j * lanes ..], so the kernel loads message word j of all lanes with
 * one vector load and no transpose. The words are built straight from the
 * key (whole little-endian words, then the tail bytes with the 0x80 marker),
 * which avoids assembling a byte block first and reading it back.
 */
static inline __attribute__((always_inline)) void
md5x_pack_lane(uint32_t *words, unsigned lanes, unsigned lane, const char *key, uint32_t len)
{
    const unsigned char *p = (const unsigned char *)key;
    uint32_t nfull = len / 4;
    uint32_t j = 0;
    for (; j < nfull; j++)
        words[j * lanes + lane] = md5x_le32(p + 4 * j);
    uint32_t tail = 0x80u << (8 * (len & 3));
    for (uint32_t b = 0; b < (len & 3); b++)
        tail |= (uint32_t)p[4 * j + b] << (8 * b);
    words[j * lanes + lane] = tail;
    for (j++; j < 14; j++)
        words[j * lanes + lane] = 0;
    /* The bit length, 64-bit little-endian; its high word is 0 for one block. */
    words[14 * lanes + lane] = len * 8;
    words[15 * lanes + lane] = 0;
}

/*
 * The four rounds of RFC 1321 section 3.4 on vectors of lanes, written with
 * GCC vector extensions so the same text serves every lane width: operators
 * act lane-wise and a scalar operand is broadcast. With constant rotations
 * GCC emits vprold and vpternlogd on AVX-512F, shifts and ors on AVX2.
 */
#define MD5X_F(x, y, z) ((z) ^ ((x) & ((y) ^ (z))))
#define MD5X_G(x, y, z) ((y) ^ ((z) & ((x) ^ (y))))
#define MD5X_H(x, y, z) ((x) ^ (y) ^ (z))
#define MD5X_I(x, y, z) ((y) ^ ((x) | ~(z)))
#define MD5X_ROTL(x, r) (((x) << (r)) | ((x) >> (32 - (r))))
/*
 * a + m[k] + T[i] does not depend on the previous step, so it is summed
 * first and only F's result is added on the chain of dependent steps. The
 * empty asm keeps GCC from reassociating the sum back into (a + F) + (m + T),
 * which puts one more add on that chain (about 10% slower on Zen 4).
 */
#define MD5X_STEP(fn, a, b, c, d, k, i, r)                     \
    do {                                                        \
        (a) += m[k] + ss_hashkit_md5_t[i];                      \
        __asm__("" : "+v"(a));                                  \
        (a) = (b) + MD5X_ROTL((a) + fn((b), (c), (d)), (r));    \
    } while (0)

/*
 * One block per lane on the state a..d (set to the initial chaining value by
 * the caller); the four rounds of RFC 1321 section 3.4, in the scalar
 * md5_block's order. The caller keeps only word A (the ketama hash is the
 * digest's first 4 bytes), so the compiler drops the last three steps, which
 * feed only B, C and D. Unrolled so message indices and constants are fixed.
 */
#define MD5X_ROUNDS(a, b, c, d, m)                                       \
    do {                                                                 \
        _Pragma("GCC unroll 4")                                          \
        for (int i = 0; i < 16; i += 4) {                                \
            MD5X_STEP(MD5X_F, a, b, c, d, i, i, 7);                      \
            MD5X_STEP(MD5X_F, d, a, b, c, i + 1, i + 1, 12);             \
            MD5X_STEP(MD5X_F, c, d, a, b, i + 2, i + 2, 17);             \
            MD5X_STEP(MD5X_F, b, c, d, a, i + 3, i + 3, 22);             \
        }                                                                \
        _Pragma("GCC unroll 4")                                          \
        for (int i = 16; i < 32; i += 4) {                               \
            MD5X_STEP(MD5X_G, a, b, c, d, (5 * i + 1) & 15, i, 5);       \
            MD5X_STEP(MD5X_G, d, a, b, c, (5 * i + 6) & 15, i + 1, 9);   \
            MD5X_STEP(MD5X_G, c, d, a, b, (5 * i + 11) & 15, i + 2, 14); \
            MD5X_STEP(MD5X_G, b, c, d, a, (5 * i + 16) & 15, i + 3, 20); \
        }                                                                \
        _Pragma("GCC unroll 4")                                          \
        for (int i = 32; i < 48; i += 4) {                               \
            MD5X_STEP(MD5X_H, a, b, c, d, (3 * i + 5) & 15, i, 4);       \
            MD5X_STEP(MD5X_H, d, a, b, c, (3 * i + 8) & 15, i + 1, 11);  \
            MD5X_STEP(MD5X_H, c, d, a, b, (3 * i + 11) & 15, i + 2, 16); \
            MD5X_STEP(MD5X_H, b, c, d, a, (3 * i + 14) & 15, i + 3, 23); \
        }                                                                \
        _Pragma("GCC unroll 4")                                          \
        for (int i = 48; i < 64; i += 4) {                               \
            MD5X_STEP(MD5X_I, a, b, c, d, (7 * i) & 15, i, 6);           \
            MD5X_STEP(MD5X_I, d, a, b, c, (7 * i + 7) & 15, i + 1, 10);  \
            MD5X_STEP(MD5X_I, c, d, a, b, (7 * i + 14) & 15, i + 2, 15); \
            MD5X_STEP(MD5X_I, b, c, d, a, (7 * i + 21) & 15, i + 3, 21); \
        }                                                                \
    } while (0)

typedef uint32_t md5x_v8 __attribute__((vector_size(32)));
typedef uint32_t md5x_v16 __attribute__((vector_size(64)));

/* A kernel hashes one full group: words[16 * lanes] word-major, out[lanes]. */
typedef void (*md5x_kernel_fn)(const uint32_t *words, uint32_t *out);

/* The kernels differ only in their vector width and target ISA. */
#define MD5X_KERNEL(name, isa, vec)                                        \
    __attribute__((target(isa))) static void name(const uint32_t *words,  \
                                                  uint32_t *out)          \
    {                                                                      \
        vec m[16];                                                         \
        memcpy(m, words, sizeof m);                                        \
        vec a = {0}, b = {0}, c = {0}, d = {0};                            \
        a += MD5X_INIT_A;                                                  \
        b += MD5X_INIT_B;                                                  \
        c += MD5X_INIT_C;                                                  \
        d += MD5X_INIT_D;                                                  \
        MD5X_ROUNDS(a, b, c, d, m);                                        \
        a += MD5X_INIT_A;                                                  \
        memcpy(out, &a, sizeof a);                                         \
    }

MD5X_KERNEL(md5x_kernel_avx2, "avx2", md5x_v8)
MD5X_KERNEL(md5x_kernel_avx512, "avx512f", md5x_v16)

/*
 * Hash keys[0..n) with `kernel` over groups of `lanes` keys. Keys too long
 * for one block are hashed at once by the scalar code and take no lane, so
 * the lanes stay full of short keys; the last group's spare lanes hash the
 * empty key, and their results are dropped. Inlined into each caller so
 * `lanes` is a constant in the packing loops.
 */
static inline __attribute__((always_inline)) void
md5x_batch_lanes(const char *const *keys, const uint32_t *lens, uint32_t n, uint32_t *out,
                 unsigned lanes, md5x_kernel_fn kernel)
{
    uint32_t words[16 * MD5X_LANES_MAX] __attribute__((aligned(64)));
    uint32_t digest_a[MD5X_LANES_MAX] __attribute__((aligned(64)));
    uint32_t slot_of_lane[MD5X_LANES_MAX];
    unsigned used = 0;

    for (uint32_t i = 0; i < n; i++) {
        if (lens[i] > MD5X_ONE_BLOCK_KEY_MAX) {
            out[i] = ss_hashkit_md5(keys[i], lens[i]);
            continue;
        }
        md5x_pack_lane(words, lanes, used, keys[i], lens[i]);
        slot_of_lane[used++] = i;
        if (used < lanes)
            continue;
        kernel(words, digest_a);
        for (unsigned l = 0; l < lanes; l++)
            out[slot_of_lane[l]] = digest_a[l];
        used = 0;
    }
    if (used == 0)
        return;
    /* A group costs about two scalar hashes whatever its width (measured on
     * Zen 4: AVX2 and AVX-512F groups alike), so a lone key goes scalar. */
    if (used == 1) {
        out[slot_of_lane[0]] = ss_hashkit_md5(keys[slot_of_lane[0]], lens[slot_of_lane[0]]);
        return;
    }
    for (unsigned l = used; l < lanes; l++)
        md5x_pack_lane(words, lanes, l, "", 0);
    kernel(words, digest_a);
    for (unsigned l = 0; l < used; l++)
        out[slot_of_lane[l]] = digest_a[l];
}

#endif /* __x86_64__ */

/* Bit i set: isa i (enum ss_hash_isa) runs on this CPU. Set once. */
static unsigned md5x_isa_mask;
static pthread_once_t md5x_isa_once = PTHREAD_ONCE_INIT;

static void md5x_detect_isa(void)
{
    unsigned mask = 1u << SS_HASH_ISA_SCALAR;
#if defined(__x86_64__)
    /* libgcc's checks include the OS enabling the wider register state (XCR0). */
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2"))
        mask |= 1u << SS_HASH_ISA_AVX2;
    if (__builtin_cpu_supports("avx512f"))
        mask |= 1u << SS_HASH_ISA_AVX512F;
#endif
    md5x_isa_mask = mask;
}

/*
 * out[i] = ss_hash_key(SS_HASH_MD5, keys[i], lens[i]) for i in [0, n), using
 * `isa` (enum ss_hash_isa; SS_HASH_ISA_BEST picks the widest this CPU runs).
 * keys[i] needs no NUL and may be anything when lens[i] is 0. Returns 0, or
 * -ENOTSUP (out untouched) when isa is unknown or this CPU cannot run it.
 */
int ss_hash_md5_batch(const char *const *keys, const uint32_t *lens, uint32_t n,
                      uint32_t *out, int isa)
{
    pthread_once(&md5x_isa_once, md5x_detect_isa);
    if (isa == SS_HASH_ISA_BEST) {
        isa = (md5x_isa_mask & (1u << SS_HASH_ISA_AVX512F)) ? SS_HASH_ISA_AVX512F
              : (md5x_isa_mask & (1u << SS_HASH_ISA_AVX2))  ? SS_HASH_ISA_AVX2
                                                             : SS_HASH_ISA_SCALAR;
    }
    if (isa < 0 || isa >= 32 || !(md5x_isa_mask & (1u << isa)))
        return -ENOTSUP;
    switch (isa) {
#if defined(__x86_64__)
    case SS_HASH_ISA_AVX2:
        md5x_batch_lanes(keys, lens, n, out, 8, md5x_kernel_avx2);
        return 0;
    case SS_HASH_ISA_AVX512F:
        md5x_batch_lanes(keys, lens, n, out, 16, md5x_kernel_avx512);
        return 0;
#endif
    default:
        md5x_batch_scalar(keys, lens, n, out);
        return 0;
    }
}
