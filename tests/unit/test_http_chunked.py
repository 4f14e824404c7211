"""ss_http_chunked_* (dataplane/src/http/ss_http_chunked.c): chunked bodies fed in pieces.

The decoder is a state machine fed arbitrary slices, so each body below is decoded whole,
byte by byte, and cut in two at every offset: the decoded data, the result, the bytes
consumed and the trailer fields must come out the same every time. Data spans must point
into the slice that was fed (the decoder never copies), and bytes after the body must be
left for the next request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

pytest.importorskip("dataplane._fastpath", reason="the C data plane is not built")

from dataplane import fastpath  # noqa: E402  (after the skip above)

ffi, lib = fastpath.load()
MORE, DONE = lib.SS_HTTP_CHUNKED_MORE, lib.SS_HTTP_CHUNKED_DONE
SIG = b"ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648"


@dataclass(frozen=True)
class Decoded:
    rc: int
    body: bytes
    consumed: int
    trailers: tuple[tuple[bytes, bytes], ...]


def decode(pieces: list[bytes], max_body: int = 0, max_ext: int = 0,
           trailer_cap: int = 256) -> Decoded:
    """Feed the pieces in order, as a connection's reads would arrive."""
    c = ffi.new("struct ss_http_chunked *")
    tbuf = ffi.new("char[]", max(trailer_cap, 1))
    lib.ss_http_chunked_init(c, max_body, max_ext, tbuf if trailer_cap else ffi.NULL,
                             trailer_cap)
    out = ffi.new("struct ss_http_chunk_out *")
    body, consumed, rc = bytearray(), 0, MORE
    for piece in pieces:
        buf = ffi.new("char[]", len(piece) or 1)
        ffi.memmove(buf, piece, len(piece))
        pos = 0
        while rc == MORE and pos < len(piece):
            rc = lib.ss_http_chunked_feed(c, buf + pos, len(piece) - pos, out)
            assert out.consumed <= len(piece) - pos
            if out.data != ffi.NULL:
                at = int(ffi.cast("uintptr_t", out.data)) - int(ffi.cast("uintptr_t", buf))
                assert pos <= at and at + out.data_len <= pos + out.consumed, "span outside"
                body += ffi.buffer(out.data, out.data_len)[:]
            assert rc != MORE or out.consumed > 0, "no progress on non-empty input"
            pos += out.consumed
            consumed += out.consumed
        if rc != MORE:
            break
    trailers = tuple((ffi.buffer(f.name, f.name_len)[:], ffi.buffer(f.value, f.value_len)[:])
                     for f in c.trailers[0:c.ntrailers])
    return Decoded(rc, bytes(body), consumed, trailers)


def every_split_agrees(data: bytes, **kw: int) -> Decoded:
    """Decode whole, byte by byte and cut at every offset; all must agree."""
    whole = decode([data], **kw)
    assert decode([data[i:i + 1] for i in range(len(data))], **kw) == whole, "byte by byte"
    for k in range(1, len(data)):
        assert decode([data[:k], data[k:]], **kw) == whole, f"cut at {k}"
    return whole


def err(name: str) -> int:
    return getattr(lib, f"SS_HTTP_E_{name}")


