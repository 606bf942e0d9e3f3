"""The cpu kernels' rate at prefill row counts: one product, many rows, weights in cache.

    python scripts/prefill_rows_bench.py [--schemes int4,int8,bf16] [--rows 64,256,504,512,520,1024]
                                         [--threads 1] [--rounds 5]

For each scheme and each K of the 0.6B's products (1024: q/k/v and gate/up, 2048: o,
3072: down), packs a random 1024 x K weight (it stays in cache: what is measured is how the
kernel reads the activations, not the weights' stream) and times the product for each row
count, best of ``--rounds``, in G multiply-adds a second. Row counts that are multiples of 64
are where the activation layout's row stride matters (backends/cpu/csrc/kernels.h,
``activation_stride``); ``bf16`` is the dense kernel (the `cpu` linear module hands prefill-size
batches to F.linear, but the MoE block's dense experts and explicit calls use it).
"""

from __future__ import annotations

import argparse
import time

import torch
from qwen3core_backends.cpu.build import load_kernels
from qwen3core_backends.cpu.quant_linear import pack_quantized
from qwen3core_backends.cpu.tiles import pack_weight

from qwen3core.quant.registry import resolve_scheme

OUT_FEATURES = 1024
K_VALUES = (1024, 2048, 3072)


def product(scheme: str, k: int):
    """(a call computing x @ W.T for a random 1024 x k weight in ``scheme``, x's dtype)."""
    weight = torch.randn(OUT_FEATURES, k)
    if scheme == "bf16":
        tiles = pack_weight(weight.to(torch.bfloat16))
        return lambda x: torch.ops.qwen3core_cpu.linear(x, tiles, OUT_FEATURES)
    packed = pack_quantized(resolve_scheme(scheme).quantize(weight))
    return lambda x: packed(x, OUT_FEATURES)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schemes", default="int4,int8,bf16")
    parser.add_argument("--rows", default="64,256,504,512,520,1024")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_kernels()
    row_counts = [int(r) for r in args.rows.split(",")]
    print(f"{OUT_FEATURES} outputs, {args.threads} thread(s), best of {args.rounds}; "
          "G multiply-adds a second")
    print("| scheme | K | " + " | ".join(f"{r} rows" for r in row_counts) + " |")
    print("|---|---|" + "---|" * len(row_counts))
    for scheme in args.schemes.split(","):
        for k in K_VALUES:
            run = product(scheme, k)
            rates = []
            for rows in row_counts:
                x = torch.randn(rows, k).to(torch.bfloat16)
                calls = max(1, 2048 // rows)
                run(x)  # warm-up: the layout's scratch memory, the caches
                best = float("inf")
                for _ in range(args.rounds):
                    start = time.perf_counter()
                    for _ in range(calls):
                        run(x)
                    best = min(best, (time.perf_counter() - start) / calls)
                rates.append(rows * OUT_FEATURES * k / best / 1e9)
            print(f"| {scheme} | {k} | " + " | ".join(f"{r:.0f}" for r in rates) + " |",
                  flush=True)


if __name__ == "__main__":
    main()
