"""Where one decode step's time goes: torch.profiler over a few decode steps.

    python scripts/profile_decode.py --model random:0.6B --dtype bfloat16 --steps 5
"""

from __future__ import annotations

import argparse

import torch
from torch.profiler import ProfilerActivity, profile

import qwen3core
from qwen3core.cli.common import parse_backend_options
from qwen3core.generation.greedy import greedy_tokens
from qwen3core.generation.steps import Steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="random:0.6B")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--backend", action="append", default=[], metavar="COMPONENT=NAME")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quantize", default=None, help="a scheme to quantize on load")
    parser.add_argument("--quantize-head", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    loaded = qwen3core.load(args.model, dtype=args.dtype, device=args.device,
                            backends=parse_backend_options(args.backend) or None,
                            quantize=args.quantize, quantize_head=args.quantize_head)
    print("backends:", loaded.backends)
    steps = Steps(loaded.model)
    cache = loaded.model.new_cache(1, 16 + 4 + args.steps)
    token = greedy_tokens(steps.prefill(torch.randint(0, 1000, (1, 16)).to(loaded.device),
                                        None, cache))[:, None]
    for _ in range(3):  # warm-up
        token = greedy_tokens(steps.decode_one(token, cache))[:, None]
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.steps):
            token = greedy_tokens(steps.decode_one(token, cache))[:, None]
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=14))


if __name__ == "__main__":
    main()
