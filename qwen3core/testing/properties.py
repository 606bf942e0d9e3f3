"""The equivalence property: one example, every scenario, against the eager reference.

For one (spec, workload, selection, dtype) the candidate model (the selection's
implementations, the reference's weights) must reproduce the reference's greedy run:

* cold: a left-padded batch on a fresh model (rows dropped/reordered mid-way if the workload
  says so);
* reused: the same batch again on the same model, prefilled in chunks when the workload says
  so (cache reuse within a request, compiled code and storage reuse across requests);
* alone vs batched: every prompt of the batch decoded alone by the reference, against the
  candidate's batched row and against the candidate decoding the first prompt alone.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import lru_cache

import torch

from qwen3core.registry import Registry
from qwen3core.spec import Qwen3Spec
from qwen3core.testing import report
from qwen3core.testing.compare import assert_greedy_equivalent
from qwen3core.testing.harness import GreedyRun, greedy
from qwen3core.testing.models import candidate_model, reference_model
from qwen3core.testing.strategies import Workload
from qwen3core.testing.tolerances import tolerance_for


@lru_cache(maxsize=256)
def reference_run(spec: Qwen3Spec, dtype: torch.dtype, device: str,
                  prompts: tuple[tuple[int, ...], ...], max_new_tokens: int,
                  reorder: tuple[int, tuple[int, ...]] | None = None,
                  quantize: str | None = None) -> GreedyRun:
    model = reference_model(spec, dtype, device, quantize=quantize)
    return greedy(model, [list(p) for p in prompts], max_new_tokens, reorder=reorder)


@lru_cache(maxsize=256)
def exact_run(spec: Qwen3Spec, dtype: torch.dtype, device: str,
              prompts: tuple[tuple[int, ...], ...], max_new_tokens: int,
              reorder: tuple[int, tuple[int, ...]] | None = None,
              quantize: str | None = None) -> GreedyRun | None:
    """The float64 model's run along the reference's tokens (None for float64 itself): how
    far the reference's own rounding took it, which the tolerance may follow, and the MoE
    routing margins that say where a routing choice was a near-tie."""
    if dtype == torch.float64:
        return None
    chosen = reference_run(spec, dtype, device, prompts, max_new_tokens, reorder, quantize)
    model = reference_model(spec, torch.float64, device, quantize=quantize)
    return greedy(model, [list(p) for p in prompts], max_new_tokens, reorder=reorder,
                  forced=dict(zip(chosen.rows, chosen.tokens)), record_routing=True)


@contextmanager
def one_cpu_thread() -> Iterator[None]:
    """Tiny matrices gain nothing from intra-op threads, and on a busy machine waiting for
    them costs 10-30x (measured: 13.7 s vs 0.5 s for one example on 2 loaded cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def check_example(spec: Qwen3Spec, workload: Workload, selection: Mapping[str, str],
                  dtype: torch.dtype, *, device: str = "cpu", registry: Registry | None = None,
                  alone: bool = True, quantize: str | None = None) -> int:
    """Run every scenario; raise AssertionError on the first disagreement, return the number
    of tokens compared. ``alone=False`` skips the single-prompt scenarios (for compiled runners
    each new batch size is another compilation). ``quantize`` names a quantization scheme:
    reference and candidate then both hold its quantized weights (see
    :func:`~qwen3core.testing.models.reference_model`)."""
    with one_cpu_thread():
        return _check_example(spec, workload, selection, dtype, device, registry, alone,
                              quantize)


def _check_example(spec: Qwen3Spec, workload: Workload, selection: Mapping[str, str],
                   dtype: torch.dtype, device: str, registry: Registry | None,
                   alone: bool, quantize: str | None = None) -> int:
    tolerance = tolerance_for(dtype)
    reference = reference_model(spec, dtype, device, quantize=quantize)
    candidate = candidate_model(reference, selection, registry)
    prompts, new = workload.prompt_lists(), workload.max_new_tokens
    label = f"{dtype_name(dtype)} {dict(selection)}" + (f" {quantize}" if quantize else "")
    compared = 0

    def expected(batch_prompts, reorder=None):
        return (reference_run(spec, dtype, device, batch_prompts, new, reorder, quantize),
                exact_run(spec, dtype, device, batch_prompts, new, reorder, quantize))

    ref_batch, exact_batch = expected(workload.prompts, workload.reorder)
    cold = greedy(candidate, prompts, new, reorder=workload.reorder)
    compared += assert_greedy_equivalent(ref_batch, cold, tolerance, f"cold batch, {label}",
                                         exact_batch)
    reused = greedy(candidate, prompts, new, prefill_chunks=workload.prefill_chunks,
                    reorder=workload.reorder)
    compared += assert_greedy_equivalent(
        ref_batch, reused, tolerance,
        f"reused model, prefill in {workload.prefill_chunks} chunk(s), {label}", exact_batch)
    if not alone:
        report.record_example(selection, dtype_name(dtype), device, compared)
        return compared
    batched = cold if workload.reorder is None else greedy(candidate, prompts, new)
    for row, prompt in enumerate(workload.prompts):
        ref_alone, exact_alone = expected((prompt,))
        row_run = GreedyRun([batched.tokens[row]], [batched.logits[row]], (0,))
        compared += assert_greedy_equivalent(
            ref_alone, row_run, tolerance, f"row {row} of a batch of {len(prompts)} vs alone, "
            f"{label}", exact_alone)
    first_alone = greedy(candidate, prompts[:1], new)
    ref_first, exact_first = expected(workload.prompts[:1])
    compared += assert_greedy_equivalent(ref_first, first_alone, tolerance,
                                         f"first prompt alone, {label}", exact_first)
    report.record_example(selection, dtype_name(dtype), device, compared)
    return compared


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")
