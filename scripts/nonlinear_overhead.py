"""How long a decode step takes apart from its weight reads: linear products replaced by zeros.

    python scripts/nonlinear_overhead.py [--backend COMPONENT=NAME ...] [--runs 5]

Loads the 0.6B shape with random bfloat16 weights and the given selection (defaults for the
rest), makes every linear product (cpu kernel, fused cpu products, F.linear) return zeros of
the right shape without reading its weight, and times runs of 64 greedy decode steps after a
16-token prompt. What remains per step is attention, norms, rotary, the KV cache, the MLP's
activation, sampling and Python: the part of a memory-bound step that the weights do not set
(less the linear modules' own Python, which the zeros replace too). Prints the best and every
run, in ms per step, wall time and process CPU time.
"""

from __future__ import annotations

import argparse
import time

import qwen3core_backends.cpu.linear as cpu_linear
import qwen3core_backends.eager.linear as eager_linear
import torch

import qwen3core
from qwen3core.cli.common import parse_backend_options
from qwen3core.generation.greedy import greedy_tokens
from qwen3core.generation.steps import Steps


def zeros_instead_of_products() -> None:
    # One zero tensor per shape, made once: a fresh one per call would add an allocation and a
    # fill (on all threads for the 151936 logits) that a real product does not make. Nothing
    # in a step writes into a linear output in place, so sharing them is safe.
    made: dict[tuple, torch.Tensor] = {}

    def zeros(x: torch.Tensor, out_features: int) -> torch.Tensor:
        key = (*x.shape[:-1], out_features, x.dtype)
        found = made.get(key)
        if found is None:
            found = made[key] = x.new_zeros(*x.shape[:-1], out_features)
        return found

    eager_linear.Linear.forward = lambda self, x: zeros(x, self.out_features)
    cpu_linear.CpuLinear.forward = lambda self, x: zeros(x, self.out_features)
    cpu_linear.FusedCpuLinear.__call__ = lambda self, x: zeros(x, self.out_features)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", action="append", default=[], metavar="COMPONENT=NAME")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    zeros_instead_of_products()
    loaded = qwen3core.load("random:0.6B", dtype="bfloat16",
                            backends=parse_backend_options(args.backend) or None)
    steps = Steps(loaded.model)
    per_step, cpu_per_step = [], []
    for _ in range(args.runs):
        cache = loaded.model.new_cache(1, 16 + 65)
        token = greedy_tokens(steps.prefill(torch.randint(0, 1000, (1, 16)), None, cache))[:, None]
        start, cpu_start = time.perf_counter(), time.process_time()
        for _ in range(64):
            token = greedy_tokens(steps.decode_one(token, cache))[:, None]  # the loop's pick
        per_step.append((time.perf_counter() - start) / 64 * 1e3)
        cpu_per_step.append((time.process_time() - cpu_start) / 64 * 1e3)
    print(", ".join(f"{c}={n}" for c, n in loaded.backends.items()))
    print(f"best {min(per_step):.2f} ms per step; runs: "
          + ", ".join(f"{t:.2f}" for t in per_step))
    # Process CPU time (all threads): steadier than wall time on a shared machine, but it also
    # counts the time torch's idle worker threads spin between parallel regions.
    print(f"process CPU time per step: best {min(cpu_per_step):.2f} ms; runs: "
          + ", ".join(f"{t:.2f}" for t in cpu_per_step))


if __name__ == "__main__":
    main()