VALID: list[tuple[str, bytes, bytes, tuple[tuple[bytes, bytes], ...]]] = [
    ("one chunk", b"5\r\nhello\r\n0\r\n\r\n", b"hello", ()),
    ("empty body", b"0\r\n\r\n", b"", ()),
    ("several chunks, hex in both cases",
     b"a\r\n0123456789\r\nA\r\nabcdefghij\r\n1\r\n!\r\n0\r\n\r\n",
     b"0123456789abcdefghij!", ()),
    ("leading zeros", b"0005\r\nhello\r\n000\r\n\r\n", b"hello", ()),
    ("sixteen digits", b"0000000000000003\r\nabc\r\n0\r\n\r\n", b"abc", ()),
    ("data holding CRLF and digits", b"7\r\n\r\n0\r\n\r\n\r\n0\r\n\r\n", b"\r\n0\r\n\r\n", ()),
    ("extensions skipped", b"5;name=value;flag\r\nhello\r\n0;last\r\n\r\n", b"hello", ()),
    ("quoted extension with ; and escapes",
     b'5;a="x;\\"y\\" z";b=c\r\nhello\r\n0\r\n\r\n', b"hello", ()),
    ("whitespace around the extension", b"5 \t; a = b\r\nhello\r\n0\r\n\r\n", b"hello", ()),
    ("trailer fields", b"3\r\nabc\r\n0\r\nX-Amz-Checksum-Crc32: NhCmhg==\r\n"
     b"x-amz-trailer-signature:  ff00 \r\n\r\n", b"abc",
     ((b"X-Amz-Checksum-Crc32", b"NhCmhg=="), (b"x-amz-trailer-signature", b"ff00"))),
    ("aws-chunked", b"4;chunk-signature=" + SIG + b"\r\nwxyz\r\n0;chunk-signature=" + SIG
     + b"\r\n\r\n", b"wxyz", ()),
]


@pytest.mark.parametrize(("data", "body", "trailers"), [v[1:] for v in VALID],
                         ids=[v[0] for v in VALID])
def test_valid_bodies_decode_the_same_at_every_split(data: bytes, body: bytes,
                                                     trailers: tuple[Any, ...]) -> None:
    got = every_split_agrees(data)
    assert got == Decoded(DONE, body, len(data), trailers)


def test_bytes_after_the_body_are_not_consumed() -> None:
    data = b"5\r\nhello\r\n0\r\n\r\n"
    got = every_split_agrees(data + b"GET / HTTP/1.1\r\n")
    assert got == Decoded(DONE, b"hello", len(data), ())


def test_a_done_decoder_consumes_nothing_more() -> None:
    c = ffi.new("struct ss_http_chunked *")
    lib.ss_http_chunked_init(c, 0, 0, ffi.NULL, 0)
    out = ffi.new("struct ss_http_chunk_out *")
    data = b"0\r\n\r\nnext"
    assert lib.ss_http_chunked_feed(c, data, len(data), out) == DONE and out.consumed == 5
    assert lib.ss_http_chunked_feed(c, b"next", 4, out) == DONE and out.consumed == 0


