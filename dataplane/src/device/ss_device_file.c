/*
 * ss_device_file.c - the device backend for regular files and raw block
 * devices, through pread/pwrite.
 *
 * Files are extended sparsely to the configured size so a 1 GiB store costs
 * nothing until it is written. By default files keep the page cache (a device
 * hit is then a memcpy on the kernel-socket path); direct_io (SS_DEVICE_DIRECT,
 * the default for block devices) opens O_DIRECT so hits measure the device
 * and the store's memory is its own DRAM tier, not the kernel's. Under
 * O_DIRECT the store issues aligned I/O on its hot paths; anything else that
 * is misaligned is bounced here (see ss_device.h).
 *
 * Without direct_io, reads keep the page cache but the log's segment writes
 * still go around it (SS_DEVICE_DIRECT_WRITES, storage.devices[].direct_writes)
 * through a second descriptor opened O_DIRECT where the file system allows
 * (write_align). A buffered write has to find a fresh page for each 4 KiB,
 * and on a virtual machine whose free memory goes back to the host that costs
 * the writing CPU a fault per page (here 380 MB/s to a new file against 5 GB/s
 * rewriting a cached one). Each direct write is then read back into the page
 * cache by readahead (POSIX_FADV_WILLNEED, asynchronous): the device's DMA
 * fills the pages, not a CPU copy, and recent writes stay device hits that
 * need no disk read, as with buffered writes. Records are read from the log's
 * own buffers until written, so no read races the write. Whole-segment reads
 * (the writer's read-back before a reuse) go around the cache too.
 */
#define _GNU_SOURCE /* O_DIRECT */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "ss_device.h"

struct ss_device_file {
    struct ss_device dev;
    int fd;
    int direct_fd; /* O_DIRECT beside a page-cached fd (write_align), or -1 */
    char path[];
};

/* Reads at least this long go around the page cache when they can: whole
 * segments, read once before their reuse, never a record. */
#define DIRECT_READ_MIN (1u << 20)

/* Whether off, len and buf all sit on alignment a (0 or 1: none). */
static int aligned_to(uint32_t a, uint64_t off, const void *buf, size_t len)
{
    uint64_t m = a > 1 ? a - 1 : 0;
    return !((off | (uint64_t)len | (uint64_t)(uintptr_t)buf) & m);
}

/* Whether off, len and buf all sit on the device's alignment. */
static int file_aligned(const struct ss_device *dev, uint64_t off, const void *buf, size_t len)
{
    return aligned_to(dev->align, off, buf, len);
}

/* Can this I/O take direct_fd? */
static int file_direct_ok(const struct ss_device_file *f, uint64_t off, const void *buf,
                          size_t len)
{
    return f->direct_fd >= 0 && aligned_to(f->dev.write_align, off, buf, len);
}

