"""cffi build script for the C data plane (out-of-line API mode).

setup.py names `dataplane/_build.py:ffibuilder`; `pip install .` compiles every
file in dataplane/src/ into the private module `dataplane._fastpath`.
"""

import glob
import os

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
INCLUDE = os.path.join(HERE, "include")
SOURCES = sorted(glob.glob(os.path.join(HERE, "src", "*.c")))

ffibuilder = FFI()
with open(os.path.join(INCLUDE, "ss_api.cdef.h"), encoding="utf-8") as cdef:
    ffibuilder.cdef(cdef.read())

# Paths relative to the project root keep the build reproducible.
ROOT = os.path.dirname(HERE)
ffibuilder.set_source(
    "dataplane._fastpath",
    '#include "ss_api.h"',
    sources=[os.path.relpath(s, ROOT) for s in SOURCES],
    include_dirs=[os.path.relpath(INCLUDE, ROOT)],
    libraries=["lmdb", "z", "pthread"],
    extra_compile_args=[
        "-std=gnu11",
        "-O2",
        "-g",
        "-Wall",
        "-Wextra",
        "-Wno-unused-parameter",
        "-Wno-missing-field-initializers",
        "-fno-strict-aliasing",
    ],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
