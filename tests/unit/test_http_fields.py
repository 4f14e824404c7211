"""ss_http_fields.c and ss_http_write.c: Range, Content-Range, HTTP-dates, entity-tag lists,
Cache-Control and response heads, as tables of literal field values.

Dates are checked against the standard library (calendar.timegm, email.utils.formatdate)
over years 1 to 9999, so the calendar arithmetic is not trusted on a handful of
hand-picked days alone.
"""

from __future__ import annotations

import calendar
import email.utils
import errno
import random
from typing import Any

import pytest

pytest.importorskip("dataplane._fastpath", reason="the C data plane is not built")

from dataplane import fastpath  # noqa: E402  (after the skip above)

ffi, lib = fastpath.load()
OK, IGNORE, UNSAT = (lib.SS_HTTP_RANGE_OK, lib.SS_HTTP_RANGE_IGNORE,
                     lib.SS_HTTP_RANGE_UNSATISFIABLE)
NOW_2024 = calendar.timegm((2024, 6, 1, 0, 0, 0))


# ---- Range -------------------------------------------------------------------------------

def rng(value: bytes, size: int = 1000) -> tuple[int, int, int] | int:
    first = ffi.new("uint64_t *")
    last = ffi.new("uint64_t *")
    rc = lib.ss_http_range_parse(value, len(value), size, first, last)
    return (rc, first[0], last[0]) if rc == OK else rc


@pytest.mark.parametrize(("value", "size", "want"), [
    (b"bytes=0-499", 1000, (OK, 0, 499)),
    (b"bytes=500-999", 1000, (OK, 500, 999)),
    (b"bytes=500-", 1000, (OK, 500, 999)),
    (b"bytes=999-", 1000, (OK, 999, 999)),
    (b"bytes=0-0", 1000, (OK, 0, 0)),
    (b"bytes=-200", 1000, (OK, 800, 999)),
    (b"bytes=-1000", 1000, (OK, 0, 999)),
    (b"bytes=-2000", 1000, (OK, 0, 999)),
    (b"bytes=0-5000", 1000, (OK, 0, 999)),
    (b"bytes=0-99999999999999999999999", 1000, (OK, 0, 999)),
    (b"BYTES=1-2", 1000, (OK, 1, 2)),
    (b"bytes=1000-", 1000, UNSAT),
    (b"bytes=1000-2000", 1000, UNSAT),
    (b"bytes=99999999999999999999999-", 1000, UNSAT),
    (b"bytes=-0", 1000, UNSAT),
    (b"bytes=0-", 0, UNSAT),
    (b"bytes=-5", 0, UNSAT),
    (b"bytes=5-1", 1000, IGNORE),
    (b"bytes=0-1,5-6", 1000, IGNORE),
    (b"bytes=0-1,", 1000, IGNORE),
    (b"items=0-1", 1000, IGNORE),
    (b"bytes", 1000, IGNORE),
    (b"bytes=", 1000, IGNORE),
    (b"bytes=-", 1000, IGNORE),
    (b"bytes=--5", 1000, IGNORE),
    (b"bytes=a-b", 1000, IGNORE),
    (b"bytes=0-1-2", 1000, IGNORE),
    (b"bytes= 0-1", 1000, IGNORE),
    (b"bytes=0 -1", 1000, IGNORE),
    (b"bytes 0-1", 1000, IGNORE),
    (b"bytes=0x10-", 1000, IGNORE),
    (b"", 1000, IGNORE),
])
def test_range(value: bytes, size: int, want: Any) -> None:
    assert rng(value, size) == want


def _fmt(call: Any, cap: int, *args: int) -> tuple[int, bytes]:
    out = ffi.new("char[]", max(cap, 1))
    n = call(out, cap, *args)
    return n, ffi.string(out) if n >= 0 else b""


