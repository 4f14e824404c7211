"""Micro-measurement of ss_hash_md5_batch: scalar md5 vs the SIMD lanes.

1M random 16-byte keys (seeded) are hashed in batches of 32, the switch fast
path's burst, once per instruction set this CPU runs (scalar, AVX2, AVX-512F).
Each batch is one cffi call, so the per-key figures include the call's cost;
it is measured on its own (calls with n = 0) and also shown subtracted. Each
figure is the best of --repeat runs. Print-only: no thresholds, no asserts.

Usage (from the repository root, after `make build`):
  .venv/bin/python bench/md5_batch.py [--keys N] [--batch B] [--repeat R]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dataplane import fastpath  # noqa: E402  (after the path set-up above)

KEY_BYTES = 16
ISA_NAMES = {0: "scalar", 1: "avx2", 2: "avx512f"}


def time_batches(lib, ptrs, lens, out, nkeys: int, batch: int, isa: int, n_per_call: int,
                 repeat: int) -> float:
    """Best-of-repeat wall seconds to walk nkeys keys in calls of batch keys.

    n_per_call is what each call is told to hash: batch, or 0 to time the
    cffi call alone.
    """
    starts = range(0, nkeys, batch)
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for s in starts:
            lib.ss_hash_md5_batch(ptrs + s, lens + s, n_per_call, out + s, isa)
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keys", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    ffi, lib = fastpath.load()

    rng = random.Random(1321)
    blob = ffi.from_buffer(rng.randbytes(args.keys * KEY_BYTES))
    ptrs = ffi.new("const char *[]", [blob + i * KEY_BYTES for i in range(args.keys)])
    lens = ffi.new("uint32_t[]", [KEY_BYTES] * args.keys)
    out = ffi.new("uint32_t[]", args.keys)

    call_s = time_batches(lib, ptrs, lens, out, args.keys, args.batch, 0, 0, args.repeat)
    call_ns = call_s * 1e9 / args.keys
    print(f"{args.keys:,} keys of {KEY_BYTES} B, batches of {args.batch}, best of "
          f"{args.repeat}; cffi call alone: {call_ns:.2f} ns/key")
    print(f"{'isa':<8} {'ns/key':>8} {'net ns/key':>11} {'x scalar':>9} {'x net':>6}")
    results: dict[int, tuple[float, float]] = {}
    for isa, name in ISA_NAMES.items():
        if lib.ss_hash_md5_batch(ptrs, lens, 0, out, isa) != 0:
            print(f"{name:<8} not available on this CPU")
            continue
        secs = time_batches(lib, ptrs, lens, out, args.keys, args.batch, isa, args.batch,
                            args.repeat)
        ns = secs * 1e9 / args.keys
        results[isa] = (ns, ns - call_ns)
        scalar_ns, scalar_net = results[0]
        print(f"{name:<8} {ns:8.2f} {ns - call_ns:11.2f} {scalar_ns / ns:9.2f} "
              f"{scalar_net / (ns - call_ns):6.2f}")
    best = max(results)
    print(f"best ({ISA_NAMES[best]}) vs scalar: {results[0][0] / results[best][0]:.2f}x "
          f"({results[0][1] / results[best][1]:.2f}x without the cffi call)")


if __name__ == "__main__":
    main()
