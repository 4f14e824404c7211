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

/* cffi: begin */
struct ss_device;
/* cffi: end */

struct ss_device_ops {
    /* Read len bytes at off into buf. Returns 0 or -errno. */
    int (*read)(struct ss_device *dev, uint64_t off, void *buf, size_t len);
    /* Write len bytes at off. Returns 0 or -errno. */
    int (*write)(struct ss_device *dev, uint64_t off, const void *buf, size_t len);
    /* Make completed writes durable. Returns 0 or -errno. */
    int (*sync)(struct ss_device *dev);
    void (*close)(struct ss_device *dev);
    /* Appended (asynchronous reads): read only if that cannot block (the
     * bytes are in the page cache): 0, -EAGAIN, or -errno. NULL: never. */
    int (*read_nowait)(struct ss_device *dev, uint64_t off, void *buf, size_t len);
    /* Appended (polled devices, SPDK): start a read of len bytes at off into
     * buf on this thread's queue; done(arg, res) runs from poll on this
     * thread, res the bytes read or -errno. 0, -EAGAIN (full: read it now),
     * or -errno. NULL: the device has no asynchronous reads of its own. */
    int (*read_start)(struct ss_device *dev, uint64_t off, void *buf, size_t len,
                      void (*done)(void *arg, int res), void *arg);
    /* Run the completions of this thread's reads; how many ran. */
    unsigned (*poll)(struct ss_device *dev);
};

struct ss_device {
    const struct ss_device_ops *ops;
    const char *kind;      /* "file", "block", "spdk" */
    uint64_t size;         /* usable bytes */
    uint32_t block_size;   /* alignment the backend prefers */
    void *priv;
    /* Appended (direct I/O): alignment the backend requires; 0 or 1 = none. */
    uint32_t align;
    /* Appended (SPDK data path): how messages name the device (a path, or
     * the NVMe-oF namespace); owned by the device. */
    const char *name;
    /* Appended (direct segment writes): writes whose offset, length and
     * buffer are multiples of this bypass the page cache even though reads
     * use it (a file opened without direct_io); 0 or 1 = no such path. The
     * log pads its writes to it as it does to align. */
    uint32_t write_align;
};

/* Flags of ss_device_file_open_flags (appended with direct I/O). */
#define SS_DEVICE_CREATE 0x1u /* create or extend a regular file to the size */
#define SS_DEVICE_DIRECT 0x2u /* O_DIRECT: no page cache, every I/O aligned */
/* Without SS_DEVICE_DIRECT: segment writes around the page cache (write_align) */
#define SS_DEVICE_DIRECT_WRITES 0x4u

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

/* The descriptor of a file or block device (for asynchronous reads through
 * io_uring), or -1 for a device of another kind. */
int ss_device_file_fd(const struct ss_device *dev);

/*
 * ---- SPDK (ss_device_spdk.c) ----
 *
 * SPDK is neither linked nor included: SmartSwitch must build and run where
 * it is absent. The control plane dlopens SPDK's shared libraries (cffi ABI
 * mode, spdk_bindings/datapath.py) and hands C this table of their entry
 * points. SPDK's objects are opaque pointers here; the only SPDK layouts C
 * relies on are the NVMe completion's status word (fixed by the NVMe spec)
 * and struct spdk_env_opts, which ss_spdk_env_start checks against the
 * library's version (env_so_major) and refuses when it does not know it.
 */