def test_content_range() -> None:
    assert _fmt(lib.ss_http_content_range, 64, 0, 499, 1000) == (16, b"bytes 0-499/1000")
    assert _fmt(lib.ss_http_content_range_unsatisfied, 64, 1000) == (12, b"bytes */1000")
    big = 2**64 - 1
    want = b"bytes 0-%d/%d" % (big - 1, big)
    assert _fmt(lib.ss_http_content_range, len(want) + 1, 0, big - 1, big) == (len(want), want)
    assert _fmt(lib.ss_http_content_range, len(want), 0, big - 1, big)[0] == -errno.ENOSPC
    assert _fmt(lib.ss_http_content_range_unsatisfied, 12, 1000)[0] == -errno.ENOSPC


# ---- HTTP-date ---------------------------------------------------------------------------

def date(value: bytes, now: int = NOW_2024) -> int | None:
    t = ffi.new("int64_t *")
    rc = lib.ss_http_date_parse(value, len(value), now, t)
    assert rc in (0, -errno.EINVAL)
    return t[0] if rc == 0 else None


T_1994 = calendar.timegm((1994, 11, 6, 8, 49, 37))


@pytest.mark.parametrize(("value", "want"), [
    (b"Sun, 06 Nov 1994 08:49:37 GMT", T_1994),
    (b"Sunday, 06-Nov-94 08:49:37 GMT", T_1994),
    (b"Sun Nov  6 08:49:37 1994", T_1994),
    (b"Sun Nov 16 08:49:37 1994", T_1994 + 10 * 86400),
    (b"Thu, 01 Jan 1970 00:00:00 GMT", 0),
    (b"Wed, 31 Dec 1969 23:59:59 GMT", -1),
    (b"Tue, 29 Feb 2000 12:00:00 GMT", calendar.timegm((2000, 2, 29, 12, 0, 0))),
    (b"Thu, 29 Feb 2024 00:00:00 GMT", calendar.timegm((2024, 2, 29, 0, 0, 0))),
    (b"Fri, 31 Dec 9999 23:59:59 GMT", 253402300799),
    (b"Sat, 01 Jan 0000 00:00:00 GMT", -62167219200),
    (b"Wed, 31 Dec 2008 23:59:60 GMT", calendar.timegm((2009, 1, 1, 0, 0, 0))),
    # Day names are checked for spelling, not against the date.
    (b"Mon, 06 Nov 1994 08:49:37 GMT", T_1994),
    # RFC 850's two-digit year: within 50 years ahead of now, else the century before.
    (b"Monday, 01-Jan-70 00:00:00 GMT", calendar.timegm((2070, 1, 1, 0, 0, 0))),
    (b"Monday, 01-Jan-74 00:00:00 GMT", calendar.timegm((2074, 1, 1, 0, 0, 0))),
    (b"Monday, 01-Jan-75 00:00:00 GMT", calendar.timegm((1975, 1, 1, 0, 0, 0))),
    (b"Wednesday, 01-Jan-25 00:00:00 GMT", calendar.timegm((2025, 1, 1, 0, 0, 0))),
    # invalid
    (b"sun, 06 nov 1994 08:49:37 GMT", None),
    (b"Sun, 06 Nov 1994 08:49:37 gmt", None),
    (b"Sun, 06 Nov 1994 08:49:37 UTC", None),
    (b"Sun, 6 Nov 1994 08:49:37 GMT", None),
    (b"Sun,  6 Nov 1994 08:49:37 GMT", None),
    (b"Sun, 06 Nov 94 08:49:37 GMT", None),
    (b"Sun, 06 Nov 1994 24:00:00 GMT", None),
    (b"Sun, 06 Nov 1994 08:60:00 GMT", None),
    (b"Sun, 06 Nov 1994 08:49:61 GMT", None),
    (b"Sun, 06 Nov 1994 8:49:37 GMT", None),
    (b"Sun, 31 Apr 1994 08:49:37 GMT", None),
    (b"Mon, 29 Feb 1900 08:49:37 GMT", None),
    (b"Sun, 00 Nov 1994 08:49:37 GMT", None),
    (b"Xyz, 06 Nov 1994 08:49:37 GMT", None),
    (b"Sun, 06 Foo 1994 08:49:37 GMT", None),
    (b"Sun, 06 Nov 1994 08:49:37 GMT ", None),
    (b"Sun, 06-Nov-94 08:49:37 GMT", None),
    (b"Sunday, 06-Nov-1994 08:49:37 GMT", None),
    (b"Sunday, 06 Nov 94 08:49:37 GMT", None),
    (b"Sundae, 06-Nov-94 08:49:37 GMT", None),
    (b"Sun Nov 6 08:49:37 1994", None),
    (b"Sun Nov 06 08:49:37 94  ", None),
    (b"Sun Nov  6 08:49:37 1994 GMT", None),
    (b"1994-11-06T08:49:37Z", None),
    (b"784111777", None),
    (b"", None),
])
def test_date_parse(value: bytes, want: int | None) -> None:
    assert date(value) == want


