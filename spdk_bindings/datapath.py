"""The SPDK data path: SPDK's shared libraries, loaded at run time, handed to the C store.

SmartSwitch neither links nor includes SPDK, so it builds and runs where SPDK is absent.
When SPDK is present, `SpdkDataPath.load` opens its shared libraries with cffi in ABI mode
(`ffi.dlopen`, RTLD_GLOBAL; the DPDK and system libraries SPDK's own leave to the
program first), and gives the C data plane a table of
their entry points (`struct ss_spdk_entry_points`, dataplane/include/ss_device.h). The C
side (dataplane/src/device/ss_device_spdk.c) then reaches each pool's lvol, exported by spdk_tgt
over NVMe/TCP, with SPDK's user-space NVMe driver:

    dp = SpdkDataPath.load()              # $SPDK_DIR/build/lib, or the system's
    dp.start_env(mem_mb=256, no_huge=True)
    dev = dp.open_namespace(trid, nsid=1) # -> cdata `void *` (a struct ss_device *)
    settings = StoreSettings(..., device=dev)   # the data plane owns it from here on
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

_ERR_LEN = 1024

# The libraries whose entry points C uses, and the socket implementation the NVMe/TCP
# initiator needs (SPDK's sock modules register themselves when loaded).
_ROOTS = ("libspdk_env_dpdk.so", "libspdk_nvme.so", "libspdk_sock_posix.so")

# ABI-mode declarations: SPDK's objects are opaque pointers here, as in C.
_CDEF = """
void spdk_env_opts_init(void *opts);
int spdk_env_init(const void *opts);
int spdk_env_dpdk_post_init(_Bool legacy_mem);
int spdk_nvme_transport_id_parse(void *trid, const char *str);
void *spdk_nvme_connect(const void *trid, const void *opts, size_t opts_size);
int spdk_nvme_detach(void *ctrlr);
int32_t spdk_nvme_ctrlr_process_admin_completions(void *ctrlr);
void *spdk_nvme_ctrlr_get_ns(void *ctrlr, uint32_t nsid);
_Bool spdk_nvme_ns_is_active(void *ns);
uint32_t spdk_nvme_ns_get_sector_size(void *ns);
uint64_t spdk_nvme_ns_get_num_sectors(void *ns);
uint32_t spdk_nvme_ns_get_max_io_xfer_size(void *ns);
void *spdk_nvme_ctrlr_alloc_io_qpair(void *ctrlr, const void *opts, size_t opts_size);
int spdk_nvme_ctrlr_free_io_qpair(void *qpair);
int spdk_nvme_ns_cmd_read(void *ns, void *qpair, void *buf, uint64_t lba, uint32_t n,
                          void (*cb)(void *, const void *), void *arg, uint32_t io_flags);
int spdk_nvme_ns_cmd_write(void *ns, void *qpair, void *buf, uint64_t lba, uint32_t n,
                           void (*cb)(void *, const void *), void *arg, uint32_t io_flags);
int spdk_nvme_ns_cmd_flush(void *ns, void *qpair, void (*cb)(void *, const void *),
                           void *arg);
int32_t spdk_nvme_qpair_process_completions(void *qpair, uint32_t max_completions);
"""

# struct ss_spdk_entry_points field -> SPDK symbol.
_ENTRY_POINTS = {
    "env_opts_init": "spdk_env_opts_init",
    "env_init": "spdk_env_init",
    "env_dpdk_post_init": "spdk_env_dpdk_post_init",
    "transport_id_parse": "spdk_nvme_transport_id_parse",
    "connect": "spdk_nvme_connect",
    "detach": "spdk_nvme_detach",
    "ctrlr_process_admin_completions": "spdk_nvme_ctrlr_process_admin_completions",
    "ctrlr_get_ns": "spdk_nvme_ctrlr_get_ns",
    "ns_is_active": "spdk_nvme_ns_is_active",
    "ns_get_sector_size": "spdk_nvme_ns_get_sector_size",
    "ns_get_num_sectors": "spdk_nvme_ns_get_num_sectors",
    "ns_get_max_io_xfer_size": "spdk_nvme_ns_get_max_io_xfer_size",
    "ctrlr_alloc_io_qpair": "spdk_nvme_ctrlr_alloc_io_qpair",
    "ctrlr_free_io_qpair": "spdk_nvme_ctrlr_free_io_qpair",
    "ns_cmd_read": "spdk_nvme_ns_cmd_read",
    "ns_cmd_write": "spdk_nvme_ns_cmd_write",
    "ns_cmd_flush": "spdk_nvme_ns_cmd_flush",
    "qpair_process_completions": "spdk_nvme_qpair_process_completions",
}

_MISSING_DEP = re.compile(r"(libspdk_[A-Za-z0-9_]+\.so[.0-9]*): cannot open shared object")


class SpdkUnavailable(Exception):
    """SPDK's shared libraries are not there (or not usable); the message says what was tried."""