/* cffi: begin */
struct ss_spdk_entry_points {
    uint32_t env_so_major;         /* N of libspdk_env_dpdk.so.N */
    const char *version;           /* SPDK's version as found, for messages */
    void (*env_opts_init)(void *opts);
    int (*env_init)(const void *opts);
    /* Attach to an EAL this process already started (switch mode). */
    int (*env_dpdk_post_init)(_Bool legacy_mem);
    int (*transport_id_parse)(void *trid, const char *str);
    void *(*connect)(const void *trid, const void *opts, size_t opts_size);
    int (*detach)(void *ctrlr);
    int32_t (*ctrlr_process_admin_completions)(void *ctrlr);
    void *(*ctrlr_get_ns)(void *ctrlr, uint32_t nsid);
    _Bool (*ns_is_active)(void *ns);
    uint32_t (*ns_get_sector_size)(void *ns);
    uint64_t (*ns_get_num_sectors)(void *ns);
    uint32_t (*ns_get_max_io_xfer_size)(void *ns);
    void *(*ctrlr_alloc_io_qpair)(void *ctrlr, const void *opts, size_t opts_size);
    int (*ctrlr_free_io_qpair)(void *qpair);
    int (*ns_cmd_read)(void *ns, void *qpair, void *buf, uint64_t lba, uint32_t lba_count,
                       void (*cb)(void *arg, const void *cpl), void *arg, uint32_t io_flags);
    int (*ns_cmd_write)(void *ns, void *qpair, void *buf, uint64_t lba, uint32_t lba_count,
                        void (*cb)(void *arg, const void *cpl), void *arg, uint32_t io_flags);
    int (*ns_cmd_flush)(void *ns, void *qpair, void (*cb)(void *arg, const void *cpl),
                        void *arg);
    int32_t (*qpair_process_completions)(void *qpair, uint32_t max_completions);
};

/*
 * Start SPDK's environment (DPDK's EAL) in this process, once: mem_mb of
 * memory, without hugepages when no_huge (then also without PCI). The
 * calling thread's CPU affinity is restored afterwards (the EAL pins it to
 * its main core, and every thread created later would inherit that). When
 * switch mode already started the EAL (ss_switch_eal_ready), a process can
 * have only one, so SPDK attaches to it (spdk_env_dpdk_post_init: its PCI
 * drivers, memory maps and vtophys over the EAL's memory) and mem_mb is
 * already part of the EAL's -m; no_huge must then be what the EAL was
 * started with (--no-huge with --legacy-mem, as SPDK's own init does). The
 * table is copied. Returns 0, -EALREADY (started before: the first table
 * stays), or -errno with err naming what failed (a NULL entry point, an
 * unknown SPDK version, the EAL's refusal).
 */
int ss_spdk_env_start(const struct ss_spdk_entry_points *ep, const char *app_name,
                      uint32_t mem_mb, int no_huge, char *err, size_t errlen);

/*
 * Connect to an NVMe-oF controller with SPDK's user-space NVMe driver and
 * open namespace nsid as a device. trid is SPDK's transport-id string
 * ("trtype:TCP adrfam:IPv4 traddr:127.0.0.1 trsvcid:4420 subnqn:..."); only
 * TCP is accepted: it reads and writes the store's own buffers (no DMA
 * memory, no bounce copy), which PCIe and RDMA would not allow. Each thread
 * that does I/O gets its own I/O queue pair (created at its first I/O, freed
 * at close) and polls its completions itself until the I/O completes or
 * SS_SPDK_IO_TIMEOUT_MS passes (-ETIMEDOUT). A background thread polls the
 * admin queue (NVMe-oF keep-alive). align and block_size are the sector
 * size. Returns NULL with err naming the namespace and what to do.
 */
struct ss_device *ss_device_spdk_open(const char *trid, uint32_t nsid, char *err,
                                      size_t errlen);

#define SS_SPDK_IO_TIMEOUT_MS 10000u

/*
 * ---- SPDK inside the appliance (ss_spdk_embedded.c) ----
 *
 * storage.spdk.mode: embedded. SPDK's thread library, its subsystems (bdev,
 * lvol, NVMe, accel, sock, ...) and its JSON-RPC server run in this
 * process, on SPDK threads that our own threads poll: no reactor of SPDK's
 * takes over. The entry points come, like the table above, from SPDK's
 * shared libraries opened by the control plane; the modules (bdev_aio,
 * bdev_malloc, bdev_lvol, bdev_nvme, ...) register themselves when loaded.
 */