def fmt_date(t: int, cap: int = 30) -> tuple[int, bytes]:
    out = ffi.new("char[]", cap)
    n = lib.ss_http_date_format(t, out, cap)
    return n, ffi.string(out) if n > 0 else b""


def test_date_format_edges() -> None:
    assert fmt_date(T_1994) == (29, b"Sun, 06 Nov 1994 08:49:37 GMT")
    assert fmt_date(0) == (29, b"Thu, 01 Jan 1970 00:00:00 GMT")
    assert fmt_date(-1) == (29, b"Wed, 31 Dec 1969 23:59:59 GMT")
    assert fmt_date(253402300799) == (29, b"Fri, 31 Dec 9999 23:59:59 GMT")
    assert fmt_date(-62167219200) == (29, b"Sat, 01 Jan 0000 00:00:00 GMT")
    assert fmt_date(253402300800)[0] == -errno.EINVAL
    assert fmt_date(-62167219201)[0] == -errno.EINVAL
    assert fmt_date(0, cap=29)[0] == -errno.ENOSPC
    assert fmt_date(-2**63)[0] == -errno.EINVAL
    assert fmt_date(2**63 - 1)[0] == -errno.EINVAL


@pytest.mark.parametrize("now", [-2**63, -1, 0, 2**63 - 1])
def test_rfc850_year_with_any_now(now: int) -> None:
    assert date(b"Sunday, 06-Nov-94 08:49:37 GMT", now) is not None


def test_dates_agree_with_the_standard_library_over_the_whole_range() -> None:
    rng_ = random.Random(9110)
    stamps = [rng_.randrange(-62135596800, 253402300800) for _ in range(3000)]
    stamps += [rng_.randrange(0, 2**32) for _ in range(1000)] + [951782400, 951868800]
    for t in stamps:
        n, text = fmt_date(t)
        assert text == email.utils.formatdate(t, usegmt=True).encode(), t
        assert date(text) == t
        # The same instant in asctime form (day of month space-padded).
        asctime = b"%s %s %2d %s %s" % (text[:3], text[8:11], int(text[5:7]), text[17:25],
                                        text[12:16])
        assert date(asctime) == t


# ---- entity-tags -------------------------------------------------------------------------

def _etag_call(fn: Any, lst: bytes, etag: bytes | None) -> int:
    return fn(lst, len(lst), etag if etag is not None else ffi.NULL, len(etag or b""))


