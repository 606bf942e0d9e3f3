"""The 0.6B's 112 decode-step products alone, weights cold, against stream_read of their bytes.

    python scripts/linear_chain.py SCHEME [--threads 2] [--rounds 5]
    # SCHEME: int8, w8a8, int4, w4a8, or bf16 / fp32 (the dense ``linear`` kernel's tiles)

Packs 28 layers' q/k/v (fused), o, gate/up (fused) and down weights of the 0.6B shape with
random values, then times one batch-1 pass over all of them (together they no longer fit in
cache, as in a decode step) and one ``stream_read`` pass over the same bytes, best of
``--rounds`` each, alternating. The ratio says how close the kernels alone come to the read
rate, without the rest of the step (attention, norms, Python).
"""

from __future__ import annotations

import argparse
import time

import torch
from qwen3core_backends.cpu.build import load_kernels
from qwen3core_backends.cpu.quant_linear import pack_quantized
from qwen3core_backends.cpu.tiles import pack_weight

from qwen3core.quant.registry import resolve_scheme

#: (out, in) of one layer's products in the 0.6B: q/k/v fused, o, gate/up fused, down.
LAYER_SHAPES = ((4096, 1024), (1024, 2048), (6144, 1024), (1024, 3072))
LAYERS = 28


class DenseTiles:
    """A dense weight's kernel tiles, called like a PackedQuant."""

    def __init__(self, tiles: torch.Tensor):
        self.tiles, self.nbytes = tiles, tiles.nbytes

    def __call__(self, x: torch.Tensor, out_features: int) -> torch.Tensor:
        return torch.ops.qwen3core_cpu.linear(x, self.tiles, out_features)

    def tensors(self) -> tuple[torch.Tensor, ...]:
        return (self.tiles,)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scheme")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rows", type=int, default=1,
                        help="activation rows per product (a decode step's batch)")
    parser.add_argument("--cpu-time", action="store_true",
                        help="time by the process's CPU time (with --threads 1: what one core "
                             "achieves on a machine other jobs load)")
    args = parser.parse_args()
    clock = time.process_time if args.cpu_time else time.perf_counter
    torch.set_num_threads(args.threads)
    load_kernels()
    dense = {"bf16": torch.bfloat16, "fp32": torch.float32}.get(args.scheme)
    if dense is not None:
        packs = [(DenseTiles(pack_weight(torch.randn(n, k, dtype=dense))), n, k)
                 for _ in range(LAYERS) for n, k in LAYER_SHAPES]
    else:
        scheme = resolve_scheme(args.scheme)
        packs = [(pack_quantized(scheme.quantize(torch.randn(n, k))), n, k)
                 for _ in range(LAYERS) for n, k in LAYER_SHAPES]
    nbytes = sum(p.nbytes for p, _, _ in packs)
    inputs = {k: torch.randn(args.rows, k).to(dense or torch.bfloat16) for _, k in LAYER_SHAPES}

    def products() -> None:
        for packed, n, k in packs:
            packed(inputs[k], n)

    read_set = [t for packed, _, _ in packs
                for t in (packed.tensors() if isinstance(packed, DenseTiles)
                          else (packed.levels, packed.scales, packed.zeros)) if t.numel()]

    def reads() -> None:
        for t in read_set:
            torch.ops.qwen3core_cpu.stream_read(t)

    products(), reads()  # warm-up: first-touch page faults, kernel dispatch
    best = {"products": float("inf"), "reads": float("inf")}
    for _ in range(args.rounds):
        for name, run in (("products", products), ("reads", reads)):
            start = clock()
            run()
            best[name] = min(best[name], clock() - start)
    products_s, reads_s = best["products"], best["reads"]
    macs = args.rows * sum(n * k for _, n, k in packs)
    print(f"{args.scheme}: {nbytes / 1e9:.3f} GB in {len(packs)} products of {args.rows} "
          f"row(s), {args.threads} "
          f"threads{', CPU time' if args.cpu_time else ''}; products {products_s * 1e3:.2f} ms ({nbytes / products_s / 1e9:.1f} GB/s), "
          f"stream_read {reads_s * 1e3:.2f} ms ({nbytes / reads_s / 1e9:.1f} GB/s); "
          f"products at {reads_s / products_s:.0%} of the read rate, "
          f"{macs / products_s / 1e9:.0f} GMAC/s")


if __name__ == "__main__":
    main()
