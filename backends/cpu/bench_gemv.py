"""Microbenchmark: how fast the cpu kernel reads weights, against ``F.linear``.

    python -m qwen3core_backends.cpu.bench_gemv [--batch 1 8] [--dtype bfloat16 float32]

For each Qwen3-0.6B linear shape, times single calls of ``y = x @ W.T`` over enough distinct
weight copies to overflow the last-level cache (so every call streams its weights from DRAM,
as decode does), and prints weight bytes read per second. Next to it, the ceiling:
``qwen3core_cpu::stream_read`` reading blocks of the same size from memory, timed the same way.
Times are medians of single calls, best of a few rounds: on a shared machine a thread that
waits for a core stalls a call by a whole scheduler tick, and such stalls would hide the
kernel's speed.

The last line per (dtype, batch) adds the shapes up the way one decode step of Qwen3-0.6B does
(28 layers of q, k, v, o, gate, up, down, plus the LM head) and prints the decode rate those
linear layers alone would allow: an upper bound on end-to-end tokens/s, which also spends time
in attention, norms and Python.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

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
ROTATION_BYTES = 256 * 2**20  # weight copies per shape: well past a 32 MiB L3


def median_call(calls: list[Callable[[], object]], passes: int) -> float:
    """Median seconds of one call, cycling through ``calls`` ``passes`` times."""
    times = []
    for _ in range(passes):
        for call in calls:
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_shape(out_f: int, in_f: int, batch: int, dtype: torch.dtype, rounds: int
                ) -> dict[str, float]:
    """Seconds per call of the kernel, F.linear and a plain read of as many bytes: the median
    call of a round, best of ``rounds`` rounds taken in turn (a busy spell of the machine
    slows every call of a round, so the median alone does not hide it)."""
    weight_bytes = out_f * in_f * dtype.itemsize
    copies = max(1, ROTATION_BYTES // weight_bytes)
    passes = max(1, 16 // copies)  # at least 16 calls per median
    weights = [torch.randn(out_f, in_f).to(dtype) for _ in range(copies)]
    packed = [pack_weight(w) for w in weights]
    blocks = torch.ones(copies, weight_bytes, dtype=torch.uint8)  # [copies, bytes]
    x = torch.randn(batch, in_f).to(dtype)
    op, read = torch.ops.qwen3core_cpu.linear, torch.ops.qwen3core_cpu.stream_read
    calls = {
        "read": [lambda b=b: read(b) for b in blocks],
        "kernel": [lambda p=p: op(x, p, out_f) for p in packed],
        "F.linear": [lambda w=w: F.linear(x, w) for w in weights],
    }
    for fns in calls.values():
        fns[0]()  # warm up (first touch, thread pool)
    best = {key: float("inf") for key in calls}
    for _ in range(rounds):
        for key, fns in calls.items():
            best[key] = min(best[key], median_call(fns, passes))
    return best


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--dtype", nargs="+", default=["bfloat16", "float32"],
                        choices=["bfloat16", "float32"])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    load_kernels()
    print(f"kernels: {isa()}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'dtype':9} {'batch':>5} {'shape (out x in)':>18} {'read GB/s':>10} "
          f"{'kernel GB/s':>12} {'of read':>8} {'F.linear GB/s':>14} {'speedup':>8}")
    for dtype_name in args.dtype:
        dtype = getattr(torch, dtype_name)
        for batch in args.batch:
            step = {"read": 0.0, "kernel": 0.0, "F.linear": 0.0}
            step_bytes = 0
            for name, ((out_f, in_f), count) in SHAPES.items():
                t = bench_shape(out_f, in_f, batch, dtype, args.rounds)
                nbytes = out_f * in_f * dtype.itemsize
                _row(dtype_name, batch, f"{out_f} x {in_f}", nbytes, t, name)
                for key in step:
                    step[key] += count * t[key]
                step_bytes += count * nbytes
            _row(dtype_name, batch, "0.6B decode step", step_bytes, step,
                 f"linears alone: {1 / step['kernel']:.1f} steps/s with the kernel, "
                 f"{1 / step['F.linear']:.1f} with F.linear, {1 / step['read']:.1f} at the "
                 f"read ceiling ({step_bytes / 1e9:.2f} GB/step)")


def _row(dtype: str, batch: int, shape: str, nbytes: int, t: dict[str, float], note: str
         ) -> None:
    print(f"{dtype:9} {batch:5} {shape:>18} {nbytes / t['read'] / 1e9:10.1f} "
          f"{nbytes / t['kernel'] / 1e9:12.1f} {t['read'] / t['kernel']:7.0%} "
          f"{nbytes / t['F.linear'] / 1e9:14.1f} {t['F.linear'] / t['kernel']:7.2f}x  {note}",
          flush=True)


if __name__ == "__main__":
    main()
