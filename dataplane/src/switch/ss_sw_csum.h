/*
 * ss_sw_csum.h - the Internet checksum (RFC 1071) for the fast path, private
 * to ss_sw_*.c.
 *
 * DPDK 22.11's rte_raw_cksum adds 16-bit words one at a time; a request and
 * its reply are summed on every hit, so here 32-bit words go into a 64-bit
 * accumulator (no carry can be lost below 2^32 words) and the sum is folded
 * once. The one's-complement sum is byte-order independent as long as every
 * word is taken as it lies in memory and every buffer starts at an even
 * offset from the start of what is being checksummed.
 */
#ifndef SS_SW_CSUM_H
#define SS_SW_CSUM_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <rte_ip.h>
#include <rte_udp.h>

/* Add len bytes at buf to the running sum (len odd only for a last piece). */
static inline uint64_t sw_csum_add(uint64_t sum, const void *buf, size_t len)
{
    const unsigned char *p = buf;
    while (len >= 16) {
        uint32_t w[4];
        memcpy(w, p, 16);
        sum += (uint64_t)w[0] + w[1] + w[2] + w[3];
        p += 16;
        len -= 16;
    }
    while (len >= 4) {
        uint32_t w;
        memcpy(&w, p, 4);
        sum += w;
        p += 4;
        len -= 4;
    }
    if (len >= 2) {
        uint16_t w;
        memcpy(&w, p, 2);
        sum += w;
        p += 2;
        len -= 2;
    }
    if (len) {
        uint16_t w = 0;
        memcpy(&w, p, 1); /* the odd byte, zero-padded where it lies */
        sum += w;
    }
    return sum;
}

/* Fold a running sum to 16 bits (not complemented). */
static inline uint16_t sw_csum_fold(uint64_t sum)
{
    sum = (sum & 0xffffffffu) + (sum >> 32);
    sum = (sum & 0xffffffffu) + (sum >> 32);
    sum = (sum & 0xffffu) + (sum >> 16);
    sum = (sum & 0xffffu) + (sum >> 16);
    return (uint16_t)sum;
}

/* IPv4 pseudo-header of a UDP datagram of l4_len bytes (network order fields). */
static inline uint64_t sw_csum_pseudo(const struct rte_ipv4_hdr *ip, uint16_t l4_len_be)
{
    return (uint64_t)ip->src_addr + ip->dst_addr +
           rte_cpu_to_be_16((uint16_t)ip->next_proto_id) + l4_len_be;
}

/* ~sum of a 20-byte IPv4 header: 0 when its checksum is right, and the value
 * to store when its checksum field is zero. */
static inline uint16_t sw_ipv4_cksum(const struct rte_ipv4_hdr *ip)
{
    return (uint16_t)~sw_csum_fold(sw_csum_add(0, ip, sizeof(*ip)));
}

/* ~sum of a UDP datagram and its pseudo-header: 0 when its checksum (not
 * 0) is right. */
static inline uint16_t sw_udp_check(const struct rte_ipv4_hdr *ip, const struct rte_udp_hdr *udp)
{
    uint16_t len = rte_be_to_cpu_16(udp->dgram_len);
    return (uint16_t)~sw_csum_fold(sw_csum_add(sw_csum_pseudo(ip, udp->dgram_len), udp, len));
}

/* The UDP checksum to store, from the sum of the pseudo-header and the
 * datagram (its checksum field counted as zero). */
static inline uint16_t sw_udp_cksum_of_sum(uint64_t sum)
{
    uint16_t c = (uint16_t)~sw_csum_fold(sum);
    return c ? c : 0xffff; /* 0 would mean "no checksum" (RFC 768) */
}

/* The checksum to store in a UDP header whose checksum field is zero. */
static inline uint16_t sw_udp_cksum(const struct rte_ipv4_hdr *ip, const struct rte_udp_hdr *udp)
{
    uint16_t len = rte_be_to_cpu_16(udp->dgram_len);
    return sw_udp_cksum_of_sum(sw_csum_add(sw_csum_pseudo(ip, udp->dgram_len), udp, len));
}

#endif
