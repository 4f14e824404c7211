/*
 * ss_device.h - the block-device interface the store writes segments through.
 *
 * A device is a byte-addressed range with a block size. The file backend
 * (regular file or raw block device, pread/pwrite) lives in ss_device_file.c;
 * the SPDK bdev backend implements the same ops table. Reads and writes are
 * whole segments or single records, so every backend sees large, aligned I/O
 * on the write side.
 *
 * Alignment: a device with `align` > 1 (O_DIRECT files and block devices, and
 * SPDK, whose DMA buffers have the same rule) wants offsets, lengths and
 * buffers that are multiples of align. The store's hot paths (segment
 * flushes, record reads) issue only such I/O; a backend may bounce other
 * reads and misaligned buffers through a buffer of its own (slow, for the
 * superblock), but refuses a write whose offset or length is misaligned
 * (-EINVAL), since a read-modify-write would race the log's own writes.
 */
#ifndef SS_DEVICE_H
#define SS_DEVICE_H

#include <stddef.h>
#include <stdint.h>

struct ss_device;

struct ss_device_ops {
    /* Read len bytes at off into buf. Returns 0 or -errno. */
    int (*read)(struct ss_device *dev, uint64_t off, void *buf, size_t len);
    /* Write len bytes at off. Returns 0 or -errno. */
    int (*write)(struct ss_device *dev, uint64_t off, const void *buf, size_t len);
    /* Make completed writes durable. Returns 0 or -errno. */
    int (*sync)(struct ss_device *dev);
    void (*close)(struct ss_device *dev);
};

struct ss_device {
    const struct ss_device_ops *ops;
    const char *kind;      /* "file", "block", "spdk" */
    uint64_t size;         /* usable bytes */
    uint32_t block_size;   /* alignment the backend prefers */
    void *priv;
    /* Appended (direct I/O): alignment the backend requires; 0 or 1 = none. */
    uint32_t align;
};

/* Flags of ss_device_file_open_flags (appended with direct I/O). */
#define SS_DEVICE_CREATE 0x1u /* create or extend a regular file to the size */
#define SS_DEVICE_DIRECT 0x2u /* O_DIRECT: no page cache, every I/O aligned */

/*
 * Open (creating or extending when `create` is set) a file, or open a raw
 * block device, of at least `size` bytes. Returns a device or NULL with a
 * message in err that names the path and what to do.
 */
struct ss_device *ss_device_file_open(const char *path, uint64_t size,
                                      int create, char *err, size_t errlen);

/*
 * As ss_device_file_open, with SS_DEVICE_* flags. With SS_DEVICE_DIRECT the
 * device is opened O_DIRECT and probed with one aligned read; a file system
 * that refuses direct I/O (tmpfs) gives NULL and a message naming the path
 * and the direct_io setting.
 */
struct ss_device *ss_device_file_open_flags(const char *path, uint64_t size, unsigned flags,
                                            char *err, size_t errlen);

#endif