def test_one_call_stops_after_one_data_span() -> None:
    c = ffi.new("struct ss_http_chunked *")
    lib.ss_http_chunked_init(c, 0, 0, ffi.NULL, 0)
    out = ffi.new("struct ss_http_chunk_out *")
    data = ffi.new("char[]", b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
    assert lib.ss_http_chunked_feed(c, data, 20, out) == MORE
    assert (ffi.buffer(out.data, out.data_len)[:], out.consumed) == (b"abc", 6)
    assert out.data == data + 3, "the span is the input itself, not a copy"
    assert lib.ss_http_chunked_feed(c, data + 6, 14, out) == MORE
    assert (ffi.buffer(out.data, out.data_len)[:], out.consumed) == (b"de", 7)
    assert lib.ss_http_chunked_feed(c, data + 13, 7, out) == DONE
    assert (out.data, out.consumed) == (ffi.NULL, 7)


def test_body_limit_boundary() -> None:
    data = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    assert every_split_agrees(data, max_body=11).rc == DONE
    got = every_split_agrees(data, max_body=10)
    # Refused at the digit that makes the size too big, before any of its data.
    assert got == Decoded(err("BODY_TOO_LARGE"), b"hello", data.index(b"6") + 1, ())


def test_extension_limit_boundary() -> None:
    data = b"1;" + b"e" * 8 + b"\r\nx\r\n0\r\n\r\n"  # 9 extension bytes, ';' included
    assert every_split_agrees(data, max_ext=9).rc == DONE
    assert every_split_agrees(data, max_ext=8).rc == err("CHUNK_EXT")


def test_default_extension_limit_is_4k() -> None:
    assert decode([b"1;" + b"e" * 4095 + b"\r\nx\r\n0\r\n\r\n"]).rc == DONE
    assert decode([b"1;" + b"e" * 4096 + b"\r\nx\r\n0\r\n\r\n"]).rc == err("CHUNK_EXT")


def test_trailer_buffer_boundary() -> None:
    line = b"X-Amz-Checksum-Sha256: abc"
    data = b"0\r\n" + line + b"\r\n\r\n"
    assert every_split_agrees(data, trailer_cap=len(line)).rc == DONE
    assert every_split_agrees(data, trailer_cap=len(line) - 1).rc == err("TRAILER_TOO_LARGE")
    assert decode([data], trailer_cap=0).rc == err("TRAILER_TOO_LARGE")
    assert decode([b"0\r\n\r\n"], trailer_cap=0).rc == DONE


def test_trailer_field_count_limit() -> None:
    lines = b"".join(b"T%d: v\r\n" % i for i in range(16))
    assert decode([b"0\r\n" + lines + b"\r\n"], trailer_cap=1024).rc == DONE
    assert decode([b"0\r\n" + lines + b"T16: v\r\n\r\n"],
                  trailer_cap=1024).rc == err("TRAILER_TOO_LARGE")


ERRORS: list[tuple[str, bytes, str]] = [
    ("no size", b"\r\nhello\r\n0\r\n\r\n", "CHUNK_SIZE"),
    ("extension without a size", b";a\r\n", "CHUNK_SIZE"),
    ("not hex", b"g\r\n", "CHUNK_SIZE"),
    ("negative size", b"-5\r\nhello\r\n", "CHUNK_SIZE"),
    ("hex prefix", b"0x5\r\nhello\r\n", "CHUNK_SIZE"),
    ("seventeen digits", b"00000000000000005\r\nhello\r\n0\r\n\r\n", "CHUNK_SIZE"),
    ("size over 64 bits", b"10000000000000000\r\n", "CHUNK_SIZE"),
    ("garbage after the size", b"5x\r\nhello\r\n", "CHUNK_SIZE"),
    ("whitespace then CR", b"5 \r\nhello\r\n0\r\n\r\n", "CHUNK_EXT"),
    ("whitespace then a byte", b"5 x\r\nhello\r\n", "CHUNK_EXT"),
    ("a delimiter in an extension", b"5;a@b\r\nhello\r\n", "CHUNK_EXT"),
    ("an unterminated quote", b'5;a="x\r\nhello\r\n0\r\n\r\n', "CHUNK_EXT"),
    ("a control byte in a quote", b'5;a="\x01"\r\nhello\r\n', "CHUNK_EXT"),
    ("an escaped control byte", b'5;a="\\\x01"\r\nhello\r\n', "CHUNK_EXT"),
    ("bare LF after the size", b"5\nhello\r\n0\r\n\r\n", "LINE_ENDING"),
    ("bare LF after an extension", b"5;a\nhello\r\n", "LINE_ENDING"),
    ("bare LF inside a quote", b'5;a="\n"\r\n', "LINE_ENDING"),
    ("bare CR after the size", b"5\rhello\r\n", "LINE_ENDING"),
    ("bare LF before the size", b"\n5\r\nhello\r\n", "LINE_ENDING"),
    ("data longer than its size", b"5\r\nhelloX\r\n0\r\n\r\n", "CHUNK_CRLF"),
    ("data shorter than its size", b"5\r\nhell\r\n0\r\n\r\n", "CHUNK_CRLF"),
    ("bare LF after data", b"5\r\nhello\n0\r\n\r\n", "CHUNK_CRLF"),
    ("bare CR after data", b"5\r\nhello\r0\r\n\r\n", "CHUNK_CRLF"),
    ("bare LF ends the body", b"0\r\n\n", "LINE_ENDING"),
    ("bare CR ends the body", b"0\r\n\rX", "LINE_ENDING"),
    ("bare LF ends a trailer line", b"0\r\nX-A: b\n\r\n", "LINE_ENDING"),
    ("bare CR in a trailer line", b"0\r\nX-A: b\rc\r\n\r\n", "LINE_ENDING"),
    ("space before a trailer colon", b"0\r\nX-A : b\r\n\r\n", "FIELD_NAME_SPACE"),
    ("trailer obs-fold", b"0\r\nX-A: b\r\n c\r\n\r\n", "OBS_FOLD"),
    ("trailer without colon", b"0\r\nX-A\r\n\r\n", "FIELD_NAME"),
    ("control byte in a trailer value", b"0\r\nX-A: \x01\r\n\r\n", "FIELD_VALUE"),
]


@pytest.mark.parametrize(("data", "code"), [(d, c) for _, d, c in ERRORS],
                         ids=[name for name, _, _ in ERRORS])
def test_errors_give_their_exact_code_at_every_split(data: bytes, code: str) -> None:
    assert every_split_agrees(data).rc == err(code)


def test_errors_stick() -> None:
    c = ffi.new("struct ss_http_chunked *")
    lib.ss_http_chunked_init(c, 0, 0, ffi.NULL, 0)
    out = ffi.new("struct ss_http_chunk_out *")
    assert lib.ss_http_chunked_feed(c, b"zz", 2, out) == err("CHUNK_SIZE")
    assert lib.ss_http_chunked_feed(c, b"0\r\n\r\n", 5, out) == err("CHUNK_SIZE")
    assert out.consumed == 0


def _ext_after_size_line(data: bytes, name: bytes) -> tuple[int, bytes]:
    c = ffi.new("struct ss_http_chunked *")
    lib.ss_http_chunked_init(c, 0, 0, ffi.NULL, 0)
    out = ffi.new("struct ss_http_chunk_out *")
    buf = ffi.new("char[]", data)
    lib.ss_http_chunked_feed(c, buf, len(data), out)
    value = ffi.new("const char **")
    n = ffi.new("size_t *")
    rc = lib.ss_http_chunked_ext(c, name, value, n)
    return rc, (ffi.buffer(value[0], n[0])[:] if rc == 0 else b"")


@pytest.mark.parametrize(("line", "name", "want"), [
    (b"4;chunk-signature=" + SIG, b"chunk-signature", (0, SIG)),
    (b"4;chunk-signature=" + SIG, b"Chunk-Signature", (0, SIG)),
    (b"4 ; a=1 ;chunk-signature = " + SIG, b"chunk-signature", (0, SIG)),
    (b'4;a="q;x";b="two words"', b"b", (0, b"two words")),
    (b"4;flag;a=1", b"flag", (0, b"")),
    (b"4;a=1", b"chunk-signature", (-2, b"")),  # -ENOENT
    (b"4", b"chunk-signature", (-2, b"")),
    (b"4;pad=" + b"p" * 200 + b";chunk-signature=" + SIG, b"chunk-signature", (-7, b"")),
])
def test_chunk_extension_lookup(line: bytes, name: bytes, want: tuple[int, bytes]) -> None:
    # -7 is -E2BIG: the extensions did not fit SS_HTTP_CHUNK_EXT_KEEP bytes.
    assert _ext_after_size_line(line + b"\r\nwxyz\r\n", name) == want


def test_trailer_lookup() -> None:
    c = ffi.new("struct ss_http_chunked *")
    tbuf = ffi.new("char[]", 256)
    lib.ss_http_chunked_init(c, 0, 0, tbuf, 256)
    out = ffi.new("struct ss_http_chunk_out *")
    data = b"0\r\nx-amz-checksum-crc32: sOO8/Q==\r\n\r\n"
    assert lib.ss_http_chunked_feed(c, data, len(data), out) == DONE
    f = lib.ss_http_chunked_trailer(c, b"X-Amz-Checksum-CRC32")
    assert ffi.buffer(f.value, f.value_len)[:] == b"sOO8/Q=="
    assert lib.ss_http_chunked_trailer(c, b"x-amz-checksum-sha256") == ffi.NULL
