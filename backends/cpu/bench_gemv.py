"""Microbenchmark: how fast the cpu kernel reads weights, against ``F.linear``.

    python -m qwen3core_backends.cpu.bench_gemv [--batch 1 8] [--dtype bfloat16 float32]

For each Qwen3-0.6B linear shape, times ``y = x @ W.T`` with enough distinct weight copies
to overflow the last-level cache (so every call streams its weights from DRAM, as decode does),
and prints the weight bytes read per second, next to the ceiling: a plain read of the same
number of bytes (``qwen3core_cpu::stream_read``) timed just before. Times are the best of
``--repeats``, which on a shared machine is the closest to an undisturbed run. The last line per (dtype, batch) adds the shapes up
the way one decode step of Qwen3-0.6B does (28 layers of q, k, v, o, gate, up, down, plus the
LM head) and prints the decode rate those linear layers alone would allow: an upper bound on
end-to-end tokens/s, which also spends time in attention, norms and Python.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.nn import functional as F

from .build import isa, load_kernels
from .linear import pack_weight

# (out_features, in_features) of one Qwen3-0.6B layer's projections, and how often each occurs
# per decode step.
LAYERS = 28
SHAPES = {
    "q_proj": ((2048, 1024), LAYERS),
    "k_proj/v_proj": ((1024, 1024), 2 * LAYERS),
    "o_proj": ((1024, 2048), LAYERS),
    "gate/up_proj": ((3072, 1024), 2 * LAYERS),
    "down_proj": ((1024, 3072), LAYERS),
    "lm_head": ((151936, 1024), 1),
}
STREAM_BYTES = 256 * 2**20  # per timed pass: well past a 32 MiB L3


def _time(fn, repeats: int) -> float:
    fn()  # warm up (first touch, thread pool)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def stream_bandwidth(repeats: int) -> float:
    """Bytes per second of a plain parallel read from memory: the ceiling for the kernel."""
    block = torch.empty(STREAM_BYTES, dtype=torch.uint8).fill_(1)
    return STREAM_BYTES / _time(lambda: torch.ops.qwen3core_cpu.stream_read(block), repeats)


def bench_shape(out_f: int, in_f: int, batch: int, dtype: torch.dtype, repeats: int
                ) -> tuple[float, float]:
    """Seconds per call (kernel, F.linear), streaming weights from memory."""
    weight_bytes = out_f * in_f * dtype.itemsize
    copies = max(1, STREAM_BYTES // weight_bytes)
    weights = [torch.randn(out_f, in_f).to(dtype) for _ in range(copies)]
    packed = [pack_weight(w) for w in weights]
    x = torch.randn(batch, in_f).to(dtype)
    op = torch.ops.qwen3core_cpu.linear

    def kernel():
        for p in packed:
            op(x, p, out_f)

    def reference():
        for w in weights:
            F.linear(x, w)

    return _time(kernel, repeats) / copies, _time(reference, repeats) / copies


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--dtype", nargs="+", default=["bfloat16", "float32"],
                        choices=["bfloat16", "float32"])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    load_kernels()
    print(f"kernels: {isa()}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'dtype':9} {'batch':>5} {'shape (out x in)':>18} {'read GB/s':>10} "
          f"{'kernel GB/s':>12} {'F.linear GB/s':>14} {'speedup':>8}")
    for dtype_name in args.dtype:
        dtype = getattr(torch, dtype_name)
        for batch in args.batch:
            step = {"kernel": 0.0, "F.linear": 0.0}
            step_bytes = 0
            ceilings = []
            for name, ((out_f, in_f), count) in SHAPES.items():
                ceilings.append(stream_bandwidth(args.repeats))
                t_kernel, t_ref = bench_shape(out_f, in_f, batch, dtype, args.repeats)
                nbytes = out_f * in_f * dtype.itemsize
                print(f"{dtype_name:9} {batch:5} {f'{out_f} x {in_f}':>18} "
                      f"{ceilings[-1] / 1e9:10.1f} "
                      f"{nbytes / t_kernel / 1e9:12.1f} {nbytes / t_ref / 1e9:14.1f} "
                      f"{t_ref / t_kernel:7.2f}x  {name}")
                step["kernel"] += count * t_kernel
                step["F.linear"] += count * t_ref
                step_bytes += count * nbytes
            print(f"{dtype_name:9} {batch:5} {'0.6B decode step':>18} "
                  f"{statistics.median(ceilings) / 1e9:10.1f} "
                  f"{step_bytes / step['kernel'] / 1e9:12.1f} "
                  f"{step_bytes / step['F.linear'] / 1e9:14.1f} "
                  f"{step['F.linear'] / step['kernel']:7.2f}x  "
                  f"linears alone allow {1 / step['kernel']:.1f} steps/s with the kernel, "
                  f"{1 / step['F.linear']:.1f} with F.linear ({step_bytes / 1e9:.2f} GB/step)")


if __name__ == "__main__":
    main()
