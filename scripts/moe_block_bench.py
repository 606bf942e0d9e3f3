"""One 30B-A3B MoE layer, quantized, at batch 1: moe implementations side by side.

    python scripts/moe_block_bench.py [--moe cpu,eager] [--scheme int4] [--threads 2]
        [--calls 60] [--experts 128]

Builds one decoder layer of the ``random:30B-A3B`` shape (128 experts, hidden 2048, expert
width 768, top-8) once per implementation, quantized while built, then calls the blocks in
turn on the same fresh hidden state, each call preceded by a 256 MiB read that evicts the
caches (a decode step reads far more between two visits of a layer). The calls interleave so
that a shared machine's slow moments fall on every implementation alike. Prints each block's
median and best time, and the rate at which it went through its k active experts' packed bytes,
against the read rate of the flushing reads.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from qwen3core.build import select_backends
from qwen3core.quant import resolve_scheme
from qwen3core.quant.apply import build_random_quantized
from qwen3core.spec import preset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--moe", default="cpu,eager")
    parser.add_argument("--scheme", default="int4")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--calls", type=int, default=60)
    parser.add_argument("--experts", type=int, default=128)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    spec = preset("30B-A3B").replace(num_hidden_layers=1, vocab_size=1024,
                                     num_experts=args.experts)
    cpu = torch.device("cpu")
    blocks = {}
    for name in args.moe.split(","):
        selection = select_backends({"moe": name}, device=cpu, dtype=torch.bfloat16)
        model = build_random_quantized(spec, selection, dtype=torch.bfloat16, device=cpu, seed=0,
                                       scheme=resolve_scheme(args.scheme))
        blocks[name] = model.model.layers[0].mlp
    expert = next(iter(next(iter(blocks.values())).experts))
    active = spec.num_experts_per_tok * sum(
        p.quant.nbytes for p in (expert.gate_proj, expert.up_proj, expert.down_proj))
    flush = torch.ones(256 << 20, dtype=torch.uint8)
    times: dict[str, list[float]] = {name: [] for name in blocks}
    reads = []
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _ in range(args.calls):
            x = torch.randn(1, 1, spec.hidden_size, generator=gen).to(torch.bfloat16)
            for name, block in blocks.items():
                t0 = time.perf_counter()
                torch.ops.qwen3core_cpu.stream_read(flush)
                reads.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                block(x)
                times[name].append(time.perf_counter() - t0)
    rate = flush.numel() / statistics.median(reads)
    print(f"one 30B-A3B MoE layer ({args.experts} experts), {resolve_scheme(args.scheme)}, "
          f"batch 1, {args.threads} thread(s); {active / 1e6:.1f} MB of active experts per call; "
          f"read rate (median of the flushing reads) {rate / 1e9:.1f} GB/s")
    for name, spent in times.items():
        spent = spent[5:]  # the first calls warm up allocators and threads
        median, best = statistics.median(spent), min(spent)
        print(f"moe={name}: median {1e3 * median:.3f} ms ({active / median / 1e9:.1f} GB/s, "
              f"{100 * active / median / rate:.0f} % of the read rate), best {1e3 * best:.3f} ms")


if __name__ == "__main__":
    main()
