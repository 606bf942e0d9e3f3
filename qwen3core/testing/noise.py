"""Measure how far apart correct implementations land, to check the tolerances against.

    python -m qwen3core.testing.noise --examples 60

For random suite examples (spec, batch) and each low-precision dtype, it runs the eager
reference, every other available implementation of each component (one at a time), the
default selection (all of them together), and the float64 model along the reference's tokens
(the exact answer). Per candidate it prints, over the steps the suite compares (before the
two greedy runs part, and before an MoE routing near-tie), the largest logit difference from
the reference relative to the largest reference logit, and relative to what the tolerance
allows at that step (below 1 passes). The tolerances in
:mod:`qwen3core.testing.tolerances` were set from this output.
"""

from __future__ import annotations

import argparse
import warnings

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qwen3core.contracts import COMPONENTS
from qwen3core.registry import get_registry
from qwen3core.testing.harness import greedy
from qwen3core.testing.models import candidate_model, reference_model, reference_names
from qwen3core.testing.properties import one_cpu_thread
from qwen3core.testing.strategies import available_names, specs, workloads
from qwen3core.testing.tolerances import tolerance_for


def measure(examples: int, dtypes: tuple[torch.dtype, ...]) -> dict[tuple[str, str], list]:
    """(dtype, what) -> [max |diff| / scale, max |diff| / allowed, steps compared]."""
    registry, reference_selection = get_registry(), reference_names()
    worst: dict[tuple[str, str], list] = {}

    def note(dtype, label, ref_run, exact, other_run):
        key = (str(dtype).replace("torch.", ""), label)
        entry = worst.setdefault(key, [0.0, 0.0, 0])
        near_tie = 2 * tolerance_for(dtype).relative  # routing margins the suite skips
        for row in range(len(ref_run.tokens)):
            for step, (a, b) in enumerate(zip(ref_run.tokens[row], other_run.tokens[row])):
                if exact.routing is not None and exact.routing[row][step] <= near_tie:
                    break
                ref_logits = ref_run.logits[row][step]
                diff = float((other_run.logits[row][step] - ref_logits).abs().max())
                allowed = tolerance_for(dtype).allowed(ref_logits, exact.logits[row][step])
                entry[0] = max(entry[0], diff / max(1.0, float(ref_logits.abs().max())))
                entry[1] = max(entry[1], diff / allowed)
                entry[2] += 1
                if a != b:
                    break

    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def run(data):
        spec = data.draw(specs())
        workload = data.draw(workloads(spec.vocab_size))
        prompts, new = workload.prompt_lists(), workload.max_new_tokens
        exact_model = reference_model(spec, torch.float64)
        for dtype in dtypes:
            reference = reference_model(spec, dtype)
            ref_run = greedy(reference, prompts, new)
            exact = greedy(exact_model, prompts, new, record_routing=True,
                           forced=dict(zip(ref_run.rows, ref_run.tokens)))
            note(dtype, "eager float64 (own error)", ref_run, exact, exact)
            candidates = {"default selection": registry.select(
                {"runner": "eager"}, device="cpu", dtype=dtype).names()}
            for component in COMPONENTS:
                for name in available_names(registry, component, "cpu", dtype):
                    if component != "runner" and name != reference_selection[component]:
                        candidates[f"{component}={name}"] = {**reference_selection,
                                                             component: name}
            for label, selection in candidates.items():
                model = candidate_model(reference, selection)
                note(dtype, label, ref_run, exact, greedy(model, prompts, new))

    with one_cpu_thread(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run()
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=60)
    args = parser.parse_args()
    worst = measure(args.examples, (torch.float32, torch.bfloat16))
    print("dtype     vs eager                     max|diff|/scale  max|diff|/allowed  steps")
    for (dtype, label), (relative, used, steps) in sorted(worst.items()):
        print(f"{dtype:9s} {label:28s} {relative:15.3g}  {used:17.3g}  {steps:5d}")


if __name__ == "__main__":
    main()