class SpdkDataPathError(Exception):
    """SPDK is there but refused: the environment did not start or a namespace did not open."""


# The process-wide state: dlopen'ed libraries are never closed (C keeps their entry
# points), and SPDK's environment starts once per process.
_loaded: SpdkDataPath | None = None
_env_started = False


def transport_id(traddr: str, trsvcid: int | str, subnqn: str, adrfam: str = "IPv4") -> str:
    """SPDK's transport-id string for an NVMe/TCP subsystem."""
    return f"trtype:TCP adrfam:{adrfam} traddr:{traddr} trsvcid:{trsvcid} subnqn:{subnqn}"


def _lib_dir(lib_dir: str | os.PathLike[str] | None) -> tuple[Path | None, str]:
    """Where to look, and how the message names where that came from."""
    if lib_dir is not None:
        return Path(lib_dir), f"lib_dir {lib_dir}"
    spdk_dir = os.environ.get("SPDK_DIR")
    if spdk_dir:
        return Path(spdk_dir) / "build" / "lib", f"SPDK_DIR={spdk_dir}"
    return None, "the system library path (SPDK_DIR is not set)"


def missing_library_path(lib_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """The SPDK library directory (lib_dir, else $SPDK_DIR/build/lib) if this process's
    LD_LIBRARY_PATH lacks it, else None. The dynamic linker reads LD_LIBRARY_PATH only at
    process start, and SPDK's own libraries can only be found through it (see load), so a
    process that will load them from a build tree must be started with it set."""
    where, _ = _lib_dir(lib_dir)
    if where is None:
        return None
    have = [Path(p).resolve() for p in os.environ.get("LD_LIBRARY_PATH", "").split(":") if p]
    return None if where.resolve() in have else where


def _version_text(lib_dir: Path | None, so_path: str) -> str:
    """SPDK's version from the tree's version.h when there is one, else the file name."""
    candidates = []
    if lib_dir is not None:
        candidates = [lib_dir.parent.parent / "include/spdk/version.h",
                      lib_dir.parent / "include/spdk/version.h"]
    for header in candidates:
        try:
            text = header.read_text()
        except OSError:
            continue
        fields = dict(re.findall(r"#define SPDK_VERSION_(MAJOR|MINOR|PATCH|SUFFIX)\s+(\S+)",
                                 text))
        if "MAJOR" in fields and "MINOR" in fields:
            suffix = fields.get("SUFFIX", '""').strip('"')
            return (f"v{int(fields['MAJOR'])}.{int(fields['MINOR']):02d}"
                    f"{'.' + fields['PATCH'] if fields.get('PATCH', '0') != '0' else ''}"
                    f"{suffix}")
    return os.path.basename(so_path)


def _mapped_path(stem: str) -> str | None:
    """The file a loaded library was mapped from (/proc/self/maps), e.g. its .so.N.M."""
    try:
        with open("/proc/self/maps", encoding="utf-8") as maps:
            for line in maps:
                path = line.rstrip("\n").split(maxsplit=5)[-1]
                if os.path.basename(path).startswith(stem + "."):
                    return os.path.realpath(path)
    except OSError:
        return None
    return None


def _check_one_dpdk(maps_path: str = "/proc/self/maps") -> None:
    """Switch mode's EAL is the one SPDK attaches to, so SPDK must run on the same DPDK
    libraries as the data plane; an SPDK built on its own DPDK copy maps a second
    librte_eal, whose state the first never initialised.

    Raises:
        SpdkDataPathError: two different librte_eal files are mapped in this process.
    """
    eals: set[str] = set()
    try:
        with open(maps_path, encoding="utf-8") as maps:
            for line in maps:
                path = line.rstrip("\n").split(maxsplit=5)[-1]
                if os.path.basename(path).startswith("librte_eal.so"):
                    eals.add(os.path.realpath(path))
    except OSError:
        return
    if len(eals) > 1:
        raise SpdkDataPathError(
            f"switch mode and SPDK would use two different DPDKs ({', '.join(sorted(eals))}); "
            "SPDK can only attach to switch mode's EAL when it was built on the same DPDK "
            "(configure SPDK --with-dpdk=<the prefix `pkg-config --variable=prefix libdpdk` "
            "names>, see spdk_bindings/README.md)")


class SpdkDataPath:
    """SPDK's entry points, loaded once per process (see the module docstring)."""

    def __init__(self, ffi_abi: Any, libs: list[Any], lib_dir: Path | None,
                 version: str, env_so_major: int) -> None:
        self._abi = ffi_abi
        self._libs = libs  # kept: C holds pointers into them
        self.lib_dir = lib_dir
        self.version = version
        self.env_so_major = env_so_major

    @classmethod
    def load(cls, lib_dir: str | os.PathLike[str] | None = None) -> SpdkDataPath:
        """dlopen SPDK's libraries: from lib_dir, else $SPDK_DIR/build/lib, else the system.

        Opened RTLD_GLOBAL, dependencies first: the DPDK and system libraries the build's
        pkgconfig lists, then libspdk_env_dpdk, libspdk_nvme, libspdk_sock_posix. SPDK's
        own libraries depend on each other in a circle and are linked BIND_NOW, so the
        dynamic linker must find them by name: with a build tree, the process must start
        with LD_LIBRARY_PATH including the library directory (an installed SPDK in the
        linker's path needs nothing).

        Raises:
            SpdkUnavailable: the libraries are not there or lack an entry point; the
                message names every path tried and what to do.
        """
        global _loaded
        where, origin = _lib_dir(lib_dir)
        if where is not None and not (where / _ROOTS[0]).exists():
            raise SpdkUnavailable(
                f"SPDK's shared libraries are not in {where} (from {origin}): no "
                f"{_ROOTS[0]} there. Point SPDK_DIR at an SPDK tree built with --with-shared "
                "(it has build/lib/libspdk_*.so), or install SPDK's libraries where the "
                "dynamic linker finds them")
        if _loaded is not None:
            if _loaded.lib_dir == where or where is None:
                return _loaded
            raise SpdkUnavailable(f"SPDK is already loaded in this process from "
                                  f"{_loaded.lib_dir or 'the system path'}; a second copy "
                                  f"from {where} cannot be loaded beside it")
        from cffi import FFI

        ffi = FFI()
        ffi.cdef(_CDEF)
        flags = ffi.RTLD_NOW | ffi.RTLD_GLOBAL
        libs: list[Any] = []
        tried: list[str] = []
        if where is not None:
            _open_link_deps(ffi, flags, where, tried)
        for root in _ROOTS:
            path = str(where / root) if where is not None else root
            try:
                libs.append(ffi.dlopen(path, flags))
            except OSError as exc:
                tried.append(f"{path}: {' '.join(str(exc).split())}")
                hint = ("start the process with LD_LIBRARY_PATH including "
                        f"{where}: SPDK's libraries need each other in a circle and are "
                        "linked BIND_NOW, so only the dynamic linker can load them, and "
                        "it reads LD_LIBRARY_PATH at process start"
                        if where is not None and _MISSING_DEP.search(str(exc)) else
                        "point SPDK_DIR at an SPDK tree built with --with-shared (it has "
                        "build/lib/libspdk_*.so), or install SPDK's libraries where the "
                        "dynamic linker finds them")
                raise SpdkUnavailable(f"SPDK's shared libraries are not usable from "
                                      f"{origin}; tried {'; '.join(tried)}. To fix: "
                                      f"{hint}") from None
        for field, symbol in _ENTRY_POINTS.items():
            if not any(_has(lib, symbol) for lib in libs):
                raise SpdkUnavailable(f"SPDK's libraries from {origin} lack {symbol} "
                                      f"(for {field}): an SPDK too old or built without "
                                      "the NVMe driver")
        so_path = _mapped_path("libspdk_env_dpdk.so") or "libspdk_env_dpdk.so"
        match = re.search(r"\.so\.(\d+)", so_path)
        if not match:
            raise SpdkUnavailable(f"cannot tell the version of {so_path} (no .so.N in its "
                                  "name); SmartSwitch checks it before starting SPDK")
        _loaded = cls(ffi, libs, where, _version_text(where, so_path), int(match.group(1)))
        return _loaded

    def _address(self, symbol: str) -> int:
        for lib in self._libs:
            if _has(lib, symbol):
                return int(self._abi.cast("uintptr_t", getattr(lib, symbol)))
        raise SpdkUnavailable(f"SPDK symbol {symbol} vanished")  # checked at load

    def _entry_points(self, ffi: Any, keep: list[Any]) -> Any:
        ep = ffi.new("struct ss_spdk_entry_points *")
        ep.env_so_major = self.env_so_major
        version = ffi.new("char[]", self.version.encode())
        keep.append(version)
        ep.version = version
        for field, symbol in _ENTRY_POINTS.items():
            setattr(ep, field, ffi.cast(ffi.typeof(getattr(ep, field)), self._address(symbol)))
        return ep

    def start_env(self, mem_mb: int = 256, no_huge: bool = True) -> None:
        """Wraps ss_spdk_env_start(): start SPDK's environment once per process.

        A second call does nothing (the first settings stay).

        Raises:
            SpdkDataPathError: SPDK refused (an unknown version, the EAL failed); the
                message says which.
        """
        global _env_started
        if _env_started:
            return
        from dataplane import fastpath

        ffi, lib = fastpath.load()
        if lib.ss_switch_eal_ready():
            _check_one_dpdk()
        keep: list[Any] = []
        ep = self._entry_points(ffi, keep)
        err = ffi.new("char[]", _ERR_LEN)
        rc = lib.ss_spdk_env_start(ep, b"smartswitch", mem_mb, 1 if no_huge else 0, err,
                                   _ERR_LEN)
        if rc not in (0, -114):  # -EALREADY: started by an earlier load in this process
            raise SpdkDataPathError(ffi.string(err).decode("utf-8", "replace")
                                    or f"ss_spdk_env_start failed ({os.strerror(-rc)})")
        _env_started = True

    def open_namespace(self, trid: str, nsid: int = 1) -> Any:
        """Wraps ss_device_spdk_open(): connect over NVMe/TCP and open one namespace.

        Returns:
            a cdata `void *` (a struct ss_device *) for StoreSettings.device. The data
            plane owns it once Dataplane.create is called with it (even if that fails);
            a device never handed over must go to close_device.

        Raises:
            SpdkDataPathError: the environment is not started, or the namespace did not
                open; the message names it and what to check.
        """
        if not isinstance(nsid, int) or isinstance(nsid, bool) or not 1 <= nsid < 2**32:
            raise ValueError(f"nsid must be an integer from 1 to 2**32-1, got {nsid!r}")
        if "\0" in trid:
            raise ValueError("trid must not contain NUL")
        from dataplane import fastpath

        ffi, lib = fastpath.load()
        err = ffi.new("char[]", _ERR_LEN)
        dev = lib.ss_device_spdk_open(trid.encode(), nsid, err, _ERR_LEN)
        if dev == ffi.NULL:
            raise SpdkDataPathError(ffi.string(err).decode("utf-8", "replace")
                                    or f"cannot open SPDK namespace {nsid} of {trid}")
        return ffi.cast("void *", dev)

    @staticmethod
    def device_size(dev: Any) -> int:
        """Wraps ss_device_size(): the namespace's size in bytes."""
        from dataplane import fastpath

        ffi, lib = fastpath.load()
        return int(lib.ss_device_size(ffi.cast("struct ss_device *", dev)))

    @staticmethod
    def device_block_size(dev: Any) -> int:
        """Wraps ss_device_block_size(): the namespace's sector size."""
        from dataplane import fastpath

        ffi, lib = fastpath.load()
        return int(lib.ss_device_block_size(ffi.cast("struct ss_device *", dev)))

    @staticmethod
    def close_device(dev: Any) -> None:
        """Wraps ss_device_close(): for a device never handed to a data plane."""
        from dataplane import fastpath

        ffi, lib = fastpath.load()
        lib.ss_device_close(ffi.cast("struct ss_device *", dev))


# Libraries every process has already (or that cffi cannot open by these names).
_ALWAYS_THERE = {"c", "m", "rt", "dl", "pthread"}


def _open_link_deps(ffi: Any, flags: int, where: Path, tried: list[str]) -> None:
    """Open the DPDK and system libraries SPDK's libraries use without naming them.

    SPDK's shared libraries leave DPDK (and OpenSSL, libuuid, ...) to the program that
    links them; an SPDK build lists those in pkgconfig/spdk_dpdklibs.pc and
    spdk_syslibs.pc, which is what we read. Opened RTLD_GLOBAL before SPDK's own.
    """
    import ctypes.util

    for pc in ("spdk_dpdklibs.pc", "spdk_syslibs.pc"):
        try:
            text = (where / "pkgconfig" / pc).read_text()
        except OSError:
            continue  # an installed SPDK may link them itself
        line = next((ln for ln in text.splitlines() if ln.startswith("Libs:")), "")
        dirs = [Path(t[2:]) for t in line.split() if t.startswith("-L")]
        for name in (t[2:] for t in line.split() if t.startswith("-l")):
            if name in _ALWAYS_THERE:
                continue
            candidates = [str(d / f"lib{name}.so") for d in dirs]
            found = ctypes.util.find_library(name)
            candidates += [found] if found else []
            for path in candidates:
                try:
                    ffi.dlopen(path, flags)
                    break
                except OSError as exc:
                    last = f"{path}: {exc}"
            else:
                tried.append(last if candidates else f"lib{name}.so: not found")
                raise SpdkUnavailable(
                    f"SPDK needs lib{name} ({where / 'pkgconfig' / pc}) but it cannot be "
                    f"opened; tried {'; '.join(tried)}. Install the library SPDK was built "
                    "against (for DPDK on Debian: dpdk-dev)")


def _has(lib: Any, symbol: str) -> bool:
    try:
        getattr(lib, symbol)
    except AttributeError:
        return False
    return True
