"""Decode steps at a long context with the KV cache on huge pages and on 4 KiB pages, in one process.

    python scripts/kv_huge_pages_bench.py [--batch 1] [--context 4000] [--quantize int4]
                                          [--rounds 6] [--threads 2]

Loads random:0.6B (quantized on load, the head too, unless ``--quantize none``), prefills
``--batch`` random prompts of ``--context`` tokens into two caches, one whose buffers come from
qwen3core.huge_pages.zeros_on_huge_pages as the KV caches allocate them and one with the huge
page mapping refused (plain zeros), then alternates 8 greedy decode steps on each, ``--rounds``
times: the median and best ms a step of each. The rest of the step (weights, kernels) is the
same for both, so the difference is the attention's reads of keys and values.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import qwen3core
from qwen3core import huge_pages
from qwen3core.generation.greedy import greedy_tokens
from qwen3core.generation.steps import Steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--context", type=int, default=4000)
    parser.add_argument("--quantize", default="int4")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    scheme = None if args.quantize == "none" else args.quantize
    loaded = qwen3core.load("random:0.6B", dtype="bfloat16", quantize=scheme,
                            quantize_head=scheme is not None)
    model, steps = loaded.model, Steps(loaded.model)
    mapped = huge_pages._aligned_region
    prompt = torch.randint(0, 1000, (args.batch, args.context),
                           generator=torch.Generator().manual_seed(0))

    def prefilled(huge: bool) -> list:
        huge_pages._aligned_region = mapped if huge else (lambda nbytes: None)
        try:
            cache = model.new_cache(args.batch, args.context + 16 + 8 * args.rounds)
            with torch.inference_mode():
                token = greedy_tokens(steps.prefill(prompt, None, cache))[:, None]
        finally:
            huge_pages._aligned_region = mapped
        return [cache, token]

    runs = {huge: prefilled(huge) for huge in (False, True)}
    times: dict[bool, list[float]] = {False: [], True: []}
    with torch.inference_mode():
        for _ in range(args.rounds):
            for huge, run in runs.items():
                cache, token = run
                start = time.perf_counter()
                for _ in range(8):
                    token = greedy_tokens(steps.decode_one(token, cache))[:, None]
                times[huge].append((time.perf_counter() - start) / 8 * 1e3)
                run[1] = token
    print(f"random:0.6B {args.quantize}, batch {args.batch}, {args.context} tokens of context, "
          f"{args.threads} threads, {args.rounds} alternating rounds of 8 steps:")
    for huge, label in ((False, "4 KiB pages"), (True, "huge pages")):
        print(f"  KV cache on {label}: median {statistics.median(times[huge]):.2f} ms a step "
              f"(best {min(times[huge]):.2f})")


if __name__ == "__main__":
    main()