@pytest.mark.parametrize(("lst", "etag", "if_match", "if_none_match"), [
    (b'"a"', b'"a"', 1, 1),
    (b'"a"', b'W/"a"', 0, 1),
    (b'W/"a"', b'"a"', 0, 1),
    (b'W/"a"', b'W/"a"', 0, 1),
    (b'"a"', b'"b"', 0, 0),
    (b'"a", "b"', b'"b"', 1, 1),
    (b'"a",W/"b" , "c"', b'W/"b"', 0, 1),
    (b'"a", , "b"', b'"b"', 1, 1),
    (b'"x,y"', b'"x,y"', 1, 1),
    (b'"x,y"', b'"x"', 0, 0),
    (b'""', b'""', 1, 1),
    (b'"a"', b'"A"', 0, 0),
    (b"*", b'"a"', 1, 1),
    (b" * ", b'W/"a"', 1, 1),
    (b"*", None, 0, 0),
    (b'"a"', None, 0, 0),
    # malformed lists and tags
    (b"a", b'"a"', -errno.EINVAL, -errno.EINVAL),
    (b'"a', b'"a"', -errno.EINVAL, -errno.EINVAL),
    (b'"a"b', b'"a"', -errno.EINVAL, -errno.EINVAL),
    (b'w/"a"', b'"a"', -errno.EINVAL, -errno.EINVAL),
    (b'"a", b', b'"a"', -errno.EINVAL, -errno.EINVAL),
    (b'*, "a"', b'"a"', -errno.EINVAL, -errno.EINVAL),
    (b'"a\x01"', b'"a"', -errno.EINVAL, -errno.EINVAL),
    (b"", b'"a"', -errno.EINVAL, -errno.EINVAL),
    (b", ,", b'"a"', -errno.EINVAL, -errno.EINVAL),
    (b'"a"', b"a", -errno.EINVAL, -errno.EINVAL),
])
def test_etag_lists(lst: bytes, etag: bytes | None, if_match: int, if_none_match: int) -> None:
    assert _etag_call(lib.ss_http_if_match, lst, etag) == if_match
    assert _etag_call(lib.ss_http_if_none_match, lst, etag) == if_none_match


# ---- Cache-Control -----------------------------------------------------------------------

FLAGS = ("no_store", "no_cache", "private", "public", "must_revalidate", "proxy_revalidate")
NUMBERS = ("max_age", "s_maxage", "stale_while_revalidate", "stale_if_error")


def cache_control(*values: bytes) -> tuple[int, dict[str, int]]:
    cc = ffi.new("struct ss_http_cache_control *")
    lib.ss_http_cache_control_init(cc)
    known = sum(lib.ss_http_cache_control_parse(v, len(v), cc) for v in values)
    got = {name: getattr(cc, name) for name in FLAGS + NUMBERS}
    return known, {k: v for k, v in got.items() if v != (0 if k in FLAGS else -1)}


@pytest.mark.parametrize(("values", "known", "want"), [
    ((b"no-store",), 1, {"no_store": 1}),
    ((b"public, must-revalidate, proxy-revalidate, private, no-cache",), 5,
     {"public": 1, "must_revalidate": 1, "proxy_revalidate": 1, "private": 1, "no_cache": 1}),
    ((b"max-age=60, s-maxage=120, stale-while-revalidate=30, stale-if-error=600",), 4,
     {"max_age": 60, "s_maxage": 120, "stale_while_revalidate": 30, "stale_if_error": 600}),
    ((b'max-age="60"',), 1, {"max_age": 60}),
    ((b"MAX-AGE=5, No-Store",), 2, {"max_age": 5, "no_store": 1}),
    ((b"max-age=0",), 1, {"max_age": 0}),
    ((b"max-age=abc",), 1, {}),
    ((b"max-age=",), 1, {}),
    ((b"max-age",), 1, {}),
    ((b"max-age=-5",), 1, {}),
    ((b"max-age=1.5",), 1, {}),
    ((b'max-age="6\\0"',), 1, {}),
    ((b"max-age = 5",), 0, {}),
    ((b"max-age=99999999999999999999",), 1, {"max_age": 2**31}),
    ((b"max-age=10, max-age=20",), 2, {"max_age": 10}),
    ((b"max-age=bad, max-age=20",), 2, {"max_age": 20}),
    ((b'no-cache="Set-Cookie", private="X-A"',), 2, {"no_cache": 1, "private": 1}),
    ((b"foo=bar, max-age=5, baz",), 1, {"max_age": 5}),
    ((b'ext="a,max-age=9", max-age=7',), 1, {"max_age": 7}),
    ((b", ,no-store,,",), 1, {"no_store": 1}),
    ((b"max-age=5", b"no-store", b"max-age=9"), 3, {"max_age": 5, "no_store": 1}),
    ((b"",), 0, {}),
])
def test_cache_control(values: tuple[bytes, ...], known: int, want: dict[str, int]) -> None:
    assert cache_control(*values) == (known, want)


