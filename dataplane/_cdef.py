"""The cffi declarations, taken from the public headers, and the ABI digest of them.

There is no second copy of the declarations cffi sees. Each header in
dataplane/include/ marks the part Python may use:

    /* cffi: begin */
    struct ss_key_info { ... };
    int ss_dataplane_flush(struct ss_dataplane *dp);
    /* cffi: end */

`regions()` collects those parts from ss_api.h and every header it includes,
in the order the C compiler reads them (an included header before the one
that includes it). From them:

- `cdef()` makes what cffi's parser reads, by one rule: cffi reads no
  function-like macros (the X-macro lists behind enums such as
  ss_hash_kind), so the C preprocessor expands the regions; it also drops
  every #define, so the object-like integer constants written in the regions
  (SS_LATENCY_BUCKETS) are passed on as they are.
- `abi_stamp()` is a 32-bit digest of the regions with comments and
  whitespace dropped. dataplane/_build.py compiles it in (ss_abi_version());
  dataplane/fastpath.py computes it again from the headers installed beside
  it and refuses a module built from other declarations.

Only the standard library is used here: fastpath.py imports this module
without cffi's build machinery, and _build.py loads it by path.

`python dataplane/_cdef.py` prints the assembled cdef and its digest.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import subprocess
import sys
import sysconfig

INCLUDE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "include")
ENTRY = "ss_api.h"
BEGIN = "/* cffi: begin */"
END = "/* cffi: end */"

_INCLUDE_RE = re.compile(r'^[ \t]*#[ \t]*include[ \t]+"([^"]+)"', re.M)
_INT_DEFINE_RE = re.compile(
    r"^[ \t]*#[ \t]*define[ \t]+(\w+)[ \t]+((?:0[xX][0-9a-fA-F]+|[0-9]+)[uUlL]*)"
    r"[ \t]*(?:/\*.*?\*/|//.*)?[ \t]*$", re.M)
_COMMENT_RE = re.compile(r"/\*.*?\*/|//[^\n]*", re.S)


class CdefError(Exception):
    """The headers' cffi markers are wrong (the message names the file and line)."""


def _marked(path: str, text: str) -> list[str]:
    """The text between each BEGIN and END line of one header, in order."""
    parts: list[str] = []
    body: list[str] = []
    start: int | None = None
    for lineno, line in enumerate(text.splitlines(keepends=True), 1):
        mark = line.strip()
        if mark == BEGIN:
            if start is not None:
                raise CdefError(f"{path}:{lineno}: {BEGIN} inside the region opened at line "
                                f"{start}; close it with {END} first")
            start, body = lineno, []
        elif mark == END:
            if start is None:
                raise CdefError(f"{path}:{lineno}: {END} without a {BEGIN} before it")
            parts.append("".join(body))
            start = None
        elif start is not None:
            body.append(line)
    if start is not None:
        raise CdefError(f"{path}:{start}: {BEGIN} is never closed with {END}")
    return parts


def regions(include_dir: str = INCLUDE, entry: str = ENTRY) -> list[tuple[str, str]]:
    """(header, marked text) of entry and every header it includes, as the compiler reads them.

    Only `#include "..."` lines are followed; each names a header in include_dir
    (what Python compiles against may not reach into the planes' folders).

    Raises:
        CdefError: a header is missing or its markers do not pair up.
    """
    out: list[tuple[str, str]] = []
    seen: set[str] = set()

    def visit(name: str, included_from: str) -> None:
        if name in seen:
            return
        seen.add(name)
        path = os.path.join(include_dir, name)
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as exc:
            raise CdefError(f"{included_from}: includes {name}, which is not in "
                            f"{include_dir} ({exc.strerror})") from None
        for inc in _INCLUDE_RE.findall(text):
            visit(inc, path)
        out.extend((name, part) for part in _marked(path, text))

    visit(entry, include_dir)
    return out


def normalise(text: str) -> str:
    """Declarations with comments dropped and every run of whitespace one space."""
    return " ".join(_COMMENT_RE.sub(" ", text).split())


def abi_stamp(parts: list[tuple[str, str]]) -> int:
    """32-bit digest of the declarations; a comment or layout edit leaves it as it was."""
    text = "\n".join(normalise(part) for _, part in parts)
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)


def _preprocessor() -> list[str]:
    """The C compiler the extension is built with, as a preprocessor."""
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    return shlex.split(cc) + ["-E", "-P", "-undef", "-nostdinc", "-x", "c", "-"]


def cdef(parts: list[tuple[str, str]]) -> str:
    """The declarations as cffi's parser reads them (see the module docstring).

    Raises:
        CdefError: the preprocessor failed (its message is included).
    """
    text = "".join(f"/* {name} */\n{part}" for name, part in parts)
    defines = [f"#define {name} {value}" for name, value in _INT_DEFINE_RE.findall(text)]
    try:
        run = subprocess.run(_preprocessor(), input=text, capture_output=True, text=True,
                             check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        raise CdefError(f"preprocessing the cffi regions failed: {detail}") from None
    body = "\n".join(line for line in run.stdout.splitlines() if line.strip())
    return "\n".join(defines) + "\n" + body + "\n"


if __name__ == "__main__":
    found = regions()
    sys.stdout.write(cdef(found))
    print(f"/* abi stamp 0x{abi_stamp(found):08x} */")
