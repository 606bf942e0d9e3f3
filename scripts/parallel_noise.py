"""How far tensor-parallel logits are from one process's, over the suite's examples.

    python scripts/parallel_noise.py [--ranks 2] [--examples 15]

For each dtype (float64, float32), draws examples as tests/parallel does (specs, workloads,
backend selections from the suite's strategies), runs them on ``--ranks`` gloo ranks and
prints the largest |parallel - one-process eager reference| over max(1, |reference|), along
each row's steps up to and including the first differing token. The tolerance floors
(qwen3core.testing.tolerances) are 1e-9 (float64) and 1e-4 (float32).
"""

from __future__ import annotations

import argparse

import torch
from hypothesis import HealthCheck, given, settings

from qwen3core.testing.properties import reference_run
from qwen3core.testing.rank_group import Example, RankGroup, parallel_examples


def largest_difference(group: RankGroup, dtype: torch.dtype, examples: int) -> float:
    worst = [0.0]

    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(example=parallel_examples(group.world_size, dtype))
    def measure(example):
        spec, work, backends = example
        ref = reference_run(spec, dtype, "cpu", work.prompts, work.max_new_tokens, work.reorder)
        run = group.run(Example(spec, dtype, work, backends))
        for ref_logits, logits, ref_tokens, tokens in zip(ref.logits, run.logits, ref.tokens,
                                                          run.tokens, strict=True):
            same = next((i for i, (a, b) in enumerate(zip(ref_tokens, tokens, strict=True))
                         if a != b), len(tokens) - 1)
            steps = slice(0, same + 1)
            scale = max(1.0, float(ref_logits[steps].abs().max()))
            diff = float((ref_logits[steps] - logits[steps]).abs().max()) / scale
            worst[0] = max(worst[0], diff)

    measure()
    return worst[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--examples", type=int, default=15)
    args = parser.parse_args()
    with RankGroup(args.ranks) as group:
        for dtype in (torch.float64, torch.float32):
            worst = largest_difference(group, dtype, args.examples)
            print(f"{dtype}: largest |{args.ranks} ranks - one process| / scale = {worst:.3g} "
                  f"({args.examples} examples)")


if __name__ == "__main__":
    main()