# ---- response heads ----------------------------------------------------------------------

def write(cap: int, steps: list[tuple[str, tuple[Any, ...]]]) -> tuple[int, bytes]:
    buf = ffi.new("char[]", max(cap, 1))
    w = ffi.new("struct ss_http_writer *")
    lib.ss_http_writer_init(w, buf, cap)
    for name, args in steps:
        getattr(lib, f"ss_http_write_{name}")(w, *args)
    n = lib.ss_http_write_end(w)
    return n, ffi.buffer(buf, n)[:] if n > 0 else b""


HEAD_STEPS = [("status", (206,)), ("field", (b"Content-Range", b"bytes 0-1/10", 12)),
              ("field_u64", (b"Content-Length", 2)), ("field_date", (b"Date", T_1994)),
              ("field", (b"ETag", b'"a"', 3))]
HEAD_BYTES = (b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-1/10\r\n"
              b"Content-Length: 2\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nETag: \"a\"\r\n\r\n")


def test_writer_builds_a_head() -> None:
    assert write(512, HEAD_STEPS) == (len(HEAD_BYTES), HEAD_BYTES)
    assert write(len(HEAD_BYTES), HEAD_STEPS) == (len(HEAD_BYTES), HEAD_BYTES)


def test_writer_reports_a_full_buffer() -> None:
    assert write(len(HEAD_BYTES) - 1, HEAD_STEPS)[0] == -errno.ENOSPC
    assert write(0, [("status", (200,))])[0] == -errno.ENOSPC


@pytest.mark.parametrize("steps", [
    [("status", (200,)), ("field", (b"X-A", b"a\r\nInjected: 1", 15))],
    [("status", (200,)), ("field", (b"X-A", b"a\nb", 3))],
    [("status", (200,)), ("field", (b"X-A", b"a\x00b", 3))],
    [("status", (200,)), ("field", (b"X A", b"a", 1))],
    [("status", (200,)), ("field", (b"", b"a", 1))],
    [("status", (200,)), ("field", (b"X:A", b"a", 1))],
    [("status", (99,))],
    [("status", (1000,))],
    [("status", (200,)), ("field_date", (b"Date", 2**40))],
])
def test_writer_refuses_what_would_break_framing(steps: list[Any]) -> None:
    assert write(512, steps)[0] == -errno.EINVAL


def test_first_writer_error_sticks() -> None:
    steps = [("status", (200,)), ("field", (b"X A", b"a", 1)), ("field", (b"X", b"y" * 600, 600))]
    assert write(512, steps)[0] == -errno.EINVAL


@pytest.mark.parametrize(("status", "line"), [
    (200, b"HTTP/1.1 200 OK\r\n"), (304, b"HTTP/1.1 304 Not Modified\r\n"),
    (412, b"HTTP/1.1 412 Precondition Failed\r\n"),
    (416, b"HTTP/1.1 416 Range Not Satisfiable\r\n"),
    (431, b"HTTP/1.1 431 Request Header Fields Too Large\r\n"),
    (505, b"HTTP/1.1 505 HTTP Version Not Supported\r\n"),
    (299, b"HTTP/1.1 299 \r\n"),
])
def test_status_lines(status: int, line: bytes) -> None:
    assert write(128, [("status", (status,))])[1] == line + b"\r\n"


def test_every_error_status_has_a_reason_phrase() -> None:
    statuses = {lib.ss_http_error_status(v)
                for k, v in ffi.typeof("enum ss_http_error").relements.items()
                if k.startswith("SS_HTTP_E_")}
    for status in statuses | {100, 200, 201, 204, 206, 304, 404, 412, 416}:
        assert ffi.string(lib.ss_http_reason(status)), status