struct ss_spdk_embedded_ep {
    int (*thread_lib_init)(void *new_thread_fn, size_t ctx_sz);
    void *(*thread_create)(const char *name, const void *cpumask);
    void (*set_thread)(void *thread);
    int (*thread_poll)(void *thread, uint32_t max_msgs, uint64_t now);
    int (*thread_exit)(void *thread);
    _Bool (*thread_is_exited)(void *thread);
    void (*thread_destroy)(void *thread);
    int (*thread_send_msg)(const void *thread, void (*fn)(void *ctx), void *ctx);
    void (*subsystem_init)(void (*cb)(int rc, void *ctx), void *ctx);
    void (*subsystem_fini)(void (*cb)(void *ctx), void *ctx);
    int (*rpc_initialize)(const char *listen_addr, const void *opts);
    void (*rpc_finish)(void);
    void (*rpc_set_state)(uint32_t state_mask);
    int (*rpc_get_method_state_mask)(const char *method, uint32_t *state_mask);
    void (*rpc_register_method)(const char *method,
                                void (*handler)(void *request, const void *params),
                                uint32_t state_mask);
    void (*jsonrpc_send_bool_response)(void *request, _Bool value);
    int (*bdev_open_ext)(const char *name, _Bool write,
                         void (*event_cb)(int type, void *bdev, void *ctx), void *ctx,
                         void **desc);
    void (*bdev_close)(void *desc);
    void *(*bdev_desc_get_bdev)(void *desc);
    uint32_t (*bdev_get_block_size)(const void *bdev);
    uint64_t (*bdev_get_num_blocks)(const void *bdev);
    void *(*bdev_get_io_channel)(void *desc);
    void (*put_io_channel)(void *ch);
    int (*bdev_read)(void *desc, void *ch, void *buf, uint64_t offset, uint64_t nbytes,
                     void (*cb)(void *bdev_io, _Bool success, void *arg), void *arg);
    int (*bdev_write)(void *desc, void *ch, void *buf, uint64_t offset, uint64_t nbytes,
                      void (*cb)(void *bdev_io, _Bool success, void *arg), void *arg);
    int (*bdev_flush)(void *desc, void *ch, uint64_t offset, uint64_t length,
                      void (*cb)(void *bdev_io, _Bool success, void *arg), void *arg);
    void (*bdev_free_io)(void *bdev_io);
    void *(*dma_zmalloc)(size_t size, size_t align, uint64_t *unused);
    void (*dma_free)(void *buf);
};

/*
 * Start SPDK in this process (its environment must be started already:
 * ss_spdk_env_start): the thread library, an app thread polled by a thread
 * of ours named ss-spdk, every registered subsystem, and the JSON-RPC server
 * on rpc_socket (a Unix socket path), so that provisioning and SPDK's own
 * rpc.py talk to the appliance as they talk to spdk_tgt. Returns 0 once the
 * subsystems are up and the server listens, or -errno with err naming what
 * failed. Once per process.
 */
int ss_spdk_embedded_start(const struct ss_spdk_embedded_ep *ep, const char *rpc_socket,
                           char *err, size_t errlen);
/* Stop the RPC server and the subsystems, then the app thread. */
void ss_spdk_embedded_stop(void);
/*
 * Open bdev `name` (a pool's lvol) of the embedded SPDK as a device. Each
 * thread that does I/O gets an SPDK thread and an I/O channel of its own,
 * and polls them until its I/O completes; buffers go through DMA-able
 * memory. Returns NULL with err naming the bdev and what to do.
 */
struct ss_device *ss_device_spdk_bdev_open(const char *name, char *err, size_t errlen);

/* For the binding, which holds a device only until it hands it to a store:
 * close one never handed over; read its size and block size. */
void ss_device_close(struct ss_device *dev);
uint64_t ss_device_size(struct ss_device *dev);
uint32_t ss_device_block_size(struct ss_device *dev);
/* cffi: end */

#endif
