"""Compiled vs eager: the registered inductor runners against the eager reference.

Inductor compiles C++ for every new graph (tens of seconds on a CPU), so these examples share
one spec, one dtype and one batch size, and hence one compiled decode step (and, for
``compile-all``, one prefill step per prompt width): the first example compiles, the others
reuse. The other components are the defaults a user gets, with the static cache that makes
decode compile once. Dynamo's tracing of other selections (growing cache, other batch sizes)
is covered cheaply in tests/backends/test_compile.py.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import strategies as st

from qwen3core.registry import get_registry
from qwen3core.spec import Qwen3Spec
from qwen3core.testing import Workload, check_backend, check_example
from qwen3core.testing.strategies import prompts
from qwen3core.testing.suite import scaled_examples

CPU = torch.device("cpu")
# Dense: MoE layers would double the C++ inductor generates (measured cold: 62 s vs 32 s for
# one decode graph); the grouped MoE's tracing is checked in tests/backends/test_moe_grouped.py
# and test_compile.py.
SPEC = Qwen3Spec(vocab_size=96, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                 max_position_embeddings=256, tie_word_embeddings=False, eos_token_id=None)


def _unavailable(name: str, device: torch.device = CPU,
                 dtype: torch.dtype = torch.float32) -> str | None:
    return get_registry().get("runner", name).unavailable_reason(device, dtype)


def _defaults_with_static_cache(device: torch.device = CPU,
                                dtype: torch.dtype = torch.float32) -> dict[str, str]:
    names = get_registry().select({"kv_cache": "static"}, device=device, dtype=dtype).names()
    names.pop("runner")
    return names


@st.composite
def two_prompt_workloads(draw, vocab_size):
    """Two prompts (one batch size: one compiled decode step), no mid-way reorder."""
    batch = tuple(draw(prompts(vocab_size, 1, 8)) for _ in range(2))
    return Workload(batch, draw(st.integers(2, 5)), draw(st.integers(1, 2)))


@pytest.mark.skipif(_unavailable("compile") is not None,
                    reason=f"torch.compile unavailable: {_unavailable('compile')}")
def test_compiled_decode_matches_the_eager_reference():
    ran = check_backend("runner", "compile", pinned=_defaults_with_static_cache(),
                        dtypes=(torch.float32,), max_examples=scaled_examples(3),
                        spec_strategy=st.just(SPEC), workload_strategy=two_prompt_workloads,
                        alone=False, long_examples=0)  # each new length: a compilation
    assert ran > 0


_CUDA = torch.device("cuda")
_GRAPHS_MISSING = _unavailable("compile-graphs", _CUDA, torch.bfloat16)


@pytest.mark.skipif(_GRAPHS_MISSING is not None,
                    reason=f"CUDA graphs unavailable: {_GRAPHS_MISSING} (scripts/gpu_verify.sh "
                           f"runs this on a GPU)")
def test_cuda_graph_decode_matches_the_eager_reference_at_long_lengths():
    """The same examples on a GPU, each decode step replayed as a CUDA graph (each new shape a
    compilation and a recording), and one long example (hundreds of prompt tokens, a capacity
    past 256 slots); the other components are the GPU's defaults, cuda kernels included."""
    ran = check_backend("runner", "compile-graphs", device="cuda",
                        pinned=_defaults_with_static_cache(_CUDA, torch.bfloat16),
                        dtypes=(torch.bfloat16,), max_examples=scaled_examples(3),
                        spec_strategy=st.just(SPEC), workload_strategy=two_prompt_workloads,
                        alone=False, long_examples=1)
    assert ran > 0


@pytest.mark.skipif(_unavailable("compile-all") is not None,
                    reason=f"torch.compile unavailable: {_unavailable('compile-all')}")
def test_compiled_prefill_and_decode_match_the_eager_reference():
    selection = {**_defaults_with_static_cache(), "runner": "compile-all"}
    workload = Workload(((5, 17, 3, 90, 41), (12, 7, 33)), max_new_tokens=4)
    assert check_example(SPEC, workload, selection, torch.float32, alone=False) > 0


@pytest.mark.skipif(_unavailable("compile") is not None,
                    reason=f"torch.compile unavailable: {_unavailable('compile')}")
def test_compiled_decode_with_the_growing_cache_and_three_layers():
    """Regression: with the default growing cache, a model of three or more layers failed on
    the second decode step (when dynamo makes the key length dynamic) with "NameError: name
    's24' is not defined" from inductor's generated code. The other components are the
    defaults a user gets (the cpu kernels where they are available)."""
    names = get_registry().select({"runner": "compile"}, device=CPU,
                                  dtype=torch.float32).names()
    assert names["kv_cache"] == "dynamic"
    spec = SPEC.replace(num_hidden_layers=3)
    workload = Workload(((5, 17, 3, 90, 41), (12, 7, 33)), max_new_tokens=4)
    assert check_example(spec, workload, names, torch.float32, alone=False) > 0
