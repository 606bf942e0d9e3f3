"""One decode step's weight reads: the cpu linear kernel against plain reads of the same bytes.

    python scripts/step_bandwidth.py [--rounds 8] [--dtype bfloat16] [--scheme int8|int4]

Packs random weights of the Qwen3-0.6B shapes as the default CPU backends use them (per layer
q/k/v fused, o, gate/up fused, down; then the LM head: 113 products, 1.19 GB in bfloat16) and
times, alternating round by round, (1) the kernel multiplying one token's activations by every
weight, (2) ``torch.sum`` over each packed weight and (3) the kernel library's ``stream_read``
over each. (2) and (3) only read, so they bound what any batch-1 kernel can do on this machine.
With ``--scheme`` the weights are quantized (levels, scales, zero points as the cpu backend
packs them) and the kernel is the int8/int4 one; ``--rows`` multiplies several rows at once.
``--cpu-time`` times by the process's CPU time instead of the wall clock: with ``--threads 1``
on a machine others are loading, it still measures what the core itself achieved.
``--layers N`` takes only N layers (and no head): quicker to set up.
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
    parser.add_argument("--scheme", default=None, help="int8, int4, ... (default: dense)")
    parser.add_argument("--rows", type=int, default=1)
    parser.add_argument("--cpu-time", action="store_true")
    parser.add_argument("--layers", type=int, default=None)
    args = parser.parse_args()
    shapes = SHAPES if args.layers is None else LAYER * args.layers
    clock = time.process_time if args.cpu_time else time.perf_counter
    torch.set_num_threads(args.threads)
    load_kernels()
    dtype = getattr(torch, args.dtype)
    x = {k: torch.randn(args.rows, 1, k).to(dtype) for _, k in shapes}
    ops = torch.ops.qwen3core_cpu
    if args.scheme:
        from qwen3core_backends.cpu.quant_linear import pack_quantized

        from qwen3core.quant import resolve_scheme

        scheme = resolve_scheme(args.scheme)
        packs = [(pack_quantized(scheme.quantize(torch.randn(n, k))), n, k) for n, k in shapes]
        weights = [(torch.cat([p.levels.view(-1).view(torch.uint8),
                               p.scales.view(-1).view(torch.uint8),
                               p.zeros.view(-1).view(torch.uint8)]), n, k) for p, n, k in packs]
        product = lambda: [p(x[k], n) for p, n, k in packs]
    else:
        weights = [(pack_weight(torch.randn(n, k).to(dtype)), n, k) for n, k in shapes]
        product = lambda: [ops.linear(x[k], w, n) for w, n, k in weights]
    total = sum(w.nbytes for w, _, _ in weights)
    ways = {
        "kernel (x @ W.T)": product,
        "torch.sum (read only)": lambda: [w.sum() for w, _, _ in weights],
        "stream_read (read only)": lambda: [ops.stream_read(w) for w, _, _ in weights],
    }
    times: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(args.rounds):
        for name, run in ways.items():
            start = clock()
            run()
            times[name].append(clock() - start)
    print(f"{len(weights)} weights, {total / 1e9:.2f} GB per step, {args.scheme or ''} "
          f"{args.dtype}, {args.rows} row(s), "
          f"{args.threads} threads, {args.rounds} rounds"
          f"{', CPU time' if args.cpu_time else ''}")
    for name, spent in times.items():
        print(f"{name:24s} best {total / min(spent) / 1e9:5.1f} GB/s   median "
              f"{total / statistics.median(spent) / 1e9:5.1f} GB/s   "
              f"({statistics.median(spent) * 1e3:.1f} ms per step)")


if __name__ == "__main__":
    main()
