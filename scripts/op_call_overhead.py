"""Per-call cost of the cpu kernels' operators on small and decode-sized weights, batch 1.

    python scripts/op_call_overhead.py [--library PATH/qwen3core_cpu_kernels.so] [--threads 2]

Times the bare operators (``qwen3core_cpu::qlinear`` / ``qlinear_a8`` for int8, int4, w8a8,
w4a8; ``qwen3core_cpu::linear`` for bfloat16) on one bfloat16 row, weights in cache, best of 5
runs of 1000 calls (wall time). A one-tile weight ([16, 1024]) shows what a call costs beyond
its arithmetic (dispatch, checks, the activation layout); [1024, 3072] a decode-sized product.
``--library`` loads an already built kernels library instead of building this checkout's, so
two builds (before / after a change) can be compared on the same machine, one process each.
"""

from __future__ import annotations

import argparse
import time

import torch
from qwen3core_backends.cpu import quant_linear
from qwen3core_backends.cpu.build import load_kernels
from qwen3core_backends.cpu.tiles import pack_weight

from qwen3core.quant.registry import resolve_scheme


def best_call_seconds(call, calls: int = 1000, runs: int = 5) -> float:
    for _ in range(100):
        call()
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        for _ in range(calls):
            call()
        best = min(best, (time.perf_counter() - start) / calls)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--library", help="a built qwen3core_cpu_kernels.so to load instead")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.library:
        torch.ops.load_library(args.library)
        quant_linear.load_kernels = lambda: None  # packing must not build or load another copy
    else:
        load_kernels()
    ops = torch.ops.qwen3core_cpu
    results = []
    for scheme in ("int8", "int4", "w8a8", "w4a8"):
        for n, k in ((16, 1024), (1024, 3072)):
            p = quant_linear.pack_quantized(resolve_scheme(scheme).quantize(torch.randn(n, k)))
            x = torch.randn(1, k).bfloat16()
            if p.act_block is not None:
                def call(p=p, x=x, n=n):
                    return ops.qlinear_a8(x, p.levels, p.scales, p.zeros, p.bits, p.group_size,
                                          int(p.zero_const), n)
            else:
                def call(p=p, x=x, n=n):
                    return ops.qlinear(x, p.levels, p.scales, p.zeros, p.bits, p.group_size,
                                       p.zero_const, n)
            results.append((scheme, n, k, best_call_seconds(call)))
    for n, k in ((16, 1024), (1024, 3072)):
        tiles = pack_weight(torch.randn(n, k).bfloat16())
        x = torch.randn(1, k).bfloat16()
        results.append(("bf16", n, k, best_call_seconds(
            lambda tiles=tiles, x=x, n=n: ops.linear(x, tiles, n))))
    print(f"{args.threads} threads, one bfloat16 row, us per call (best of 5 x 1000)")
    for scheme, n, k, seconds in results:
        print(f"{scheme:5s} [{n:4d} x {k:4d}] {seconds * 1e6:7.2f} us")


if __name__ == "__main__":
    main()
