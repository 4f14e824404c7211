"""dataplane/_cdef.py: cffi's declarations come from the headers' marked parts, and the ABI
stamp follows those declarations (and nothing else)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from cffi import FFI

from dataplane import _cdef, fastpath

INCLUDE = Path(_cdef.INCLUDE)
FASTPATH = Path(fastpath.__file__)


def write_headers(tmp_path: Path, **headers: str) -> Path:
    for name, text in headers.items():
        (tmp_path / f"{name}.h").write_text(text)
    return tmp_path


API = '#include "ss_x.h"\n/* cffi: begin */\nint ss_f(struct ss_x *x);\n/* cffi: end */\n'
X = ("/* cffi: begin */\n#define SS_N 4u /* why four */\nstruct ss_x { int v[SS_N]; };\n"
     "/* cffi: end */\nstatic inline int ss_c_only(void) { return 0; }\n")


def test_regions_follow_includes_in_compiler_order(tmp_path: Path) -> None:
    parts = _cdef.regions(str(write_headers(tmp_path, ss_api=API, ss_x=X)))
    assert [name for name, _ in parts] == ["ss_x.h", "ss_api.h"]
    assert "ss_c_only" not in "".join(part for _, part in parts)


@pytest.mark.parametrize(("text", "message"), [
    ("/* cffi: begin */\nint a;\n", r"ss_api.h:1: /\* cffi: begin \*/ is never closed"),
    ("int a;\n/* cffi: end */\n", r"ss_api.h:2: /\* cffi: end \*/ without a"),
    ("/* cffi: begin */\n/* cffi: begin */\n/* cffi: end */\n",
     r"ss_api.h:2: /\* cffi: begin \*/ inside the region opened at line 1"),
    ('#include "ss_gone.h"\n', r"ss_api.h: includes ss_gone.h, which is not in"),
])
def test_bad_markers_name_the_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(_cdef.CdefError, match=message):
        _cdef.regions(str(write_headers(tmp_path, ss_api=text)))


def test_cdef_expands_x_macros_and_keeps_integer_constants(tmp_path: Path) -> None:
    xmacro = ("/* cffi: begin */\n#define SS_KINDS(X) X(A, \"a\") X(B, \"b\")\n"
              "enum ss_kind {\n#define SS_KIND_ENUM(name, str) SS_KIND_##name,\n"
              "    SS_KINDS(SS_KIND_ENUM)\n#undef SS_KIND_ENUM\n    SS_KIND__COUNT\n};\n"
              "/* cffi: end */\n")
    parts = _cdef.regions(str(write_headers(tmp_path, ss_api=API + '#include "ss_k.h"\n',
                                            ss_x=X, ss_k=xmacro)))
    ffi = FFI()
    ffi.cdef(_cdef.cdef(parts))
    assert ffi.sizeof("struct ss_x") == 4 * ffi.sizeof("int")
    assert ffi.typeof("enum ss_kind").relements == {"SS_KIND_A": 0, "SS_KIND_B": 1,
                                                    "SS_KIND__COUNT": 2}


def test_stamp_ignores_comments_and_layout_but_not_declarations(tmp_path: Path) -> None:
    base = _cdef.abi_stamp(_cdef.regions(str(write_headers(tmp_path, ss_api=API, ss_x=X))))
    relaid = X.replace("/* why four */", "/* four, because */").replace("{ int", "{\n    int")
    assert _cdef.abi_stamp(_cdef.regions(str(write_headers(tmp_path, ss_x=relaid)))) == base
    widened = X.replace("int v[SS_N]", "long v[SS_N]")
    assert _cdef.abi_stamp(_cdef.regions(str(write_headers(tmp_path, ss_x=widened)))) != base
    outside = X.replace("return 0;", "return 1;")  # C only: not part of the ABI
    assert _cdef.abi_stamp(_cdef.regions(str(write_headers(tmp_path, ss_x=outside)))) == base


def test_every_marked_header_is_reached_from_ss_api_h() -> None:
    reached = {name for name, _ in _cdef.regions()}
    marked = {p.name for p in INCLUDE.glob("*.h") if _cdef.BEGIN in p.read_text()}
    assert marked <= reached, f"marked but not included from ss_api.h: {marked - reached}"


def test_the_real_cdef_declares_what_fastpath_uses() -> None:
    ffi = FFI()
    ffi.cdef(_cdef.cdef(_cdef.regions()))
    source = FASTPATH.read_text()
    for struct in sorted(set(re.findall(r'"(?:const )?(struct ss_\w+)', source))):
        ffi.typeof(f"{struct} *")  # raises when the cdef does not declare it
    cdef_text = _cdef.cdef(_cdef.regions())
    for func in sorted(set(re.findall(r"\b_?lib\.(ss_\w+)\(", source))):
        assert re.search(rf"\b{func}\(", cdef_text), f"{func} is called but not in the cdef"


def test_expected_abi_version_is_the_stamp_of_the_shipped_headers() -> None:
    assert fastpath.EXPECTED_ABI_VERSION == _cdef.abi_stamp(_cdef.regions())
    assert 0 <= fastpath.EXPECTED_ABI_VERSION < 2**32  # ss_abi_version() returns uint32_t
