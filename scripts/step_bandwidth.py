"""One decode step's weight reads: the cpu linear kernel against plain reads of the same bytes.

    python scripts/step_bandwidth.py [--rounds 8] [--dtype bfloat16]

Packs random weights of the Qwen3-0.6B shapes as the default CPU backends use them (per layer
q/k/v fused, o, gate/up fused, down; then the LM head: 113 products, 1.19 GB in bfloat16) and
times, alternating round by round, (1) the kernel multiplying one token's activations by every
weight, (2) ``torch.sum`` over each packed weight and (3) the kernel library's ``stream_read``
over each. (2) and (3) only read, so they bound what any batch-1 kernel can do on this machine.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from qwen3core_backends.cpu.build import load_kernels
from qwen3core_backends.cpu.linear import pack_weight

# (out, in) per layer as the cpu backend calls them, then the LM head.
LAYER = [(2048 + 1024 + 1024, 1024), (1024, 2048), (2 * 3072, 1024), (1024, 3072)]
SHAPES = LAYER * 28 + [(151936, 1024)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_kernels()
    dtype = getattr(torch, args.dtype)
    weights = [(pack_weight(torch.randn(n, k).to(dtype)), n, k) for n, k in SHAPES]
    total = sum(w.nbytes for w, _, _ in weights)
    x = {k: torch.randn(1, 1, k).to(dtype) for _, _, k in weights}
    ops = torch.ops.qwen3core_cpu
    ways = {
        "kernel (x @ W.T)": lambda: [ops.linear(x[k], w, n) for w, n, k in weights],
        "torch.sum (read only)": lambda: [w.sum() for w, _, _ in weights],
        "stream_read (read only)": lambda: [ops.stream_read(w) for w, _, _ in weights],
    }
    times: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(args.rounds):
        for name, run in ways.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    print(f"{len(weights)} weights, {total / 1e9:.2f} GB per step, {args.dtype}, "
          f"{args.threads} threads, {args.rounds} rounds")
    for name, spent in times.items():
        print(f"{name:24s} best {total / min(spent) / 1e9:5.1f} GB/s   median "
              f"{total / statistics.median(spent) / 1e9:5.1f} GB/s   "
              f"({statistics.median(spent) * 1e3:.1f} ms per step)")


if __name__ == "__main__":
    main()
