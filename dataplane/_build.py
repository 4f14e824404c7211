"""cffi build script for the C data plane (out-of-line API mode).

setup.py names `dataplane/_build.py:ffibuilder`; `pip install .` compiles every
C file under dataplane/src/<plane>/ into the private module `dataplane._fastpath`.
Headers Python compiles against are in dataplane/include/; a plane's own
headers sit in its folder and other planes include them by path
("server/ss_worker.h"), so a reach into another plane shows.

cffi's declarations are not written twice: dataplane/_cdef.py assembles them
from the parts of the public headers marked `/* cffi: begin */ ... /* cffi:
end */`, and their digest is compiled in as SS_ABI_STAMP (ss_abi_version()),
which dataplane/fastpath.py checks against the headers it is installed with.
"""

import glob
import importlib.util
import os
import shlex
import shutil
import subprocess

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
INCLUDE = os.path.join(HERE, "include")
SRC = os.path.join(HERE, "src")


def load_cdef_module():
    """dataplane/_cdef.py, by path: setuptools runs this file outside the package."""
    spec = importlib.util.spec_from_file_location("_ss_cdef", os.path.join(HERE, "_cdef.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def dpdk_flags() -> tuple[list[str], list[str]] | None:
    """(cflags, libs) of libdpdk from pkg-config, or None without DPDK.

    SS_NO_DPDK=1 in the environment builds the stub even when DPDK is there.
    """
    if os.environ.get("SS_NO_DPDK") == "1" or not shutil.which("pkg-config"):
        return None
    try:
        cflags = subprocess.run(["pkg-config", "--cflags", "libdpdk"], check=True,
                                capture_output=True, text=True).stdout
        libs = subprocess.run(["pkg-config", "--libs", "libdpdk"], check=True,
                              capture_output=True, text=True).stdout
    except subprocess.CalledProcessError:
        return None
    return shlex.split(cflags), shlex.split(libs)


# Switch mode (src/switch/) needs DPDK; without it ss_sw_stub.c answers
# -ENOTSUP so socket mode still builds.
DPDK = dpdk_flags()
ALL = sorted(glob.glob(os.path.join(SRC, "*", "*.c")))
SWITCH = os.path.join(SRC, "switch")
STUB = os.path.join(SWITCH, "ss_sw_stub.c")
SOURCES = [s for s in ALL if s != STUB] if DPDK else \
    [s for s in ALL if os.path.dirname(s) != SWITCH] + [STUB]
if DPDK is None:
    print("dataplane/_build.py: pkg-config finds no libdpdk; switch mode is a stub "
          "(install dpdk-dev for dataplane.mode: dpdk)")

# What the C sources link against; tests that build store sources into a
# program of their own (tests/unit/test_store_pinned.py) take it from here.
LIBRARIES = ["lmdb", "z", "uring", "isal", "ssl", "crypto", "pthread"]

_cdef = load_cdef_module()
REGIONS = _cdef.regions(INCLUDE)
ABI_STAMP = _cdef.abi_stamp(REGIONS)

ffibuilder = FFI()
ffibuilder.cdef(_cdef.cdef(REGIONS))

# Paths relative to the project root keep the build reproducible.
ROOT = os.path.dirname(HERE)
ffibuilder.set_source(
    "dataplane._fastpath",
    '#include "ss_api.h"',
    sources=[os.path.relpath(s, ROOT) for s in SOURCES],
    include_dirs=[os.path.relpath(INCLUDE, ROOT), os.path.relpath(SRC, ROOT)],
    libraries=LIBRARIES,
    define_macros=[("SS_ABI_STAMP", f"0x{ABI_STAMP:08x}u")],
    extra_link_args=DPDK[1] if DPDK else [],
    extra_compile_args=(DPDK[0] if DPDK else []) + [
        "-std=gnu11",
        "-O2",
        "-g",
        "-Wall",
        "-Wextra",
        "-Wno-unused-parameter",
        "-Wno-missing-field-initializers",
        "-fno-strict-aliasing",
        "-Werror=implicit-function-declaration",
    ],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
