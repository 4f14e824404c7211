"""ss_http_parse_head (dataplane/src/http/ss_http_parse.c): the request head, fed literal bytes.

Every strictness rule has a case that asserts its exact error code (and the status that code
answers with); every valid case is also fed in every prefix, which must read as "need more"
(0) until the blank line is in, and the same head after it. Error cases are fed in every
prefix too: a prefix may only give 0 or the error the whole head gives, so a server that
reads a head in pieces answers the same as one that reads it whole.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

pytest.importorskip("dataplane._fastpath", reason="the C data plane is not built")

from dataplane import fastpath  # noqa: E402  (after the skip above)

ffi, lib = fastpath.load()


@dataclass
class Head:
    """struct ss_http_req as Python values (slices as bytes, a NULL query as None)."""

    consumed: int
    method: str
    method_str: bytes
    version: int
    form: int
    target: bytes
    path: bytes
    query: bytes | None
    host: bytes | None
    content_length: int
    chunked: bool
    keep_alive: bool
    expect_100_continue: bool
    fields: list[tuple[bytes, bytes]] = field(default_factory=list)


def _slice(ptr: Any, n: int) -> bytes | None:
    return None if ptr == ffi.NULL else ffi.buffer(ptr, n)[:]


def _inside(buf: Any, size: int, ptr: Any, n: int) -> bool:
    base = int(ffi.cast("uintptr_t", buf))
    at = int(ffi.cast("uintptr_t", ptr))
    return base <= at and at + n <= base + size


def parse(data: bytes, **limits: int) -> int | Head:
    """The parser's result: a Head when complete, else 0 or the negative error code.

    The bytes are copied into a buffer of exactly their length, and every slice of a
    complete head is checked to lie inside it (the one exception is the "/" an
    absolute-form target without a path reads as)."""
    buf = ffi.new("char[]", len(data) or 1)
    ffi.memmove(buf, data, len(data))
    req = ffi.new("struct ss_http_req *")
    lim = ffi.new("struct ss_http_limits *", limits) if limits else ffi.NULL
    rc = lib.ss_http_parse_head(buf, len(data), lim, req)
    if rc <= 0:
        return rc
    assert rc <= len(data)
    slices = [(req.method_str, req.method_len), (req.target, req.target_len)]
    slices += [(f.name, f.name_len) for f in req.fields[0:req.nfields]]
    slices += [(f.value, f.value_len) for f in req.fields[0:req.nfields]]
    if req.query != ffi.NULL:
        slices.append((req.query, req.query_len))
    if req.host != ffi.NULL:
        slices.append((req.host, req.host_len))
    if _slice(req.path, req.path_len) != b"/" or req.target_form == lib.SS_HTTP_FORM_ORIGIN:
        slices.append((req.path, req.path_len))
    for ptr, n in slices:
        assert _inside(buf, rc, ptr, n), "a slice points outside the head"
    return Head(
        consumed=rc,
        method=ffi.string(lib.ss_http_method_name(req.method)).decode(),
        method_str=_slice(req.method_str, req.method_len) or b"",
        version=req.version,
        form=req.target_form,
        target=_slice(req.target, req.target_len) or b"",
        path=_slice(req.path, req.path_len) or b"",
        query=_slice(req.query, req.query_len),
        host=_slice(req.host, req.host_len),
        content_length=req.content_length,
        chunked=bool(req.chunked),
        keep_alive=bool(req.keep_alive),
        expect_100_continue=bool(req.expect_100_continue),
        fields=[(_slice(f.name, f.name_len) or b"", _slice(f.value, f.value_len) or b"")
                for f in req.fields[0:req.nfields]],
    )


def err(name: str) -> int:
    return getattr(lib, f"SS_HTTP_E_{name}")


H = b"Host: example.com\r\n"

# ---- valid heads ------------------------------------------------------------------------

VALID: list[tuple[str, bytes, dict[str, Any]]] = [
    ("get with query", b"GET /bucket/key?versionId=3 HTTP/1.1\r\n" + H + b"\r\n",
     dict(method="GET", path=b"/bucket/key", query=b"versionId=3", host=b"example.com",
          version=11, keep_alive=True, content_length=-1)),
    ("empty query is not no query", b"GET /b/k? HTTP/1.1\r\n" + H + b"\r\n",
     dict(path=b"/b/k", query=b"")),
    ("no query", b"GET /b/k HTTP/1.1\r\n" + H + b"\r\n", dict(query=None)),
    ("head", b"HEAD /b/k HTTP/1.1\r\n" + H + b"\r\n", dict(method="HEAD")),
    ("put with length", b"PUT /b/k HTTP/1.1\r\n" + H + b"Content-Length: 11\r\n\r\n",
     dict(method="PUT", content_length=11, chunked=False)),
    ("delete", b"DELETE /b/k HTTP/1.1\r\n" + H + b"\r\n", dict(method="DELETE")),
    ("post", b"POST /b?delete HTTP/1.1\r\n" + H + b"Content-Length: 0\r\n\r\n",
     dict(method="POST", content_length=0, query=b"delete")),
    ("purge", b"PURGE /b/k HTTP/1.1\r\n" + H + b"\r\n", dict(method="PURGE")),
    ("options asterisk", b"OPTIONS * HTTP/1.1\r\n" + H + b"\r\n",
     dict(method="OPTIONS", form=2, path=b"*", target=b"*")),
    ("unknown method is OTHER", b"PROPFIND /b HTTP/1.1\r\n" + H + b"\r\n",
     dict(method="OTHER", method_str=b"PROPFIND")),
    ("methods are case-sensitive", b"get /b HTTP/1.1\r\n" + H + b"\r\n",
     dict(method="OTHER", method_str=b"get")),
    ("a 32-byte method is a token", b"M" * 32 + b" / HTTP/1.1\r\n" + H + b"\r\n",
     dict(method="OTHER")),
    ("leading empty lines are skipped", b"\r\n\r\nGET / HTTP/1.1\r\n" + H + b"\r\n",
     dict(method="GET", path=b"/")),
    ("absolute-form takes its host from the target",
     b"GET http://Store.Example:8080/b/k?x HTTP/1.1\r\nHost: other\r\n\r\n",
     dict(form=1, host=b"Store.Example:8080", path=b"/b/k", query=b"x")),
    ("absolute-form without a path is /", b"GET https://h HTTP/1.1\r\nHost: h\r\n\r\n",
     dict(form=1, host=b"h", path=b"/", query=None)),
    ("absolute-form with only a query", b"GET HTTP://h?q HTTP/1.1\r\nHost: h\r\n\r\n",
     dict(form=1, path=b"/", query=b"q")),
    ("ows trimmed, inner space kept", b"GET / HTTP/1.1\r\n" + H + b"X-A: \t a b \t \r\n\r\n",
     dict(fields=[(b"Host", b"example.com"), (b"X-A", b"a b")])),
    ("empty value", b"GET / HTTP/1.1\r\n" + H + b"X-Empty:\r\n\r\n",
     dict(fields=[(b"Host", b"example.com"), (b"X-Empty", b"")])),
    ("htab and obs-text in values", b"GET / HTTP/1.1\r\n" + H + b"X-U: caf\xc3\xa9\tbar\r\n\r\n",
     dict(fields=[(b"Host", b"example.com"), (b"X-U", b"caf\xc3\xa9\tbar")])),
    ("every tchar in a name", b"GET / HTTP/1.1\r\n" + H + b"!#$%&'*+-.^_`|~09az: v\r\n\r\n",
     dict(fields=[(b"Host", b"example.com"), (b"!#$%&'*+-.^_`|~09az", b"v")])),
    ("chunked", b"PUT /b/k HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n",
     dict(chunked=True, content_length=-1)),
    ("chunked in any case", b"PUT /b/k HTTP/1.1\r\n" + H + b"transfer-encoding: ChUnKeD\r\n\r\n",
     dict(chunked=True)),
    ("repeated equal content-length", b"PUT / HTTP/1.1\r\n" + H +
     b"Content-Length: 5\r\ncontent-length: 5\r\n\r\n", dict(content_length=5)),
    ("content-length with leading zeros", b"PUT / HTTP/1.1\r\n" + H +
     b"Content-Length: 0007\r\n\r\n", dict(content_length=7)),
    ("largest content-length", b"PUT / HTTP/1.1\r\n" + H +
     b"Content-Length: 9223372036854775807\r\n\r\n", dict(content_length=2**63 - 1)),
    ("connection close", b"GET / HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n",
     dict(keep_alive=False)),
    ("close wins over keep-alive", b"GET / HTTP/1.1\r\n" + H +
     b"Connection: keep-alive\r\nConnection: foo, CLOSE\r\n\r\n", dict(keep_alive=False)),
    ("http/1.0 closes by default", b"GET / HTTP/1.0\r\n\r\n",
     dict(version=10, keep_alive=False, host=None)),
    ("http/1.0 keep-alive", b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
     dict(version=10, keep_alive=True)),
    ("expect 100-continue", b"PUT / HTTP/1.1\r\n" + H +
     b"Expect: 100-Continue\r\nContent-Length: 3\r\n\r\n", dict(expect_100_continue=True)),
    ("expect ignored in http/1.0", b"PUT / HTTP/1.0\r\nExpect: 100-continue\r\n"
     b"Content-Length: 3\r\n\r\n", dict(expect_100_continue=False)),
    ("host with port", b"GET / HTTP/1.1\r\nHost: h.example:8080\r\n\r\n",
     dict(host=b"h.example:8080")),
    ("host ipv6 literal", b"GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", dict(host=b"[::1]:80")),
    ("empty host", b"GET / HTTP/1.1\r\nHost:\r\n\r\n", dict(host=b"")),
    ("host with empty port and pct-encoding", b"GET / HTTP/1.1\r\nHost: a%2Db:\r\n\r\n",
     dict(host=b"a%2Db:")),
    ("target with every path byte", b"GET /a-._~!$&'()*+,;=:@%20/?q=/? HTTP/1.1\r\n" + H
     + b"\r\n", dict(path=b"/a-._~!$&'()*+,;=:@%20/", query=b"q=/?")),
]


@pytest.mark.parametrize(("data", "want"), [(d, w) for _, d, w in VALID],
                         ids=[name for name, _, _ in VALID])
def test_valid_heads(data: bytes, want: dict[str, Any]) -> None:
    head = parse(data)
    assert isinstance(head, Head), f"{data!r}: {head}"
    assert head.consumed == len(data)
    for key, value in want.items():
        assert getattr(head, key) == value, key


@pytest.mark.parametrize("data", [d for _, d, _ in VALID], ids=[n for n, _, _ in VALID])
def test_valid_heads_need_more_until_complete_at_every_split(data: bytes) -> None:
    whole = parse(data)
    for k in range(len(data)):
        assert parse(data[:k]) == 0, f"prefix of {k} bytes"
    # The bytes after the head (a body, a pipelined request) are not consumed.
    assert parse(data + b"GET /next HTTP/1.1\r\n") == whole


def test_a_pipelined_request_follows_the_consumed_bytes() -> None:
    first = b"GET /a HTTP/1.1\r\n" + H + b"\r\n"
    second = b"GET /b HTTP/1.1\r\n" + H + b"\r\n"
    head = parse(first + second)
    assert isinstance(head, Head) and head.consumed == len(first) and head.path == b"/a"
    nxt = parse((first + second)[head.consumed:])
    assert isinstance(nxt, Head) and nxt.path == b"/b"


# ---- errors: one case per rule, exact code ------------------------------------------------

REQ = b"GET / HTTP/1.1\r\n"
ERRORS: list[tuple[str, bytes, str]] = [
    # CRLF only
    ("bare LF ends the request line", b"GET / HTTP/1.1\n" + H + b"\r\n", "LINE_ENDING"),
    ("bare LF ends a field line", REQ + b"Host: a\n\r\n", "LINE_ENDING"),
    ("bare LF is the blank line", REQ + H + b"\n", "LINE_ENDING"),
    ("bare CR in a value", REQ + b"Host: a\rb\r\n\r\n", "LINE_ENDING"),
    ("bare CR in the request line", b"GET /\r HTTP/1.1\r\n" + H + b"\r\n", "LINE_ENDING"),
    ("bare CR as the blank line", REQ + H + b"\rX", "LINE_ENDING"),
    ("bare LF before the request line", b"\nGET / HTTP/1.1\r\n" + H + b"\r\n", "LINE_ENDING"),
    ("bare CR before the request line", b"\r\rGET / HTTP/1.1\r\n" + H + b"\r\n",
     "LINE_ENDING"),
    # the request line
    ("two spaces after the method", b"GET  / HTTP/1.1\r\n" + H + b"\r\n", "REQUEST_LINE"),
    ("two spaces before the version", b"GET /  HTTP/1.1\r\n" + H + b"\r\n", "REQUEST_LINE"),
    ("a space after the version", b"GET / HTTP/1.1 \r\n" + H + b"\r\n", "REQUEST_LINE"),
    ("a space before the method", b" GET / HTTP/1.1\r\n" + H + b"\r\n", "REQUEST_LINE"),
    ("tab as separator", b"GET\t/ HTTP/1.1\r\n" + H + b"\r\n", "REQUEST_LINE"),
    ("no version (HTTP/0.9)", b"GET /\r\n" + H + b"\r\n", "REQUEST_LINE"),
    ("method only", b"GET\r\n" + H + b"\r\n", "REQUEST_LINE"),
    ("method not a token", b"G@T / HTTP/1.1\r\n" + H + b"\r\n", "REQUEST_LINE"),
    ("a space inside the version", b"GET / HTTP/1 .1\r\n" + H + b"\r\n", "REQUEST_LINE"),
    ("method over 32 bytes", b"M" * 33 + b" / HTTP/1.1\r\n" + H + b"\r\n", "METHOD"),
    ("control byte in the target", b"GET /a\x01b HTTP/1.1\r\n" + H + b"\r\n", "TARGET"),
    ("DEL in the target", b"GET /a\x7f HTTP/1.1\r\n" + H + b"\r\n", "TARGET"),
    ("obs-text in the target", b"GET /caf\xc3\xa9 HTTP/1.1\r\n" + H + b"\r\n", "TARGET"),
    ("tab in the target", b"GET /a\tb HTTP/1.1\r\n" + H + b"\r\n", "TARGET"),
    ("fragment in the target", b"GET /a#frag HTTP/1.1\r\n" + H + b"\r\n", "TARGET"),
    ("authority-form", b"CONNECT example.com:443 HTTP/1.1\r\n" + H + b"\r\n", "TARGET_FORM"),
    ("asterisk-form for GET", b"GET * HTTP/1.1\r\n" + H + b"\r\n", "TARGET_FORM"),
    ("relative target", b"GET b/k HTTP/1.1\r\n" + H + b"\r\n", "TARGET_FORM"),
    ("other scheme", b"GET ftp://h/k HTTP/1.1\r\n" + H + b"\r\n", "TARGET_FORM"),
    ("absolute-form without authority", b"GET http:///k HTTP/1.1\r\n" + H + b"\r\n",
     "TARGET_FORM"),
    ("absolute-form with userinfo", b"GET http://u:p@h/k HTTP/1.1\r\n" + H + b"\r\n",
     "TARGET_FORM"),
    ("lower-case version", b"GET / http/1.1\r\n" + H + b"\r\n", "VERSION"),
    ("two-digit version", b"GET / HTTP/11\r\n" + H + b"\r\n", "VERSION"),
    ("version with a suffix", b"GET / HTTP/1.1x\r\n" + H + b"\r\n", "VERSION"),
    ("HTTP/1.2", b"GET / HTTP/1.2\r\n" + H + b"\r\n", "VERSION_UNSUPPORTED"),
    ("HTTP/2.0", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "VERSION_UNSUPPORTED"),
    ("HTTP/0.9 named", b"GET / HTTP/0.9\r\n" + H + b"\r\n", "VERSION_UNSUPPORTED"),
    # field lines
    ("space before the colon", REQ + b"Host : a\r\n\r\n", "FIELD_NAME_SPACE"),
    ("tab before the colon", REQ + H + b"X-A\t: a\r\n\r\n", "FIELD_NAME_SPACE"),
    ("a name byte that is not a tchar", REQ + H + b"X@A: a\r\n\r\n", "FIELD_NAME"),
    ("a delimiter in the name", REQ + H + b"X(A): a\r\n\r\n", "FIELD_NAME"),
    ("an empty name", REQ + H + b": a\r\n\r\n", "FIELD_NAME"),
    ("no colon", REQ + H + b"NoColonHere\r\n\r\n", "FIELD_NAME"),
    ("NUL in the name", REQ + H + b"X\x00A: a\r\n\r\n", "FIELD_NAME"),
    ("NUL in a value", REQ + H + b"X-A: a\x00b\r\n\r\n", "FIELD_VALUE"),
    ("ESC in a value", REQ + H + b"X-A: \x1b[31m\r\n\r\n", "FIELD_VALUE"),
    ("DEL in a value", REQ + H + b"X-A: a\x7f\r\n\r\n", "FIELD_VALUE"),
    ("obs-fold with a space", REQ + H + b"X-A: a\r\n b\r\n\r\n", "OBS_FOLD"),
    ("obs-fold with a tab", REQ + H + b"X-A: a\r\n\tb\r\n\r\n", "OBS_FOLD"),
    ("whitespace before the first field", REQ + b" Host: a\r\n\r\n", "OBS_FOLD"),
    # Content-Length
    ("two different lengths", REQ + H + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\n",
     "CONTENT_LENGTH"),
    ("a list of equal lengths", REQ + H + b"Content-Length: 5, 5\r\n\r\n", "CONTENT_LENGTH"),
    ("a list of lengths", REQ + H + b"Content-Length: 5,6\r\n\r\n", "CONTENT_LENGTH"),
    ("negative length", REQ + H + b"Content-Length: -1\r\n\r\n", "CONTENT_LENGTH"),
    ("signed length", REQ + H + b"Content-Length: +5\r\n\r\n", "CONTENT_LENGTH"),
    ("hex length", REQ + H + b"Content-Length: 0x10\r\n\r\n", "CONTENT_LENGTH"),
    ("trailing garbage", REQ + H + b"Content-Length: 5a\r\n\r\n", "CONTENT_LENGTH"),
    ("inner space", REQ + H + b"Content-Length: 1 0\r\n\r\n", "CONTENT_LENGTH"),
    ("empty length", REQ + H + b"Content-Length: \r\n\r\n", "CONTENT_LENGTH"),
    ("length over int64", REQ + H + b"Content-Length: 9223372036854775808\r\n\r\n",
     "CONTENT_LENGTH"),
    ("length over uint64", REQ + H + b"Content-Length: 99999999999999999999999\r\n\r\n",
     "CONTENT_LENGTH"),
    # Transfer-Encoding
    ("content-length and chunked", REQ + H +
     b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", "CL_AND_TE"),
    ("chunked and content-length", REQ + H +
     b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", "CL_AND_TE"),
    ("final coding gzip", REQ + H + b"Transfer-Encoding: gzip\r\n\r\n", "TE_NOT_CHUNKED"),
    ("chunked then gzip", REQ + H + b"Transfer-Encoding: chunked, gzip\r\n\r\n",
     "TE_NOT_CHUNKED"),
    ("chunked then gzip on two lines", REQ + H +
     b"Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n", "TE_NOT_CHUNKED"),
    ("chunked twice", REQ + H + b"Transfer-Encoding: chunked, chunked\r\n\r\n",
     "TE_NOT_CHUNKED"),
    ("chunked twice on two lines", REQ + H +
     b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", "TE_NOT_CHUNKED"),
    ("identity", REQ + H + b"Transfer-Encoding: identity\r\n\r\n", "TE_NOT_CHUNKED"),
    ("gzip then chunked", REQ + H + b"Transfer-Encoding: gzip, chunked\r\n\r\n", "TE_UNKNOWN"),
    ("gzip then chunked on two lines", REQ + H +
     b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n", "TE_UNKNOWN"),
    ("empty element first", REQ + H + b"Transfer-Encoding: ,chunked\r\n\r\n", "TE_SYNTAX"),
    ("empty element last", REQ + H + b"Transfer-Encoding: chunked,\r\n\r\n", "TE_SYNTAX"),
    ("empty transfer-encoding", REQ + H + b"Transfer-Encoding:\r\n\r\n", "TE_SYNTAX"),
    ("a coding with parameters", REQ + H + b"Transfer-Encoding: chunked;q=1\r\n\r\n",
     "TE_SYNTAX"),
    ("a quoted coding", REQ + H + b'Transfer-Encoding: "chunked"\r\n\r\n', "TE_SYNTAX"),
    ("transfer-encoding in http/1.0", b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
     "TE_HTTP10"),
    # Host
    ("no host in http/1.1", REQ + b"X-A: a\r\n\r\n", "HOST_MISSING"),
    ("absolute-form still needs host", b"GET http://h/ HTTP/1.1\r\n\r\n", "HOST_MISSING"),
    ("two hosts", REQ + b"Host: a\r\nHost: b\r\n\r\n", "HOST_DUPLICATE"),
    ("two equal hosts", REQ + b"Host: a\r\nhost: a\r\n\r\n", "HOST_DUPLICATE"),
    ("two hosts in http/1.0", b"GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n",
     "HOST_DUPLICATE"),
    ("a space in host", REQ + b"Host: a b\r\n\r\n", "HOST_INVALID"),
    ("a path in host", REQ + b"Host: a/b\r\n\r\n", "HOST_INVALID"),
    ("userinfo in host", REQ + b"Host: u@h\r\n\r\n", "HOST_INVALID"),
    ("a port that is not digits", REQ + b"Host: h:8x\r\n\r\n", "HOST_INVALID"),
    ("an unclosed ipv6 literal", REQ + b"Host: [::1\r\n\r\n", "HOST_INVALID"),
    ("a bad pct-escape", REQ + b"Host: a%zz\r\n\r\n", "HOST_INVALID"),
    ("two hosts in host", REQ + b"Host: a, b\r\n\r\n", "HOST_INVALID"),
]


@pytest.mark.parametrize(("data", "code"), [(d, c) for _, d, c in ERRORS],
                         ids=[name for name, _, _ in ERRORS])
def test_errors_give_their_exact_code(data: bytes, code: str) -> None:
    assert parse(data) == err(code)


@pytest.mark.parametrize(("data", "code"), [(d, c) for _, d, c in ERRORS],
                         ids=[name for name, _, _ in ERRORS])
def test_a_prefix_gives_need_more_or_the_same_error(data: bytes, code: str) -> None:
    for k in range(len(data)):
        assert parse(data[:k]) in (0, err(code)), f"prefix of {k} bytes"


STATUS = {
    400: ["LINE_ENDING", "REQUEST_LINE", "TARGET", "TARGET_FORM", "VERSION", "FIELD_NAME",
          "FIELD_NAME_SPACE", "FIELD_VALUE", "OBS_FOLD", "CONTENT_LENGTH", "CL_AND_TE",
          "TE_SYNTAX", "TE_NOT_CHUNKED", "TE_HTTP10", "HOST_MISSING", "HOST_DUPLICATE",
          "HOST_INVALID", "CHUNK_SIZE", "CHUNK_EXT", "CHUNK_CRLF"],
    413: ["BODY_TOO_LARGE"],
    414: ["URI_TOO_LONG"],
    431: ["HEAD_TOO_LARGE", "TOO_MANY_FIELDS", "TRAILER_TOO_LARGE"],
    501: ["METHOD", "TE_UNKNOWN"],
    505: ["VERSION_UNSUPPORTED"],
}


def test_every_error_maps_to_its_status_and_says_what_failed() -> None:
    codes = {name[len("SS_HTTP_E_"):]: value
             for name, value in ffi.typeof("enum ss_http_error").relements.items()
             if name.startswith("SS_HTTP_E_")}
    assert sorted(codes) == sorted(n for names in STATUS.values() for n in names)
    for status, names in STATUS.items():
        for name in names:
            assert lib.ss_http_error_status(codes[name]) == status, name
            assert len(ffi.string(lib.ss_http_error_text(codes[name]))) > 20, name
    assert len(set(codes.values())) == len(codes)
    assert lib.ss_http_error_status(-999) == 500


# ---- limits -------------------------------------------------------------------------------

def _head_of(size: int) -> bytes:
    """A valid head of exactly size bytes (one padding field)."""
    base = REQ + H + b"X-Pad: \r\n\r\n"
    return REQ + H + b"X-Pad: " + b"p" * (size - len(base)) + b"\r\n\r\n"


def test_default_head_limit_is_8k() -> None:
    assert isinstance(parse(_head_of(8192)), Head)
    assert parse(_head_of(8193)) == err("HEAD_TOO_LARGE")
    # Fewer bytes than the limit and no blank line yet: more may finish it.
    assert parse(_head_of(8193)[:8191]) == 0


@pytest.mark.parametrize("size", [100, 101, 500])
def test_head_limit_boundary(size: int) -> None:
    data = _head_of(size) + b"body"
    assert isinstance(parse(data, max_head=size), Head)
    assert parse(data, max_head=size - 1) == err("HEAD_TOO_LARGE")
    assert parse(data[:size - 2], max_head=size - 1) == 0


def test_empty_lines_count_against_the_head_limit() -> None:
    assert parse(b"\r\n" * 60, max_head=100) == err("HEAD_TOO_LARGE")
    assert parse(b"\r\n" * 40, max_head=100) == 0


def test_uri_limit() -> None:
    ok = b"GET /" + b"u" * 4095 + b" HTTP/1.1\r\n" + H + b"\r\n"
    assert isinstance(parse(ok), Head)
    assert parse(ok.replace(b"/u", b"/uu", 1)) == err("URI_TOO_LONG")
    assert parse(ok, max_uri=4095) == err("URI_TOO_LONG")


def test_request_line_longer_than_the_head_limit_is_414() -> None:
    line = b"GET /" + b"u" * 9000
    assert parse(line) == err("URI_TOO_LONG")
    assert parse(line, max_uri=100000) == err("URI_TOO_LONG")
    assert parse(line[:8000]) == 0


def test_field_count_limit() -> None:
    def with_fields(n: int) -> bytes:
        return REQ + H + b"".join(b"X-%d: v\r\n" % i for i in range(n - 1)) + b"\r\n"
    assert isinstance(parse(with_fields(100)), Head)
    assert parse(with_fields(101)) == err("TOO_MANY_FIELDS")
    assert isinstance(parse(with_fields(3), max_fields=3), Head)
    assert parse(with_fields(4), max_fields=3) == err("TOO_MANY_FIELDS")
    # The array holds 100: a larger limit is capped there.
    assert parse(with_fields(101), max_fields=500, max_head=65536) == err("TOO_MANY_FIELDS")


def test_defaults() -> None:
    lim = ffi.new("struct ss_http_limits *")
    lib.ss_http_limits_default(lim)
    assert (lim.max_head, lim.max_fields, lim.max_uri) == (8192, 100, 4096)


# ---- field lookup -------------------------------------------------------------------------

CACHE_REQ = (b"GET /b/k HTTP/1.1\r\nHost: h\r\nRange: bytes=0-99\r\nIf-Match: \"a\"\r\n"
             b"If-None-Match: \"b\"\r\nif-none-match: W/\"c\"\r\n"
             b"If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
             b"If-Unmodified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\nIf-Range: \"a\"\r\n"
             b"Cache-Control: no-cache\r\nContent-Type: text/plain\r\n"
             b"Content-Encoding: aws-chunked\r\nX-Amz-Content-Sha256: STREAMING\r\n"
             b"x-amz-meta-colour: blue\r\n\r\n")


def _lookup(req: Any, name: bytes) -> list[bytes]:
    found = []
    f = lib.ss_http_header(req, name)
    while f != ffi.NULL:
        found.append(ffi.buffer(f.value, f.value_len)[:])
        f = lib.ss_http_header_next(req, name, f)
    return found


@pytest.mark.parametrize(("name", "values"), [
    (b"range", [b"bytes=0-99"]),
    (b"IF-MATCH", [b'"a"']),
    (b"if-none-match", [b'"b"', b'W/"c"']),
    (b"if-modified-since", [b"Sun, 06 Nov 1994 08:49:37 GMT"]),
    (b"If-Unmodified-Since", [b"Sun, 06 Nov 1994 08:49:37 GMT"]),
    (b"if-range", [b'"a"']),
    (b"cache-control", [b"no-cache"]),
    (b"content-type", [b"text/plain"]),
    (b"content-encoding", [b"aws-chunked"]),
    (b"x-amz-content-sha256", [b"STREAMING"]),
    (b"X-Amz-Meta-Colour", [b"blue"]),
    (b"x-amz-meta", []),
    (b"authorization", []),
])
def test_header_lookup_is_case_insensitive_and_finds_repeats(name: bytes,
                                                             values: list[bytes]) -> None:
    buf = ffi.new("char[]", CACHE_REQ)
    req = ffi.new("struct ss_http_req *")
    assert lib.ss_http_parse_head(buf, len(CACHE_REQ), ffi.NULL, req) == len(CACHE_REQ)
    assert _lookup(req, name) == values
