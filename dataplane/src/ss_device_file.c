/*
 * ss_device_file.c - the device backend for regular files and raw block
 * devices, through pread/pwrite.
 *
 * Files are extended sparsely to the configured size so a 1 GiB store costs
 * nothing until it is written. The page cache is kept (no O_DIRECT) because on
 * the kernel-socket path a device hit is then a memcpy; the SPDK backend is
 * the one that bypasses the kernel.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ss_device.h"

struct ss_device_file {
    struct ss_device dev;
    int fd;
    char path[];
};

static int file_read(struct ss_device *dev, uint64_t off, void *buf, size_t len)
{
    struct ss_device_file *f = (struct ss_device_file *)dev;
    char *p = buf;
    while (len) {
        ssize_t n = pread(f->fd, p, len, (off_t)off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0) /* past the end of a sparse file: reads as zeros */
            return memset(p, 0, len), 0;
        p += n;
        off += (uint64_t)n;
        len -= (size_t)n;
    }
    return 0;
}

static int file_write(struct ss_device *dev, uint64_t off, const void *buf, size_t len)
{
    struct ss_device_file *f = (struct ss_device_file *)dev;
    const char *p = buf;
    while (len) {
        ssize_t n = pwrite(f->fd, p, len, (off_t)off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        off += (uint64_t)n;
        len -= (size_t)n;
    }
    return 0;
}

static int file_sync(struct ss_device *dev)
{
    struct ss_device_file *f = (struct ss_device_file *)dev;
    return fdatasync(f->fd) ? -errno : 0;
}

static void file_close(struct ss_device *dev)
{
    struct ss_device_file *f = (struct ss_device_file *)dev;
    if (f->fd >= 0)
        close(f->fd);
    free(f);
}

static const struct ss_device_ops file_ops = {
    .read = file_read,
    .write = file_write,
    .sync = file_sync,
    .close = file_close,
};

/*
 * Open a regular file (created and sparsely extended when `create` is set)
 * or a raw block device of at least `size` bytes. Returns NULL with a message
 * naming the path and the remedy.
 */
struct ss_device *ss_device_file_open(const char *path, uint64_t size, int create,
                                      char *err, size_t errlen)
{
    int flags = O_RDWR | O_CLOEXEC | (create ? O_CREAT : 0);
    int fd = open(path, flags, 0600);
    if (fd < 0) {
        snprintf(err, errlen, "cannot open device %s: %s; check storage.devices[].path",
                 path, strerror(errno));
        return NULL;
    }
    struct stat sb;
    if (fstat(fd, &sb) < 0) {
        snprintf(err, errlen, "cannot stat device %s: %s", path, strerror(errno));
        close(fd);
        return NULL;
    }
    const char *kind = "file";
    uint64_t have;
    if (S_ISBLK(sb.st_mode)) {
        kind = "block";
        if (ioctl(fd, BLKGETSIZE64, &have) < 0) {
            snprintf(err, errlen, "cannot read the size of block device %s: %s", path,
                     strerror(errno));
            close(fd);
            return NULL;
        }
    } else if (S_ISREG(sb.st_mode)) {
        have = (uint64_t)sb.st_size;
        if (have < size && create) {
            if (ftruncate(fd, (off_t)size) < 0) {
                snprintf(err, errlen, "cannot size device file %s to %llu bytes: %s; free "
                         "disk space or lower the device size", path,
                         (unsigned long long)size, strerror(errno));
                close(fd);
                return NULL;
            }
            have = size;
        }
    } else {
        snprintf(err, errlen, "device %s is neither a regular file nor a block device", path);
        close(fd);
        return NULL;
    }
    if (have < size) {
        snprintf(err, errlen, "device %s holds %llu bytes but the config asks for %llu; "
                 "use a larger device or a smaller size", path, (unsigned long long)have,
                 (unsigned long long)size);
        close(fd);
        return NULL;
    }
    size_t plen = strlen(path) + 1;
    struct ss_device_file *f = calloc(1, sizeof(*f) + plen);
    if (!f) {
        snprintf(err, errlen, "out of memory opening device %s", path);
        close(fd);
        return NULL;
    }
    memcpy(f->path, path, plen);
    f->fd = fd;
    f->dev.ops = &file_ops;
    f->dev.kind = kind;
    f->dev.size = size;
    f->dev.block_size = 4096;
    f->dev.priv = f;
    return &f->dev;
}
