"""The equivalence property: one example, every scenario, against the eager reference.

For one (spec, workload, selection, dtype) the candidate model (the selection's
implementations, the reference's weights) must reproduce the reference's greedy run:

* cold: a left-padded batch on a fresh model (rows dropped/reordered mid-way if the workload
  says so);
* reused: the same batch again on the same model, prefilled in chunks when the workload says
  so (cache reuse within a request, compiled code and storage reuse across requests);
* alone vs batched: every prompt of the batch decoded alone by the reference, against the
  candidate's batched row and against the candidate decoding the first prompt alone;
* joining: the prompts arriving one step apart, each prefilled on its own (in the workload's
  chunks), joining the running decode batch and leaving it when done, as a continuously
  batching server runs them (rows at different cache positions), against each alone.

A failure names where (row, step, prefill or decode, position, padding) and by how much. When
the selection holds more than one implementation other than the reference's, the failing
example is rerun with each of them alone beside the reference, and the message names those
that diverge on their own: a bug is blamed on its implementation, not on its neighbours.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import lru_cache

import torch

from qwen3core.registry import Registry, get_registry
from qwen3core.spec import Qwen3Spec
from qwen3core.testing import report
from qwen3core.testing.compare import assert_greedy_equivalent
from qwen3core.testing.harness import GreedyRun, greedy
from qwen3core.testing.joining import greedy_joining, staggered_arrivals
from qwen3core.testing.models import candidate_model, reference_model, reference_names
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
                  alone: bool = True, blame: bool = True, quantize: str | None = None) -> int:
    """Run every scenario; raise AssertionError on the first disagreement, return the number
    of tokens compared. ``alone=False`` skips the single-prompt scenarios (for compiled runners
    each new batch size is another compilation). ``blame=False`` leaves out the reruns that
    name the implementation at fault (``check_backend``, whose hypothesis run calls this many
    times while shrinking, calls :func:`blame_message` once at the end instead). ``quantize``
    names a quantization scheme: reference and candidate then both hold its quantized weights
    (see :func:`~qwen3core.testing.models.reference_model`)."""
    with one_cpu_thread():
        try:
            return _check_example(spec, workload, selection, dtype, device, registry, alone,
                                  quantize)
        except AssertionError as failure:
            if not blame:
                raise
            raise AssertionError(blame_message(failure, spec, workload, selection, dtype,
                                               device=device, registry=registry,
                                               alone=alone, quantize=quantize)) from None


def blame_message(failure: AssertionError, spec: Qwen3Spec, workload: Workload,
                  selection: Mapping[str, str], dtype: torch.dtype, *, device: str = "cpu",
                  registry: Registry | None = None, alone: bool = True,
                  quantize: str | None = None) -> str:
    """The failure's message, prefixed by the implementations that diverge on their own."""
    reference = reference_names(registry or get_registry())
    suspects = {c: n for c, n in selection.items() if reference.get(c) != n}
    if len(suspects) <= 1:
        named = ", ".join(f"{c}={n}" for c, n in suspects.items()) or "the reference itself"
        return f"{named} diverges from the eager reference: {failure}"
    guilty = []
    for component, name in suspects.items():
        try:
            with one_cpu_thread():
                _check_example(spec, workload, {**reference, component: name}, dtype, device,
                               registry, alone, quantize)
        except AssertionError:
            guilty.append(f"{component}={name}")
    if guilty:
        return (f"{', '.join(guilty)} diverge(s) from the eager reference on its own (every "
                f"other component the reference's); in the selection drawn: {failure}")
    return (f"no implementation of {', '.join(f'{c}={n}' for c, n in suspects.items())} "
            f"diverges on its own; together they do: {failure}")


def _check_example(spec: Qwen3Spec, workload: Workload, selection: Mapping[str, str],
                   dtype: torch.dtype, device: str, registry: Registry | None,
                   alone: bool, quantize: str | None = None) -> int:
    tolerance = tolerance_for(dtype, quantize)
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
        _record(spec, selection, dtype, device, compared, workload)
        return compared
    batched = cold if workload.reorder is None else greedy(candidate, prompts, new)
    for row, prompt in enumerate(workload.prompts):
        ref_alone, exact_alone = expected((prompt,))
        row_run = GreedyRun([batched.tokens[row]], [batched.logits[row]], (0,),
                            prompt_lengths=(len(prompt),), width=batched.width)
        compared += assert_greedy_equivalent(
            ref_alone, row_run, tolerance, f"row {row} of a batch of {len(prompts)} vs alone, "
            f"{label}", exact_alone)
    first_alone = greedy(candidate, prompts[:1], new)
    ref_first, exact_first = expected(workload.prompts[:1])
    compared += assert_greedy_equivalent(ref_first, first_alone, tolerance,
                                         f"first prompt alone, {label}", exact_first)
    joined = greedy_joining(candidate, prompts, new, staggered_arrivals(len(prompts)),
                            prefill_chunks=workload.prefill_chunks)
    for row, prompt in enumerate(workload.prompts):
        ref_alone, exact_alone = expected((prompt,))
        row_run = GreedyRun([joined.tokens[row]], [joined.logits[row]], (0,),
                            prompt_lengths=(len(prompt),), width=len(prompt))
        compared += assert_greedy_equivalent(
            ref_alone, row_run, tolerance, f"row {row} joining a running batch at step {row} "
            f"vs alone, {label}", exact_alone)
    _record(spec, selection, dtype, device, compared, workload)
    return compared


def _record(spec: Qwen3Spec, selection: Mapping[str, str], dtype: torch.dtype, device: str,
            compared: int, workload: Workload) -> None:
    longest = max(len(p) for p in workload.prompts)
    # The last token whose logits were compared: the longest prompt's last decode step.
    deepest = longest - 1 + workload.max_new_tokens - 1
    scaling = spec.rope_scaling
    past_yarn = (scaling is not None and scaling.rope_type == "yarn"
                 and deepest >= scaling.original_max_position_embeddings)
    report.record_example(selection, dtype_name(dtype), device, compared,
                          longest_prompt=longest, deepest_position=deepest,
                          past_yarn_original=past_yarn)


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")
