"""``check_backend``: the conformance suite for one implementation, in one call."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

import torch
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from qwen3core.registry import Registry, get_registry
from qwen3core.spec import Qwen3Spec
from qwen3core.testing import report
from qwen3core.testing.models import reference_names
from qwen3core.testing.properties import blame_message, check_example, dtype_name
from qwen3core.testing.strategies import (
    Workload,
    combinations,
    long_specs,
    long_workloads,
    specs,
    workloads,
)

DTYPES = (torch.float64, torch.float32, torch.bfloat16)
#: Examples per call in the default hypothesis profile; ``--hypothesis-profile=long`` (or any
#: profile) scales it by the profile's ``max_examples`` / 100.
DEFAULT_EXAMPLES = 12
#: Long examples per call (see :func:`~qwen3core.testing.strategies.long_workloads`), scaled
#: the same way: each costs well under a second on one narrow layer.
LONG_EXAMPLES = 2


def scaled_examples(n: int) -> int:
    return max(1, round(n * settings.default.max_examples / 100))


def available_dtypes(registry: Registry, component: str | None, name: str | None,
                     device: str, dtypes: Iterable[torch.dtype]) -> list[torch.dtype]:
    if component is None:
        return list(dtypes)
    impl = registry.get(component, name)
    return [d for d in dtypes if impl.unavailable_reason(torch.device(device), d) is None]


def check_backend(component: str | None = None, name: str | None = None, *,
                  plugins: Sequence[object] = (), device: str = "cpu",
                  dtypes: Iterable[torch.dtype] = DTYPES, max_examples: int | None = None,
                  runners: Iterable[str] | None = ("eager",),
                  pinned: Mapping[str, str] | None = None,
                  spec_strategy: st.SearchStrategy | None = None,
                  workload_strategy: Callable[[int], st.SearchStrategy] = workloads,
                  alone: bool = True, shrink: bool = True, others: str = "drawn",
                  long_examples: int | None = None, quantize: str | None = None) -> int:
    """Check that implementation ``name`` of ``component`` matches the eager reference.

    Hypothesis draws a tiny spec, a batch of prompts and a dtype, and a selection with
    ``component=name``; :func:`check_example` then runs every scenario. The other components
    are, with ``others="drawn"``, drawn from what the registry holds (so the backend is also
    checked next to the other installed ones), or, with ``others="reference"``, the eager
    reference's (so that only this implementation can fail the check). ``component=None``
    draws every component. ``plugins`` adds plugin objects (e.g. a backend not installed as a
    distribution). ``runners`` limits the runner component (compiling runners spend seconds per
    new shape); None allows all available ones. ``pinned`` fixes further components;
    ``spec_strategy`` / ``workload_strategy`` (a function of the vocabulary size) replace the
    default strategies; ``alone=False`` skips the single-prompt scenarios; ``shrink=False``
    reports the first failure unshrunk (faster).

    ``max_examples`` short examples (few layers, prompts of up to 10 tokens) are followed by
    ``long_examples`` long ones (:func:`~.strategies.long_specs` and
    :func:`~.strategies.long_workloads`: one narrow layer, prompts of hundreds of tokens that
    cross the lengths where implementations change behaviour, positions past the original
    context of a yarn spec); both default to the profile-scaled counts, and
    ``long_examples=0`` leaves the long ones out.

    ``quantize`` names a quantization scheme both models hold (see :func:`check_example`);
    MoE blocks are then pinned to ``eager`` unless ``pinned`` says otherwise (the stacked
    ``moe_grouped`` experts take no quantized weights).

    Returns the number of examples run; raises AssertionError (with hypothesis's minimal
    failing example, and the implementations that diverge on their own) on a disagreement,
    BackendSelectionError for an unknown name, and ValueError when the implementation is
    unavailable for every dtype on ``device`` or ``others`` is neither "drawn" nor
    "reference".
    """
    registry = get_registry(plugins)
    usable = available_dtypes(registry, component, name, device, dtypes)
    if not usable:
        impl = registry.get(component, name)
        reasons = {dtype_name(d): impl.unavailable_reason(torch.device(device), d)
                   for d in dtypes}
        raise ValueError(f"{component} implementation {name!r} is unavailable on {device} for "
                         f"every dtype checked: {reasons}")
    if others not in ("drawn", "reference"):
        raise ValueError(f'others must be "drawn" or "reference", got {others!r}')
    fixed = dict(pinned or {})
    if others == "reference" and component is not None:
        fixed = {**reference_names(registry), **fixed}
    pinned = {**fixed, **({component: name} if component is not None else {})}
    if quantize is not None:
        pinned.setdefault("moe", "eager")
    runners = None if component == "runner" else runners
    spaces = {d: combinations(registry, device, d, pinned=pinned, runners=runners)
              for d in usable}
    for d, space in spaces.items():
        what = _describe(pinned, registry) or "all components"
        report.record_space(f"{device} {dtype_name(d)}, {what}{_with(plugins)}", len(space))
    moe = True if component == "moe" else None
    if spec_strategy is None:
        spec_strategy = specs(moe=moe)
    examples = max_examples if max_examples is not None else scaled_examples(DEFAULT_EXAMPLES)
    long_count = scaled_examples(LONG_EXAMPLES) if long_examples is None else long_examples
    phases = list(Phase) if shrink else [Phase.explicit, Phase.reuse, Phase.generate]
    ran = []
    last_failure: list = []  # the arguments of the latest failing example

    def run(spec_strategy, workload_strategy, count: int) -> None:
        @settings(max_examples=count, deadline=None, phases=phases,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
        @given(data=st.data())
        def equivalent_to_reference(data: st.DataObject) -> None:
            dtype = data.draw(st.sampled_from(usable), label="dtype")
            spec = data.draw(spec_strategy, label="spec")
            workload = data.draw(workload_strategy(spec.vocab_size), label="workload")
            selection = data.draw(st.sampled_from(spaces[dtype]), label="selection")
            try:
                check_example(spec, workload, selection, dtype, device=device,
                              registry=registry, alone=alone, blame=False, quantize=quantize)
            except AssertionError:
                last_failure[:] = [spec, workload, selection, dtype]
                raise
            ran.append(1)

        try:
            equivalent_to_reference()
        except AssertionError as failure:
            if not last_failure:
                raise
            spec, workload, selection, dtype = last_failure
            blamed = AssertionError(blame_message(failure, spec, workload, selection, dtype,
                                                  device=device, registry=registry,
                                                  alone=alone, quantize=quantize))
            blamed.__notes__ = list(getattr(failure, "__notes__", []))  # hypothesis's example
            raise blamed from None

    run(spec_strategy, workload_strategy, examples)
    if long_count:
        run(long_specs(moe=True if component == "moe" else False if component else None),
            long_workloads, long_count)
    return len(ran)


def _describe(pinned: Mapping[str, str], registry: Registry) -> str:
    """The pinned components for a report label; those pinned to the reference in one word."""
    reference = reference_names(registry)
    own = [f"{c}={n}" for c, n in pinned.items() if reference.get(c) != n]
    at_reference = [c for c, n in pinned.items() if reference.get(c) == n]
    if len(at_reference) > 2:
        own.append("others eager")
    else:
        own += [f"{c}={pinned[c]}" for c in at_reference]
    return ", ".join(own)


#: The fixed example :func:`check_all_combinations` runs: two MoE layers between dense ones
#: (sparse step 2, an odd hidden size, GQA 2), and a left-padded batch whose rows are reordered
#: mid-way, with the prompt prefilled in two chunks on reuse.
SWEEP_SPEC = Qwen3Spec(vocab_size=97, hidden_size=33, intermediate_size=40, num_hidden_layers=4,
                       num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                       max_position_embeddings=256, tie_word_embeddings=False, num_experts=4,
                       num_experts_per_tok=2, moe_intermediate_size=21, norm_topk_prob=True,
                       decoder_sparse_step=2, eos_token_id=None)
SWEEP_WORKLOAD = Workload(prompts=((5, 17, 3, 90, 41, 8), (12, 7), (60, 61, 62, 2)),
                          max_new_tokens=4, prefill_chunks=2, reorder=(2, (2, 0)))


def check_all_combinations(*, plugins: Sequence[object] = (), device: str = "cpu",
                           dtypes: Iterable[torch.dtype] = DTYPES,
                           runners: Iterable[str] | None = ("eager",),
                           spec: Qwen3Spec = SWEEP_SPEC, workload: Workload = SWEEP_WORKLOAD
                           ) -> int:
    """Every available combination of implementations, for every dtype, on one fixed example
    (all scenarios of :func:`check_example`); returns the number of combinations checked."""
    registry = get_registry(plugins)
    checked = 0
    for dtype in dtypes:
        space = combinations(registry, device, dtype, runners=runners)
        report.record_space(f"{device} {dtype_name(dtype)}, every combination{_with(plugins)}",
                            len(space))
        for selection in space:
            check_example(spec, workload, selection, dtype, device=device, registry=registry)
            checked += 1
    return checked


def _with(plugins: Sequence[object]) -> str:
    """Names the extra plugins in a report label (their combinations are a different space)."""
    if not plugins:
        return ""
    names = [getattr(p, "__name__", None) or type(p).__name__ for p in plugins]
    return " + plugins " + ", ".join(names)
