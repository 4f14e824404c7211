"""SPDK inside the appliance (`storage.spdk.mode: embedded`): no spdk_tgt process.

The appliance loads SPDK's thread library, its bdev layer with the modules it serves
from (aio, uring, malloc, lvol, NVMe, error) and its JSON-RPC server, and runs them on
SPDK threads that its own threads poll (dataplane/src/device/ss_spdk_embedded.c). The RPC
server listens on `storage.spdk.rpc_socket`, so provisioning (`spdk_bindings.provision`,
through the `spdk` package's client) and an operator's own `rpc.py` talk to the appliance
exactly as they talk to spdk_tgt; the data path opens each pool's lvol bdev directly:

    dp = SpdkDataPath.load()                  # the libraries (datapath.py)
    dp.start_env(mem_mb=1024, no_huge=True)
    spdk = EmbeddedSpdk.start(dp, "/var/tmp/spdk.sock")
    ...provision through the socket as with spdk_tgt...
    dev = spdk.open_bdev(lvol_uuid)           # -> cdata `void *` (a struct ss_device *)
"""

from __future__ import annotations

from typing import Any

from spdk_bindings.datapath import _ROOTS, SpdkDataPath, SpdkDataPathError, SpdkUnavailable

_ERR_LEN = 1024

# Loaded (RTLD_GLOBAL) after datapath.py's roots. The event_* libraries register the
# subsystems spdk_subsystem_init starts (bdev and what it depends on); the bdev_*
# modules register themselves and their RPCs.
_LIBS = ("libspdk_thread.so", "libspdk_init.so", "libspdk_rpc.so", "libspdk_jsonrpc.so",
         "libspdk_bdev.so", "libspdk_event_bdev.so", "libspdk_bdev_malloc.so",
         "libspdk_bdev_aio.so", "libspdk_bdev_lvol.so", "libspdk_bdev_nvme.so",
         "libspdk_bdev_error.so")
# Present in builds with liburing (--with-uring); loaded when there.
_OPTIONAL_LIBS = ("libspdk_bdev_uring.so",)

# struct ss_spdk_embedded_ep field -> SPDK symbol.
_ENTRY_POINTS = {
    "thread_lib_init": "spdk_thread_lib_init",
    "thread_create": "spdk_thread_create",
    "set_thread": "spdk_set_thread",
    "thread_poll": "spdk_thread_poll",
    "thread_exit": "spdk_thread_exit",
    "thread_is_exited": "spdk_thread_is_exited",
    "thread_destroy": "spdk_thread_destroy",
    "thread_send_msg": "spdk_thread_send_msg",
    "subsystem_init": "spdk_subsystem_init",
    "subsystem_fini": "spdk_subsystem_fini",
    "rpc_initialize": "spdk_rpc_initialize",
    "rpc_finish": "spdk_rpc_finish",
    "rpc_set_state": "spdk_rpc_set_state",
    "rpc_get_method_state_mask": "spdk_rpc_get_method_state_mask",
    "rpc_register_method": "spdk_rpc_register_method",
    "jsonrpc_send_bool_response": "spdk_jsonrpc_send_bool_response",
    "bdev_open_ext": "spdk_bdev_open_ext",
    "bdev_close": "spdk_bdev_close",
    "bdev_desc_get_bdev": "spdk_bdev_desc_get_bdev",
    "bdev_get_block_size": "spdk_bdev_get_block_size",
    "bdev_get_num_blocks": "spdk_bdev_get_num_blocks",
    "bdev_get_io_channel": "spdk_bdev_get_io_channel",
    "put_io_channel": "spdk_put_io_channel",
    "bdev_read": "spdk_bdev_read",
    "bdev_write": "spdk_bdev_write",
    "bdev_flush": "spdk_bdev_flush",
    "bdev_free_io": "spdk_bdev_free_io",
    "dma_zmalloc": "spdk_dma_zmalloc",
    "dma_free": "spdk_dma_free",
}

_started: EmbeddedSpdk | None = None