/* pread until len bytes (zeros past the end of a sparse file). 0 or -errno. */
static int file_pread_all(int fd, uint64_t off, char *p, size_t len)
{
    while (len) {
        ssize_t n = pread(fd, p, len, (off_t)off);
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

/*
 * A misaligned read under O_DIRECT: read the enclosing aligned span into a
 * buffer of our own and copy. Off the hot path (superblock, probes).
 */
static int file_read_bounce(struct ss_device_file *f, uint64_t off, void *buf, size_t len)
{
    uint64_t a = f->dev.align;
    uint64_t from = off & ~(a - 1), to = (off + len + a - 1) & ~(a - 1);
    char *tmp = aligned_alloc(a, to - from);
    if (!tmp)
        return -ENOMEM;
    int rc = file_pread_all(f->fd, from, tmp, to - from);
    if (!rc)
        memcpy(buf, tmp + (off - from), len);
    free(tmp);
    return rc;
}

/* pwrite until len bytes are written. 0 or -errno. */
static int file_write_all(int fd, uint64_t off, const char *p, size_t len)
{
    while (len) {
        ssize_t n = pwrite(fd, p, len, (off_t)off);
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

/* An aligned write from a misaligned buffer under O_DIRECT: copy, write. */
static int file_write_bounce(struct ss_device_file *f, uint64_t off, const void *buf,
                             size_t len)
{
    char *tmp = aligned_alloc(f->dev.align, len);
    if (!tmp)
        return -ENOMEM;
    memcpy(tmp, buf, len);
    int rc = file_write_all(f->fd, off, tmp, len);
    free(tmp);
    return rc;
}

static int file_read(struct ss_device *dev, uint64_t off, void *buf, size_t len)
{
    struct ss_device_file *f = (struct ss_device_file *)dev;
    if (len >= DIRECT_READ_MIN && file_direct_ok(f, off, buf, len))
        return file_pread_all(f->direct_fd, off, buf, len);
    if (!file_aligned(dev, off, buf, len))
        return file_read_bounce(f, off, buf, len);
    return file_pread_all(f->fd, off, buf, len);
}

static int file_write(struct ss_device *dev, uint64_t off, const void *buf, size_t len)
{
    struct ss_device_file *f = (struct ss_device_file *)dev;
    if (!file_aligned(dev, off, buf, len)) {
        if (!file_aligned(dev, off, NULL, len))
            return -EINVAL; /* see ss_device.h: no read-modify-write */
        return file_write_bounce(f, off, buf, len);
    }
    if (file_direct_ok(f, off, buf, len)) {
        int rc = file_write_all(f->direct_fd, off, buf, len);
        if (!rc) /* back into the page cache by the device's DMA (see the top) */
            (void)posix_fadvise(f->fd, (off_t)off, (off_t)len, POSIX_FADV_WILLNEED);
        return rc;
    }
    return file_write_all(f->fd, off, buf, len);
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
    if (f->direct_fd >= 0)
        close(f->direct_fd);
    free(f);
}

/* preadv2 with RWF_NOWAIT: whole from the page cache, or -EAGAIN (a part
 * cached is not worth a second read for the rest). */
static int file_read_nowait(struct ss_device *dev, uint64_t off, void *buf, size_t len)
{
    struct ss_device_file *f = (struct ss_device_file *)dev;
    if (dev->align > 1)
        return -EAGAIN; /* O_DIRECT never reads from the page cache */
    struct iovec v = {.iov_base = buf, .iov_len = len};
    ssize_t n = preadv2(f->fd, &v, 1, (off_t)off, RWF_NOWAIT);
    if (n == (ssize_t)len)
        return 0;
    if (n >= 0 || errno == EAGAIN || errno == EOPNOTSUPP)
        return -EAGAIN;
    return -errno;
}

static const struct ss_device_ops file_ops = {
    .read = file_read,
    .write = file_write,
    .sync = file_sync,
    .close = file_close,
    .read_nowait = file_read_nowait,
};

/* The message for a file system or device that refuses O_DIRECT. */
static void direct_refused(char *err, size_t errlen, const char *path, int e)
{
    snprintf(err, errlen, "device %s refuses direct I/O (O_DIRECT: %s), which its "
             "storage.devices[].direct_io: true asks for; set direct_io: false for it, or "
             "put the file on a file system that supports O_DIRECT (tmpfs before Linux "
             "6.6 does not)",
             path, strerror(e));
}

/*
 * Under O_DIRECT: settle the alignment (the logical block size of a block
 * device, at least 4 KiB, which the segment buffers are aligned to) and
 * probe one aligned read, since some file systems accept O_DIRECT at open
 * and refuse it at the first read. 0 or -errno with err filled.
 */
static int direct_setup(struct ss_device_file *f, int is_blk, char *err, size_t errlen)
{
    uint32_t align = 4096;
    int lbs = 0;
    if (is_blk && ioctl(f->fd, BLKSSZGET, &lbs) == 0 && lbs > 4096) {
        snprintf(err, errlen, "block device %s has %d-byte logical blocks; direct_io "
                 "supports up to 4096: set direct_io: false for it", f->path, lbs);
        return -EINVAL;
    }
    char *probe = aligned_alloc(align, align);
    if (!probe) {
        snprintf(err, errlen, "out of memory opening device %s", f->path);
        return -ENOMEM;
    }
    int rc = file_pread_all(f->fd, 0, probe, align);
    free(probe);
    if (rc) {
        direct_refused(err, errlen, f->path, -rc);
        return rc;
    }
    f->dev.align = align;
    return 0;
}

/*
 * A page-cached device's second descriptor for segment writes (see the top):
 * opened O_DIRECT and probed with one aligned read; where the file system
 * refuses either, writes simply stay on the page-cached descriptor.
 */
static void direct_writes_setup(struct ss_device_file *f)
{
    f->direct_fd = -1;
    int fd = open(f->path, O_RDWR | O_CLOEXEC | O_DIRECT);
    if (fd < 0)
        return;
    char *probe = aligned_alloc(4096, 4096);
    if (!probe || file_pread_all(fd, 0, probe, 4096)) {
        free(probe);
        close(fd);
        return;
    }
    free(probe);
    f->direct_fd = fd;
    f->dev.write_align = 4096;
}

/*
 * Open a regular file (created and sparsely extended with SS_DEVICE_CREATE)
 * or a raw block device of at least `size` bytes, O_DIRECT with
 * SS_DEVICE_DIRECT. Returns NULL with a message naming the path and the
 * remedy.
 */
struct ss_device *ss_device_file_open_flags(const char *path, uint64_t size, unsigned flags,
                                            char *err, size_t errlen)
{
    int oflags = O_RDWR | O_CLOEXEC | (flags & SS_DEVICE_CREATE ? O_CREAT : 0);
    int fd = open(path, oflags | (flags & SS_DEVICE_DIRECT ? O_DIRECT : 0), 0600);
    if (fd < 0 && errno == EINVAL && (flags & SS_DEVICE_DIRECT)) {
        direct_refused(err, errlen, path, errno);
        return NULL;
    }
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
        if (have < size && (flags & SS_DEVICE_CREATE)) {
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
    f->dev.name = f->path;
    f->direct_fd = -1;
    if ((flags & SS_DEVICE_DIRECT) && direct_setup(f, S_ISBLK(sb.st_mode), err, errlen)) {
        file_close(&f->dev);
        return NULL;
    }
    if (!(flags & SS_DEVICE_DIRECT) && (flags & SS_DEVICE_DIRECT_WRITES))
        direct_writes_setup(f);
    return &f->dev;
}

/* The page-cached open (see ss_device_file_open_flags). */
struct ss_device *ss_device_file_open(const char *path, uint64_t size, int create,
                                      char *err, size_t errlen)
{
    return ss_device_file_open_flags(path, size, create ? SS_DEVICE_CREATE : 0, err, errlen);
}

int ss_device_file_fd(const struct ss_device *dev)
{
    if (!dev || dev->ops != &file_ops)
        return -1;
    return ((const struct ss_device_file *)dev)->fd;
}
