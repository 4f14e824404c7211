/*
 * ss_base64.h - base64 for meta protocol keys (the `b` flag).
 *
 * Decoding follows memcached's rules so that the same request succeeds or
 * fails the same way: characters outside the alphabet are skipped, the
 * count of alphabet characters must be a non-zero multiple of 4, and
 * decoding stops after the first block that carries '=' padding.
 */
#ifndef SS_BASE64_H
#define SS_BASE64_H

#include <stddef.h>

/* Bytes ss_base64_encode writes for n input bytes (no terminator). */
#define SS_BASE64_ENCODED_LEN(n) ((((n) + 2) / 3) * 4)

/* Encode n bytes of src into out (SS_BASE64_ENCODED_LEN(n) bytes). Returns
 * the number of bytes written. */
size_t ss_base64_encode(const unsigned char *src, size_t n, char *out);

/* Decode n characters of src into out (room for n * 3 / 4 bytes; out may
 * alias src). Returns the decoded length, or 0 when src is not valid. */
size_t ss_base64_decode(const char *src, size_t n, unsigned char *out);

#endif
