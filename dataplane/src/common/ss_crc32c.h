/*
 * ss_crc32c.h - CRC-32C (Castagnoli), computed by Intel's ISA-L (Debian's
 * libisal), which picks the fastest code the CPU allows (the crc32
 * instruction over three interleaved streams, or carry-less multiplication).
 *
 * Why not zlib's crc32: the store checksums every record it reads back, and
 * zlib's software CRC-32 costs about 0.45 ms per MiB here, most of what a
 * 1 MiB object GET costs. A plain loop of the crc32 instruction still took
 * 125 us per MiB (each step waits for the last); ISA-L takes 45 us. S3's
 * x-amz-checksum-crc32c is the same function.
 */
#ifndef SS_CRC32C_H
#define SS_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* The CRC of p[0, n) continuing from crc (0 to start), as zlib's crc32 chains. */
uint32_t ss_crc32c(uint32_t crc, const void *p, size_t n);

#endif
