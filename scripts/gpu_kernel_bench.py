"""Kernel-level timing of the cuda backend against the PyTorch eager ops, on a GPU.

For each kernel (RMSNorm on hidden rows and on q-head rows, RoPE on q and k, the SwiGLU
SiLU-multiply), each dtype and the 0.6B and 8B shapes at decode (1 and 8 tokens) and prefill
(512 and 4096 tokens), it reports the median time per call of the kernel and of the eager
op, two ways:

* ``launch``: K back-to-back calls from Python between two CUDA events, divided by K (what a
  model running eagerly pays, launch overhead included);
* ``graph``: the same K calls captured once in a CUDA graph and replayed (the GPU time alone,
  what a CUDA-graph runner pays).

Each is the median of R repetitions after warm-up. ``GB/s`` is the bytes the kernel must read
and write divided by its graph time. Every kernel is checked against the eager op first.

    python scripts/gpu_kernel_bench.py --out gpu-results/kernel_bench
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from qwen3core_backends.cuda import ops
from qwen3core_backends.cuda.rope import rotary_inv_freq
from qwen3core_backends.eager.norm import RMSNorm
from qwen3core_backends.eager.rope import EagerRotary
from torch.nn import functional as F

from qwen3core.dtypes import parse_dtype

# hidden, q heads, kv heads, head_dim, intermediate (REFERENCE.md)
SHAPES = {"0.6B": (1024, 16, 8, 128, 3072), "8B": (4096, 32, 8, 128, 12288)}
GRAPH_BYTES = 2e9
TOKENS = {"decode b1": (1, 1), "decode b8": (8, 1), "prefill 1x512": (1, 512),
          "prefill 8x512": (8, 512)}


@dataclass
class Row:
    kernel: str
    model: str
    tokens: str
    dtype: str
    cuda_launch_us: float
    eager_launch_us: float
    cuda_graph_us: float
    eager_graph_us: float
    gbytes_per_s: float
    max_abs_diff: float


def time_launches(fn: Callable[[], object], calls: int, repeats: int) -> float:
    for _ in range(5):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(calls):
            fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1000 / calls)
    return statistics.median(times)


def time_graph(fn: Callable[[], object], calls: int, repeats: int) -> float:
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm up off the default stream, as capture requires
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(calls):
            fn()
    graph.replay()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1000 / calls)
    return statistics.median(times)


def cases(model: str, batch: int, seq: int, dtype: torch.dtype):
    """(kernel name, cuda fn, eager fn, bytes moved) for one shape."""
    hidden, h_q, h_kv, d, inter = SHAPES[model]
    tokens = batch * seq
    size = torch.empty((), dtype=dtype).element_size()
    dev = torch.device("cuda")
    g = torch.Generator(device="cuda").manual_seed(0)

    def randn(*shape):
        return torch.randn(*shape, generator=g, device=dev).to(dtype)

    x = randn(tokens, hidden)
    norm = RMSNorm(hidden, 1e-6, dtype=dtype, device=dev)
    yield ("rms_norm hidden", lambda: ops.rms_norm(x, norm.weight, 1e-6), lambda: norm(x),
           (2 * tokens * hidden + hidden) * size)

    heads = randn(tokens, h_q, d)
    head_norm = RMSNorm(d, 1e-6, dtype=dtype, device=dev)
    yield ("rms_norm q heads", lambda: ops.rms_norm(heads, head_norm.weight, 1e-6),
           lambda: head_norm(heads), (2 * tokens * h_q * d + d) * size)

    q = randn(batch, seq, h_q * d).view(batch, seq, h_q, d).transpose(1, 2)  # [B, H, S, D]
    k = randn(batch, seq, h_kv * d).view(batch, seq, h_kv, d).transpose(1, 2)
    positions = (torch.arange(seq, device=dev) + 100).expand(batch, seq)
    inv_freq = rotary_inv_freq(d, 1e6, dev)
    eager_rotary = EagerRotary(d, 1e6)
    yield ("rope q+k", lambda: ops.rotary(q, k, positions, inv_freq),
           lambda: eager_rotary(q, k, positions), 2 * tokens * (h_q + h_kv) * d * size)

    gate, up = randn(tokens, inter), randn(tokens, inter)
    yield ("silu_mul", lambda: ops.silu_mul(gate, up), lambda: F.silu(gate) * up,
           3 * tokens * inter * size)


def max_abs_diff(a, b) -> float:
    if isinstance(a, tuple):
        return max(max_abs_diff(x, y) for x, y in zip(a, b))
    return (a.float() - b.float()).abs().max().item()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="gpu-results/kernel_bench",
                        help="writes OUT.md and OUT.json (default: gpu-results/kernel_bench)")
    parser.add_argument("--dtypes", default="bfloat16,float16,float32")
    parser.add_argument("--models", default=",".join(SHAPES))
    parser.add_argument("--calls", type=int, default=50, help="calls per timed repetition")
    parser.add_argument("--repeats", type=int, default=20, help="repetitions (median taken)")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device is visible; run this on a GPU machine", file=sys.stderr)
        return 2
    ops.prepare_kernels(torch.device("cuda"))
    rows: list[Row] = []
    with torch.inference_mode():
        for dtype in (parse_dtype(d) for d in args.dtypes.split(",")):
            for model in args.models.split(","):
                for label, (batch, seq) in TOKENS.items():
                    for kernel, cuda_fn, eager_fn, nbytes in cases(model, batch, seq, dtype):
                        diff = max_abs_diff(cuda_fn(), eager_fn())
                        # A captured graph keeps every call's output: bound that memory.
                        calls = max(3, min(args.calls, int(GRAPH_BYTES // nbytes)))
                        cuda_graph = time_graph(cuda_fn, calls, args.repeats)
                        row = Row(kernel, model, label, str(dtype).removeprefix("torch."),
                                  time_launches(cuda_fn, calls, args.repeats),
                                  time_launches(eager_fn, calls, args.repeats),
                                  cuda_graph, time_graph(eager_fn, calls, args.repeats),
                                  nbytes / (cuda_graph * 1e-6) / 1e9, diff)
                        rows.append(row)
                        print(f"{row.dtype:9} {model:5} {label:14} {kernel:17} "
                              f"launch {row.cuda_launch_us:7.2f} vs {row.eager_launch_us:7.2f} us"
                              f"  graph {row.cuda_graph_us:7.2f} vs {row.eager_graph_us:7.2f} us"
                              f"  {row.gbytes_per_s:7.1f} GB/s  max|diff| {diff:.3g}",
                              flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"command": " ".join(["python", *sys.argv]), "device": torch.cuda.get_device_name(),
            "torch": torch.__version__, "cuda": torch.version.cuda,
            "calls": args.calls, "repeats": args.repeats}
    out.with_suffix(".json").write_text(json.dumps(
        {"meta": meta, "rows": [asdict(r) for r in rows]}, indent=2))
    out.with_suffix(".md").write_text(markdown(rows, meta))
    print(f"wrote {out.with_suffix('.md')} and {out.with_suffix('.json')}")
    return 0


def markdown(rows: list[Row], meta: dict) -> str:
    header = (f"`{meta['command']}` on {meta['device']}, torch {meta['torch']} (CUDA "
              f"{meta['cuda']}); median of {meta['repeats']} x {meta['calls']} calls, "
              f"microseconds per call (fewer calls for the largest shapes).")
    columns = ("| dtype | model | tokens | kernel | cuda launch | eager launch | speedup | "
               "cuda graph | eager graph | speedup | GB/s | max abs diff |")
    lines = [header, "", columns, "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(
            f"| {r.dtype} | {r.model} | {r.tokens} | {r.kernel} | {r.cuda_launch_us:.2f} | "
            f"{r.eager_launch_us:.2f} | {r.eager_launch_us / r.cuda_launch_us:.1f}x | "
            f"{r.cuda_graph_us:.2f} | {r.eager_graph_us:.2f} | "
            f"{r.eager_graph_us / r.cuda_graph_us:.1f}x | {r.gbytes_per_s:.0f} | "
            f"{r.max_abs_diff:.3g} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
