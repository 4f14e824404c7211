/*
 * ss_device.h - the block-device interface the store writes segments through.
 *
 * A device is a byte-addressed range with a block size. The file backend
 * (regular file or raw block device, pread/pwrite) lives in ss_device_file.c;
 * the SPDK bdev backend implements the same ops table. Reads and writes are
 * whole segments or single records, so every backend sees large, aligned I/O
 * on the write side.
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
};

/*
 * Open (creating or extending when `create` is set) a file, or open a raw
 * block device, of at least `size` bytes. Returns a device or NULL with a
 * message in err that names the path and what to do.
 */
struct ss_device *ss_device_file_open(const char *path, uint64_t size,
                                      int create, char *err, size_t errlen);

#endif
