"""The compile runners: registration, availability, and how often decode is compiled.

Compilation counts are measured with dynamo's counters on the ``aot_eager`` backend (dynamo's
tracing and guards, without inductor's C++ code generation, which costs tens of seconds per
graph on a CPU); tests/equivalence/test_compiled.py runs the registered inductor runners.
"""

from __future__ import annotations

import pytest
import torch
from qwen3core_backends.compile import availability
from qwen3core_backends.compile.runner import CompileRunner
from torch._dynamo.utils import counters

from qwen3core import PRESETS, Implementation, hookimpl
from qwen3core.generation.steps import decode_one, prefill, steps_for
from qwen3core.registry import get_registry
from qwen3core.testing.harness import greedy
from qwen3core.testing.models import candidate_model, reference_model, reference_names

CPU = torch.device("cpu")


class AotEagerRunner:
    """A test plugin: the compile runner on dynamo's aot_eager backend."""

    @hookimpl
    def qwen3core_runner(self):
        return Implementation("runner", "compile-aot-eager",
                              lambda ctx: CompileRunner(("decode",), backend="aot_eager"))


def _graphs() -> int:
    return counters["stats"]["unique_graphs"]


def test_registered_below_the_eager_runner_so_compiling_is_opt_in():
    registry = get_registry()
    names = [i.name for i in registry.implementations("runner")]
    assert names.index("eager") < names.index("compile") < names.index("compile-all")
    assert registry.select(None, device=CPU, dtype=torch.float32)["runner"].name == "eager"


def test_unavailable_without_a_cpp_compiler_says_why(monkeypatch):
    monkeypatch.setattr(availability.shutil, "which", lambda name: None)
    availability._cpu_reason.cache_clear()
    try:
        reason = availability.compile_unavailable(CPU, torch.float32)
    finally:
        availability._cpu_reason.cache_clear()
    assert reason is not None and "C++ compiler" in reason and "g++" in reason


def test_decode_only_runner_leaves_prefill_alone_and_shares_compiled_code():
    runner, other = CompileRunner(("decode",)), CompileRunner(("decode",))
    assert runner(prefill, "prefill") is prefill
    assert runner(decode_one, "decode") is not decode_one
    # One compiled wrapper per step function: models share dynamo's code cache.
    assert runner(decode_one, "decode") is other(decode_one, "decode")
    both = CompileRunner(("prefill", "decode"))
    assert both(prefill, "prefill") is not prefill


def test_static_cache_decode_compilations_are_few_and_reused():
    """One decode compilation serves every step and every request of a batch size; a second
    batch size makes the batch dimension dynamic; batch 1 is specialised (dynamo treats sizes
    0 and 1 apart). Tokens equal the eager reference throughout."""
    torch._dynamo.reset()
    registry = get_registry([AotEagerRunner()])
    reference = reference_model(PRESETS["tiny-moe"], torch.float32)
    selection = {**reference_names(), "runner": "compile-aot-eager", "kv_cache": "static",
                 "attention": "sdpa", "moe": "grouped"}
    model = candidate_model(reference, selection, registry)
    requests = [  # (prompts, new graphs expected)
        ([[1, 2, 3], [4, 5]], 1),  # 5 decode steps, one compilation
        ([[7, 8, 9, 10], [11]], 0),  # another length, same capacity bucket: reused
        ([[1, 2], [3], [4, 5]], 1),  # batch 3: the batch dimension becomes dynamic
        ([[1], [2], [3], [4]], 0),  # batch 4 reuses that graph
        ([[6, 5, 4]], 1),  # batch 1: specialised
    ]
    try:
        for prompts, expected in requests:
            before = _graphs()
            got = greedy(model, prompts, 6)
            assert _graphs() - before == expected, prompts
            assert got.tokens == greedy(reference, prompts, 6).tokens
        steps, cache = steps_for(model), model.new_cache(1, 8)
        logits = steps.prefill(torch.tensor([[1, 2, 3]]), None, cache)
        for _ in range(3):
            logits = steps.decode_one(logits.argmax(-1, keepdim=True), cache)
        assert cache.length == 6  # read back from the device counter the compiled steps kept
        assert int(cache.seen[0]) == 6
    finally:
        torch._dynamo.reset()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_default_cpu_kernels_trace_into_one_decode_graph(dtype):
    """With the default (fastest) implementations on this machine and the static cache, the
    decode step traces without a graph break, so inductor sees the whole step (a break in a
    layer, like an availability lookup inside forward, costs a resume per layer per step)."""
    torch._dynamo.reset()
    counters.clear()
    registry = get_registry([AotEagerRunner()])
    reference = reference_model(PRESETS["tiny"], dtype)
    selection = registry.select({"kv_cache": "static", "runner": "compile-aot-eager"},
                                device=CPU, dtype=dtype).names()
    model = candidate_model(reference, selection, registry)
    try:
        got = greedy(model, [[3, 1, 4], [1, 5]], 5)
        if dtype == torch.float32:  # bfloat16 tokens may legitimately differ by rounding
            assert got.tokens == greedy(reference, [[3, 1, 4], [1, 5]], 5).tokens
        assert dict(counters["graph_break"]) == {}, selection
        assert _graphs() == 1
    finally:
        torch._dynamo.reset()


def test_cuda_graph_runner_is_last_and_says_it_needs_a_cuda_device():
    registry = get_registry()
    names = [i.name for i in registry.implementations("runner")]
    assert names.index("compile-all") < names.index("compile-graphs")
    reason = registry.get("runner", "compile-graphs").unavailable_reason(CPU, torch.float32)
    assert reason is not None and "CUDA graphs need a CUDA device" in reason


def test_cuda_graph_runner_copies_its_outputs_and_marks_each_step(monkeypatch):
    """What a caller keeps must not live in the graph's memory, which the next replay reuses;
    checked with inductor swapped for dynamo's eager backend, where the identity step returns
    its input itself."""
    marks = []
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", lambda: marks.append(1))
    wrapped = CompileRunner(("decode",), backend="eager", mode="reduce-overhead")(
        lambda x: x, "decode")
    x = torch.arange(4.0)
    out = wrapped(x)
    assert torch.equal(out, x) and out.data_ptr() != x.data_ptr()
    assert marks == [1]


def test_on_cuda_without_a_visible_gpu_the_reason_says_so(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for name in ("compile", "compile-graphs"):
        reason = get_registry().get("runner", name).unavailable_reason(
            torch.device("cuda"), torch.bfloat16)
        assert reason is not None and "needs a CUDA device; none is visible" in reason
