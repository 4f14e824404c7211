/*
 * ss_crc32c.c - CRC-32C through ISA-L's crc32_iscsi, which keeps the register
 * uninverted: the standard CRC (zlib-style chaining, inverted in and out) is
 * ~crc32_iscsi(p, n, ~crc). It takes an int length, so longer spans go in
 * pieces.
 */
#include <isa-l/crc.h>
#include <limits.h>

#include "ss_crc32c.h"

uint32_t ss_crc32c(uint32_t crc, const void *p, size_t n)
{
    const unsigned char *b = p;
    uint32_t r = ~crc;
    while (n) {
        size_t step = n > (size_t)INT_MAX ? (size_t)1 << 30 : n;
        r = crc32_iscsi((unsigned char *)b, (int)step, r);
        b += step;
        n -= step;
    }
    return ~r;
}
