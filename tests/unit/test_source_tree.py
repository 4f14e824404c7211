"""The shape of the source tree (issue 11, "Done when"): size caps, one-way plane includes, no
thread-local crossing files. Each check lists every offender by file (and line or function).

The scanners are tested on literal snippets first, so a check that passes does so because the
tree is clean, not because the scanner is blind.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DATAPLANE = REPO / "dataplane"
SRC = DATAPLANE / "src"
INCLUDE = DATAPLANE / "include"

MAX_FILE_LINES = 800
MAX_FUNCTION_LINES = 120


def c_files() -> list[Path]:
    return sorted([*SRC.rglob("*.c"), *SRC.rglob("*.h"), *INCLUDE.glob("*.h")])


def source_files() -> list[Path]:
    """C and Python sources the caps apply to."""
    py = [p for d in ("appliance", "web", "spdk_bindings") for p in (REPO / d).rglob("*.py")]
    return sorted([*c_files(), *py, *DATAPLANE.glob("*.py")])


def rel(path: Path) -> str:
    return str(path.relative_to(REPO))


# ---- scanners ---------------------------------------------------------------------------------

_LEXEMES = re.compile(r"""
      (?P<comment>/\*.*?\*/ | //[^\n]*)
    | (?P<string>"(?:\\.|[^"\\\n])*" | '(?:\\.|[^'\\\n])*')
    | (?P<directive>^[ \t]*\#(?:[^\n]*\\\n)*[^\n]*)
    """, re.S | re.M | re.X)


def strip_c(text: str) -> str:
    """The text with comments, string and character literals and preprocessor directives
    blanked out (newlines kept, so line numbers still hold)."""
    def blank(m: re.Match[str]) -> str:
        if m.group("string") is not None:
            return '""'
        return re.sub(r"[^\n]", " ", m.group(0))
    return _LEXEMES.sub(blank, text)


@dataclass(frozen=True)
class Function:
    name: str
    line: int   # the line of the opening brace
    lines: int  # opening brace to closing brace, both included


def functions(text: str) -> list[Function]:
    """Top-level function definitions: a `{` at file scope whose declarator ends in `)`."""
    code = strip_c(text)
    found: list[Function] = []
    depth = 0
    head_start = 0  # where the text before the current top-level `{` begins
    open_at = 0
    name = ""
    for i, ch in enumerate(code):
        if ch == "{":
            if depth == 0:
                head = code[head_start:i]
                open_at = i
                name = ""
                if head.rstrip().endswith(")") and "=" not in head:
                    names = [n for n in re.findall(r"(\w+)\s*\(", head) if not n.startswith("__")]
                    name = names[0] if names else "?"
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                if name:
                    first = code.count("\n", 0, open_at) + 1
                    last = code.count("\n", 0, i) + 1
                    found.append(Function(name, first, last - first + 1))
                head_start = i + 1
        elif ch == ";" and depth == 0:
            head_start = i + 1
    return found


_QUOTED_INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]+"([^"]+)"', re.M)


def cross_plane_private_includes(plane: str, text: str) -> list[str]:
    """Headers of another plane's private part (`<other>/..._internal.h`) this file includes."""
    bad = []
    for inc in _QUOTED_INCLUDE.findall(text):
        parts = inc.split("/")
        if len(parts) == 2 and parts[0] != plane and parts[1].endswith("_internal.h"):
            bad.append(inc)
    return bad


_THREAD_LOCAL = r"(?:__thread|_Thread_local|thread_local)"
_EXTERN_TLS = re.compile(rf"\bextern\b[^;{{}}]*\b{_THREAD_LOCAL}\b[^;{{}}]*;"
                         rf"|\b{_THREAD_LOCAL}\b[^;{{}}]*\bextern\b[^;{{}}]*;")


def extern_thread_locals(text: str) -> list[int]:
    """Lines where a thread-local variable is declared extern."""
    code = strip_c(text)
    return [code.count("\n", 0, m.start()) + 1 for m in _EXTERN_TLS.finditer(code)]


# ---- the scanners can fail ----------------------------------------------------------------------

def _function_of(body_lines: int) -> str:
    body = "".join(f"    x += {i};\n" for i in range(body_lines - 2))
    return f"static int f(int x)\n{{\n{body}}}\n"


def test_function_scanner_measures_top_level_bodies() -> None:
    text = ('#define M(x) { x }\nstruct s { int a; };\nstatic const int t[] = { 1, 2 };\n'
            '/* } { */ static const char *q = "}{";\n'
            'int __attribute__((unused)) g(void) { if (1) { return 0; } return 1; }\n'
            + _function_of(121))
    found = functions(text)
    assert [(f.name, f.lines) for f in found] == [("g", 1), ("f", 121)]
    assert found[1].line == 7


def test_include_scanner_flags_only_another_planes_private_header() -> None:
    text = ('#include "ss_mc_internal.h"\n#include "mc/ss_mc_internal.h"\n'
            '#include "proxy/ss_px_internal.h"\n#include "server/ss_conn.h"\n#include <stdio.h>\n')
    assert cross_plane_private_includes("mc", text) == ["proxy/ss_px_internal.h"]


def test_thread_local_scanner_flags_extern_declarations() -> None:
    text = ("static __thread int a;\n/* extern __thread int c; */\n"
            "extern __thread int flag;\n_Thread_local extern int other;\n")
    assert extern_thread_locals(text) == [3, 4]


# ---- the tree -------------------------------------------------------------------------------

def test_no_source_file_over_800_lines() -> None:
    long = [f"{rel(p)}: {n} lines" for p in source_files()
            if (n := len(p.read_text(errors="replace").splitlines())) > MAX_FILE_LINES]
    assert not long, f"over {MAX_FILE_LINES} lines:\n" + "\n".join(long)


def test_no_c_function_over_120_lines() -> None:
    long = [f"{rel(p)}:{f.line}: {f.name}() {f.lines} lines" for p in c_files()
            for f in functions(p.read_text(errors="replace")) if f.lines > MAX_FUNCTION_LINES]
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(long)


def test_no_plane_includes_another_planes_private_header() -> None:
    bad = [f"{rel(p)}: includes {inc}"
           for p in sorted([*SRC.rglob("*.c"), *SRC.rglob("*.h")])
           for inc in cross_plane_private_includes(p.parent.name, p.read_text())]
    assert not bad, ("another plane's private header (its public header should declare "
                     "what is needed):\n" + "\n".join(bad))


def test_public_headers_include_only_public_headers() -> None:
    bad = [f"{rel(p)}: includes {inc}, not a header in {rel(INCLUDE)}"
           for p in sorted(INCLUDE.glob("*.h"))
           for inc in _QUOTED_INCLUDE.findall(p.read_text()) if not (INCLUDE / inc).is_file()]
    assert not bad, "\n".join(bad)


def test_no_thread_local_declared_extern_in_a_header() -> None:
    bad = [f"{rel(p)}:{line}" for p in c_files() if p.suffix == ".h"
           for line in extern_thread_locals(p.read_text())]
    assert not bad, ("a thread-local shared across files carries a parameter between them; "
                     "pass it as an argument:\n" + "\n".join(bad))


@pytest.mark.parametrize("path", [SRC, INCLUDE])
def test_the_trees_scanned_exist(path: Path) -> None:
    assert any(path.rglob("*.h")), f"{rel(path)} has no headers: the checks above saw nothing"
