"""Prefill attention on the CPU: SDPA against the cpu backend's blocks, per layer and per prefill.

    python scripts/prefill_attention_bench.py [--tokens 64,256,512,2048] [--blocks 32,64,128,256]
    python scripts/prefill_attention_bench.py --prefill [--quantize int4] [--tokens 512,2048]

Without ``--prefill``: one layer of the 0.6B's heads (16 query, 8 key/value, 128 wide),
bfloat16, causal, a first prefill: ``F.scaled_dot_product_attention(is_causal=True)`` against
``blocked_attention`` at each block size, best of several runs, and each one's largest
difference from the eager reference. With ``--prefill``: whole prefills of ``random:0.6B``,
the same process alternating the two paths (the cpu attention's threshold moved out of reach
and back), best of 3.
"""

from __future__ import annotations

import argparse
import time

import torch
from qwen3core_backends.cpu import attention as cpu_attention_module
from qwen3core_backends.cpu import prefill_attention
from qwen3core_backends.eager.attention import eager_attention
from torch.nn import functional as F

from qwen3core.contracts import AttentionBatch


def best_of(run, repeats: int) -> float:
    run()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def layer_runs(q, k, v, mask, scale, blocks: list[int]) -> dict:
    """Name -> a call computing the layer's attention that way."""
    def sdpa():
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True,
                                              scale=scale)

    def blocked(size):
        def run():
            prefill_attention.QUERY_BLOCK = size
            return prefill_attention.blocked_attention(q, k, v, mask, scale)
        return run

    return {"sdpa": sdpa, **{f"blocks of {size}": blocked(size) for size in blocks}}


def per_layer(tokens: list[int], blocks: list[int]) -> None:
    scale = 128 ** -0.5
    kept = prefill_attention.QUERY_BLOCK
    print("one layer, 16/8 heads x 128, bfloat16, causal: ms (largest difference from eager)")
    for n in tokens:
        g = torch.Generator().manual_seed(n)
        q = torch.randn(1, 16, n, 128, generator=g).bfloat16()
        k = torch.randn(1, 8, n, 128, generator=g).bfloat16()
        v = torch.randn(1, 8, n, 128, generator=g).bfloat16()
        mask = torch.ones(n, n, dtype=torch.bool).tril()[None, None]
        batch = AttentionBatch(positions=torch.zeros(1, n, dtype=torch.long), mask=mask, start=0)
        want = eager_attention(q, k, v, batch, scale)
        cells = []
        for name, run in layer_runs(q, k, v, mask, scale, blocks).items():
            took = best_of(run, max(3, 2000 // n))
            err = (run().float() - want.float()).abs().max().item()
            cells.append(f"{name} {took * 1e3:.2f} ({err:.4f})")
        print(f"{n:5d} tokens: " + " | ".join(cells), flush=True)
    prefill_attention.QUERY_BLOCK = kept


def whole_prefill(tokens: list[int], quantize: str | None) -> None:
    import qwen3core
    from qwen3core.generation.steps import Steps

    loaded = qwen3core.load("random:0.6B", dtype="bfloat16", quantize=quantize)
    steps = Steps(loaded.model)
    kept = cpu_attention_module.MIN_BLOCKED_QUERY_TOKENS
    for n in tokens:
        ids = torch.randint(0, 1000, (1, n), generator=torch.Generator().manual_seed(n))
        took = {"sdpa": float("inf"), "blocked": float("inf")}
        for _ in range(3):
            for name, threshold in (("sdpa", 1 << 62), ("blocked", kept)):
                cpu_attention_module.MIN_BLOCKED_QUERY_TOKENS = threshold
                cache = loaded.model.new_cache(1, n + 4)
                start = time.perf_counter()
                steps.prefill(ids, None, cache)
                took[name] = min(took[name], time.perf_counter() - start)
        cpu_attention_module.MIN_BLOCKED_QUERY_TOKENS = kept
        s, b = took["sdpa"], took["blocked"]
        print(f"{quantize or 'bf16'} prompt {n}: SDPA {s:.2f} s ({n / s:.0f} tok/s), blocks "
              f"{b:.2f} s ({n / b:.0f} tok/s), {s / b:.2f}x", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", default="64,256,512,2048")
    parser.add_argument("--blocks", default="32,64,128,256")
    parser.add_argument("--prefill", action="store_true", help="whole prefills instead")
    parser.add_argument("--quantize", default=None, help="with --prefill: a scheme")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tokens = [int(t) for t in args.tokens.split(",")]
    if args.prefill:
        whole_prefill(tokens, args.quantize)
    else:
        per_layer(tokens, [int(b) for b in args.blocks.split(",")])


if __name__ == "__main__":
    main()
