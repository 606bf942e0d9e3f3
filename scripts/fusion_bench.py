"""Decode step time with the cpu backend's fusions on and off, alternating in one process.

    python scripts/fusion_bench.py [--model random:0.6B] [--dtype bfloat16] [--quantize int4]
                                   [--quantize-head] [--threads 2] [--steps 40] [--rounds 3]
                                   [--no-huge-pages]

Loads the model once with the default selection and times ``--steps`` greedy decode steps
(after a 16-token prompt) three ways, one after the other, ``--rounds`` times:

- ``stack``: every layer in one operator call (``model.layer_stack``, backends/cpu/layer_stack.py)
- ``layers``: each layer in two operator calls (``layer.step``, backends/cpu/layer_step.py)
- ``modules``: neither, the layers' modules one by one

The three compute the same logits bit for bit (tests/backends/test_cpu_layer_step.py); the
difference is what a step spends outside the operators. Prints ms per step per round and the
medians. Rounds alternate because the host's bandwidth drifts over minutes.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import qwen3core
from qwen3core.generation.greedy import greedy_tokens
from qwen3core.generation.steps import Steps

MODES = ("stack", "layers", "modules")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="random:0.6B")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--quantize", default=None)
    parser.add_argument("--quantize-head", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-huge-pages", action="store_true",
                        help="leave the packed weights on the pages torch's allocator gave them "
                             "(backends/cpu/huge_pages.py), to measure the difference")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.no_huge_pages:
        from qwen3core_backends.cpu import huge_pages

        huge_pages.ENABLED = False
    loaded = qwen3core.load(args.model, dtype=args.dtype, quantize=args.quantize,
                            quantize_head=args.quantize_head)
    model = loaded.model
    stack, layer_steps = model.layer_stack, [layer.step for layer in model.model.layers]
    if stack is None or any(step is None for step in layer_steps):
        raise SystemExit(f"fusion_bench: this selection is not fused ({loaded.backends}); it "
                         "needs the cpu backend's components for every layer and a dense model")
    steps = Steps(model)
    times: dict[str, list[float]] = {mode: [] for mode in MODES}
    prompt = torch.randint(0, 1000, (1, 16))
    for _ in range(args.rounds):
        for mode in MODES:
            model.layer_stack = stack if mode == "stack" else None
            for layer, step in zip(model.model.layers, layer_steps):
                layer.step = None if mode == "modules" else step
            cache = model.new_cache(1, prompt.shape[1] + args.steps + 1)
            token = greedy_tokens(steps.prefill(prompt, None, cache))[:, None]
            start = time.perf_counter()
            for _ in range(args.steps):
                token = greedy_tokens(steps.decode_one(token, cache))[:, None]
            times[mode].append((time.perf_counter() - start) / args.steps * 1e3)
    model.layer_stack = stack
    for layer, step in zip(model.model.layers, layer_steps):
        layer.step = step
    print(f"{args.model} {args.dtype} {args.quantize or ''}{' +head' if args.quantize_head else ''}"
          f", {args.threads} threads, {args.steps} decode steps"
          f"{', no huge pages' if args.no_huge_pages else ''}, ms per step by round:")
    for mode in MODES:
        rounds = " ".join(f"{t:6.2f}" for t in times[mode])
        print(f"  {mode:8s} {rounds}   median {statistics.median(times[mode]):6.2f}")


if __name__ == "__main__":
    main()
