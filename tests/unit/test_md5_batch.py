"""ss_hash_md5_batch (dataplane/src/ring/ss_hashkit_md5x.c): the ketama md5 of many keys.

Every instruction set the running CPU supports must give, key for key, the
first 4 bytes of hashlib's MD5 read little-endian (what ss_hash_key(MD5)
returns). Batch sizes straddle the 8- and 16-lane group widths, and key
lengths straddle the one-block limit (55 bytes), so full groups, partial
groups, lone leftovers and keys that go scalar mid-batch are all exercised.
"""

from __future__ import annotations

import errno
import hashlib
import random
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("dataplane._fastpath", reason="the C data plane is not built")

from dataplane import fastpath  # noqa: E402  (after the skip above)

BATCH_SIZES = (0, 1, 7, 8, 9, 15, 16, 17, 32, 33, 100)
BOUNDARY_LENGTHS = (0, 1, 3, 4, 5, 54, 55, 56, 57, 63, 64, 65, 119, 120, 250)
ISA_SCALAR, ISA_AVX2, ISA_AVX512F = 0, 1, 2
CPUINFO_FLAG = {ISA_AVX2: "avx2", ISA_AVX512F: "avx512f"}


def _ketama_md5(key: bytes) -> int:
    return int.from_bytes(hashlib.md5(key).digest()[:4], "little")


def _random_key(rng: random.Random, length: int) -> bytes:
    # Bytes over the whole range, so >= 0x80 (sign-extension trouble elsewhere) occur.
    return bytes(rng.randrange(256) for _ in range(length))


def _short_keys(seed: int, count: int) -> list[bytes]:
    """Keys that all fit one MD5 block (<= 55 bytes): every one takes a lane."""
    rng = random.Random(seed)
    return [_random_key(rng, rng.choice((rng.randrange(56), 55))) for _ in range(count)]


def _mixed_keys(seed: int, count: int) -> list[bytes]:
    """Lengths 0..250 (memcached's limit), short ones weighted up, boundaries mixed in."""
    rng = random.Random(seed)
    keys = []
    for i in range(count):
        if i % 4 == 3:
            length = rng.choice(BOUNDARY_LENGTHS)
        elif i % 4 == 2:
            length = rng.randrange(251)
        else:
            length = rng.randrange(56)
        keys.append(_random_key(rng, length))
    return keys


def _hash_batch(keys: list[bytes], isa: int) -> tuple[int, list[int]]:
    """(return code, out[]) of ss_hash_md5_batch over keys; out starts as 0xdeadbeef."""
    ffi, lib = fastpath.load()
    bufs = [ffi.new("char[]", k) for k in keys]  # kept alive for the call
    ptrs = ffi.new("const char *[]", bufs) if keys else ffi.NULL
    lens = ffi.new("uint32_t[]", [len(k) for k in keys]) if keys else ffi.NULL
    out = ffi.new("uint32_t[]", [0xDEADBEEF] * max(len(keys), 1))
    rc = lib.ss_hash_md5_batch(ptrs, lens, len(keys), out, isa)
    return rc, [int(out[i]) for i in range(len(keys))]


def _lib() -> Any:
    return fastpath.load()[1]


def _available_isas() -> list[int]:
    """The instruction sets ss_hash_md5_batch accepts on this CPU (an empty batch each)."""
    ffi, lib = fastpath.load()
    return [isa for isa in (ISA_SCALAR, ISA_AVX2, ISA_AVX512F)
            if lib.ss_hash_md5_batch(ffi.NULL, ffi.NULL, 0, ffi.NULL, isa) == 0]


def _cpuinfo_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def test_isa_numbers_follow_the_c_enum() -> None:
    lib = _lib()
    assert (lib.SS_HASH_ISA_BEST, lib.SS_HASH_ISA_SCALAR, lib.SS_HASH_ISA_AVX2,
            lib.SS_HASH_ISA_AVX512F) == (-1, ISA_SCALAR, ISA_AVX2, ISA_AVX512F)


def test_scalar_and_best_always_run() -> None:
    keys = _mixed_keys(1, 40)
    want = [_ketama_md5(k) for k in keys]
    assert _hash_batch(keys, ISA_SCALAR) == (0, want)
    assert _hash_batch(keys, -1) == (0, want)


def test_simd_isas_follow_the_cpu_flags() -> None:
    # Linux lists avx2/avx512f only when the CPU has them and the kernel enabled them.
    flags = _cpuinfo_flags()
    available = _available_isas()
    assert ISA_SCALAR in available
    for isa, flag in CPUINFO_FLAG.items():
        if flags:
            assert (isa in available) == (flag in flags), (isa, flag)


@pytest.mark.parametrize("isa", [99, 3, -2])
def test_unknown_isa_is_refused_and_out_left_alone(isa: int) -> None:
    rc, out = _hash_batch([b"a", b"bc", b"def"], isa)
    assert rc == -errno.ENOTSUP
    assert out == [0xDEADBEEF] * 3


def test_unavailable_isa_is_refused() -> None:
    for isa in set(CPUINFO_FLAG) - set(_available_isas()):
        assert _hash_batch([b"k"] * 20, isa)[0] == -errno.ENOTSUP


@pytest.mark.parametrize("n", BATCH_SIZES)
def test_short_keys_match_hashlib_on_every_isa(n: int) -> None:
    keys = _short_keys(1000 + n, n)
    want = [_ketama_md5(k) for k in keys]
    for isa in _available_isas():
        assert _hash_batch(keys, isa) == (0, want), isa


@pytest.mark.parametrize("n", BATCH_SIZES)
def test_mixed_lengths_match_hashlib_on_every_isa(n: int) -> None:
    keys = _mixed_keys(2000 + n, n)
    want = [_ketama_md5(k) for k in keys]
    for isa in _available_isas():
        assert _hash_batch(keys, isa) == (0, want), isa


def test_every_length_up_to_memcacheds_limit() -> None:
    rng = random.Random(3)
    keys = [_random_key(rng, length) for length in range(251)]
    keys += [bytes([0xFF]) * 55, bytes([0x80]) * 56, bytes([0x80 + i for i in range(63)]),
             b"\xff" * 64]
    want = [_ketama_md5(k) for k in keys]
    for isa in _available_isas():
        assert _hash_batch(keys, isa) == (0, want), isa


def test_agrees_with_ss_hash_key() -> None:
    keys = _mixed_keys(4, 33)
    want = [fastpath.hash_key("md5", k) for k in keys]
    assert _hash_batch(keys, -1) == (0, want)