class EmbeddedSpdk:
    """SPDK running in this process (once per process)."""

    def __init__(self, libs: list[Any], rpc_socket: str) -> None:
        self._libs = libs  # kept: C holds pointers into them
        self.rpc_socket = rpc_socket

    @classmethod
    def start(cls, dp: SpdkDataPath, rpc_socket: str) -> EmbeddedSpdk:
        """Load the bdev layer and start SPDK's subsystems and RPC server on rpc_socket.

        dp's environment must be started (SpdkDataPath.start_env).

        Raises:
            SpdkUnavailable: a library or entry point is missing from the build.
            SpdkDataPathError: SPDK refused to start; the message says why.
        """
        global _started
        if _started is not None:
            if _started.rpc_socket != rpc_socket:
                raise SpdkDataPathError(f"SPDK already runs in this process with its RPC "
                                        f"server on {_started.rpc_socket}, not {rpc_socket}")
            return _started
        from cffi import FFI

        from dataplane import fastpath

        # Only the entry points' addresses are taken here (C calls them through the
        # table, typed), so each is declared as a plain function.
        abi = FFI()
        abi.cdef("".join(f"void {symbol}(void);\n" for symbol in _ENTRY_POINTS.values()))
        flags = abi.RTLD_NOW | abi.RTLD_GLOBAL
        libs: list[Any] = []
        base = dp.lib_dir
        for name in (*_ROOTS, *_LIBS, *_OPTIONAL_LIBS):
            path = str(base / name) if base is not None else name
            try:
                libs.append(abi.dlopen(path, flags))
            except OSError as exc:
                if name in _OPTIONAL_LIBS:
                    continue
                raise SpdkUnavailable(
                    f"embedded SPDK needs {name}, which cannot be opened from "
                    f"{base or 'the system path'}: {' '.join(str(exc).split())}. Build SPDK "
                    "--with-shared with its bdev modules (aio, malloc, lvol, nvme, error), "
                    "or use storage.spdk.mode: external with a running spdk_tgt") from None
        ffi, lib = fastpath.load()
        ep = ffi.new("struct ss_spdk_embedded_ep *")
        for field, symbol in _ENTRY_POINTS.items():
            address = _address(abi, libs, symbol)
            if address is None:
                raise SpdkUnavailable(f"SPDK's libraries lack {symbol} (for {field}); "
                                      "embedded mode needs SPDK 24.09 or later")
            setattr(ep, field, ffi.cast(ffi.typeof(getattr(ep, field)), address))
        err = ffi.new("char[]", _ERR_LEN)
        rc = lib.ss_spdk_embedded_start(ep, rpc_socket.encode(), err, _ERR_LEN)
        if rc:
            raise SpdkDataPathError(ffi.string(err).decode("utf-8", "replace")
                                    or f"embedded SPDK did not start (rc {rc})")
        _started = cls(libs, rpc_socket)
        return _started

    def open_bdev(self, name: str) -> Any:
        """Wraps ss_device_spdk_bdev_open(): a pool's lvol bdev as a store device.

        Returns a cdata `void *` (a struct ss_device *) for StoreSettings.device; a
        device never handed to a data plane must go to SpdkDataPath.close_device.

        Raises:
            SpdkDataPathError: no such bdev, or it cannot be opened for writing.
        """
        if "\0" in name:
            raise ValueError("bdev name must not contain NUL")
        from dataplane import fastpath

        ffi, lib = fastpath.load()
        err = ffi.new("char[]", _ERR_LEN)
        dev = lib.ss_device_spdk_bdev_open(name.encode(), err, _ERR_LEN)
        if dev == ffi.NULL:
            raise SpdkDataPathError(ffi.string(err).decode("utf-8", "replace")
                                    or f"cannot open bdev {name}")
        return ffi.cast("void *", dev)

    def stop(self) -> None:
        """Stop the RPC server and SPDK's subsystems (every device closed first)."""
        global _started
        from dataplane import fastpath

        _, lib = fastpath.load()
        lib.ss_spdk_embedded_stop()
        _started = None


def running() -> EmbeddedSpdk | None:
    """The SPDK started in this process, if any."""
    return _started


def _address(abi: Any, libs: list[Any], symbol: str) -> int | None:
    """The address of symbol in whichever of libs defines it."""
    for lib in libs:
        try:
            fn = getattr(lib, symbol)
        except AttributeError:
            continue
        return int(abi.cast("uintptr_t", fn))
    return None
