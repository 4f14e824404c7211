/*
 * flush_snapshot.c - the periodic flush of the open segment writes without
 * the log lock while appends go on into the same buffer. The block it ends
 * in must be written as it was when the flush began: taken from the live
 * buffer, it could catch a record half appended with a whole one after it,
 * and after a crash before the next flush the whole one's entry would be
 * out of every reclaim walk's reach (the walk stops at the torn header).
 *
 * The scenario wraps the device's write so that a second thread of the
 * store appends while the flush's write is under way, then reads the block
 * back: past the flush's end it must hold nothing but zeros. After a close
 * and a reopen both records read back.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pinned_util.h"
#include "store/ss_store_internal.h"

void scenario_flush_snapshot(const char *dir);

static struct t_store *g_store;
static struct ss_store_thread g_appender;
static struct ss_counters g_appender_ctr;
static const struct ss_device_ops *g_real_ops;
static bool g_appended;

/* The device's write, with an append by another thread at the first write
 * a flush makes without the log lock. */
static int write_with_an_append(struct ss_device *dev, uint64_t off, const void *buf, size_t len)
{
    if (g_store->st->log.flushing && !g_appended) {
        g_appended = true;
        int rc = t_write(&g_appender, 'c', 1, 0, 1500, 0);
        CHECK(rc == 0, "the append during the flush: %d", rc);
    }
    return g_real_ops->write(dev, off, buf, len);
}

void scenario_flush_snapshot(const char *dir)
{
    struct t_store s;
    t_open(&s, dir, T_SEGMENTS, 0);
    g_store = &s;
    CHECK(ss_store_thread_init(&g_appender, s.st, &g_appender_ctr) == 0, "thread init");
    CHECK(t_write(&s.t, 'a', 1, 0, 1000, 0) == 0, "write a1");
    struct ss_log *log = &s.st->log;
    pthread_mutex_lock(&log->lock);
    uint32_t head = log->head, to = log->write_off;
    pthread_mutex_unlock(&log->lock);
    uint32_t unit = ss_log_pad_unit(s.st) > 1 ? ss_log_pad_unit(s.st) : 4096;
    CHECK(to % unit != 0, "the flush would end on a block boundary (%u)", to);

    struct ss_device_ops wrapped = *s.st->dev->ops;
    wrapped.write = write_with_an_append;
    g_real_ops = s.st->dev->ops;
    s.st->dev->ops = &wrapped;
    int rc = ss_log_flush(s.st, &s.ctr, 0);
    s.st->dev->ops = g_real_ops;
    CHECK(rc == 0, "flush: %d", rc);
    CHECK(g_appended, "the flush wrote nothing without the log lock");
    pthread_mutex_lock(&log->lock);
    uint32_t end = log->write_off, flushed = log->flushed_off;
    pthread_mutex_unlock(&log->lock);
    CHECK(end > to && flushed == to, "append %u -> %u, flushed to %u", to, end, flushed);

    /* The block the flush ended in, as the device has it now. */
    char device[600];
    snprintf(device, sizeof(device), "%s/device", dir);
    int fd = open(device, O_RDONLY);
    CHECK(fd >= 0, "open %s", device);
    uint32_t block = to - to % unit;
    char *got = malloc(unit);
    CHECK(got != NULL, "malloc");
    CHECK(pread(fd, got, unit, (off_t)(ss_log_seg_off(log, head) + block)) == (ssize_t)unit,
          "read the block back");
    close(fd);
    for (uint32_t i = to - block; i < unit; i++)
        CHECK(got[i] == 0, "byte %u of segment %u is %#x: the flush wrote bytes appended "
              "after it began", block + i, head, (unsigned char)got[i]);
    free(got);

    ss_store_thread_fini(&g_appender);
    t_close(&s);
    t_open(&s, dir, T_SEGMENTS, 0);
    char buf[T_VALUE_MAX];
    uint32_t len = 0, bits = 0, ver = 0;
    CHECK(t_read(&s.t, 'a', 1, buf, &len, &bits) == 0 && t_value_parse(buf, len, 'a', 1, &ver),
          "a1 lost");
    CHECK(t_read(&s.t, 'c', 1, buf, &len, &bits) == 0 && t_value_parse(buf, len, 'c', 1, &ver),
          "c1, appended during the flush, lost at the close");
    t_verify(&s);
    t_close(&s);
    printf("ok flush_snapshot segment=%u flushed=%u appended_to=%u\n", head, to, end);
}
