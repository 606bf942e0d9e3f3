"""Tensor parallelism over gloo: N worker processes give the same greedy runs as one process.

One group of processes per world size serves every example (starting processes costs
seconds). Specs, workloads and backend selections are drawn by the suite's own strategies;
each example is compared with the one-process eager reference by the suite's own assertion:
in float64 every token must match and logits agree to 1e-9 of scale, in float32 the margin
rule applies (see qwen3core.testing.tolerances).
"""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from qwen3core_backends import cpu as cpu_backend
from safetensors.torch import save_file

from qwen3core.spec import Qwen3Spec
from qwen3core.testing.models import reference_model, reference_names
from qwen3core.testing.rank_group import RankGroup, assert_parallel_equal, parallel_examples
from qwen3core.testing.strategies import Workload

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(),
                                reason="this torch build has no torch.distributed")
cpu_kernels_missing = cpu_backend._check(torch.device("cpu"), torch.float32)

# Each example costs a model build and a greedy run on every rank plus one process's run.
EXAMPLES = settings(max_examples=8, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def two_ranks():
    with RankGroup(2) as group:
        yield group


@pytest.fixture(scope="module")
def four_ranks():
    with RankGroup(4) as group:
        yield group


@EXAMPLES
@given(example=parallel_examples(2, torch.float64))
def test_two_ranks_equal_one_process_in_float64(two_ranks, example):
    spec, workload, backends = example
    assert_parallel_equal(two_ranks, spec, torch.float64, workload, backends)


@settings(EXAMPLES, max_examples=6)
@given(example=parallel_examples(2, torch.float32))
def test_two_ranks_equal_one_process_in_float32(two_ranks, example):
    spec, workload, backends = example
    assert_parallel_equal(two_ranks, spec, torch.float32, workload, backends)


@settings(EXAMPLES, max_examples=3)
@given(example=parallel_examples(2, torch.bfloat16))
def test_two_ranks_equal_one_process_in_bfloat16(two_ranks, example):
    """bfloat16 partial sums are rounded once more than one process's single product (then
    added in float32), so tokens may part at near-ties: the margin rule decides."""
    spec, workload, backends = example
    assert_parallel_equal(two_ranks, spec, torch.bfloat16, workload, backends)


@settings(EXAMPLES, max_examples=4)
@given(example=parallel_examples(4, torch.float64))
def test_four_ranks_equal_one_process_in_float64(four_ranks, example):
    spec, workload, backends = example
    assert_parallel_equal(four_ranks, spec, torch.float64, workload, backends)


ONE_KV_HEAD = Qwen3Spec(vocab_size=61, hidden_size=33, intermediate_size=37, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=1, head_dim=6,
                        max_position_embeddings=256, tie_word_embeddings=True, eos_token_id=None)


@pytest.mark.parametrize("spec", [
    ONE_KV_HEAD,
    ONE_KV_HEAD.replace(tie_word_embeddings=False, num_experts=5, num_experts_per_tok=2,
                        moe_intermediate_size=21, decoder_sparse_step=2)],
    ids=["dense-tied", "moe-untied"])
def test_fewer_kv_heads_than_ranks_replicates_them(four_ranks, spec):
    """The case Qwen3 meets at N=8 (4-8 KV heads): here 1 KV head over 4 ranks, with uneven
    vocabulary, MLP width and expert splits."""
    workload = Workload(((5, 9, 2, 60), (7,)), max_new_tokens=4, prefill_chunks=2)
    assert_parallel_equal(four_ranks, spec, torch.float64, workload, reference_names())


@pytest.mark.skipif(cpu_kernels_missing is not None,
                    reason=f"cpu kernels unavailable here: {cpu_kernels_missing}")
def test_a_tied_cpu_head_serves_each_ranks_embedding_rows(four_ranks):
    """The cpu head holds each rank's vocabulary slice as tiles and the embedding reads its rows
    there (qwen3core.tied_embedding): ids another rank holds contribute zeros, and the sum over
    ranks is the whole table's lookup. Uneven slices (a vocabulary of 61 over 4 ranks) and a
    hidden size of 33 (tiles padded to an even number of inputs)."""
    workload = Workload(((5, 60, 2, 59, 0), (7, 16, 15)), max_new_tokens=4, prefill_chunks=2)
    assert_parallel_equal(four_ranks, ONE_KV_HEAD, torch.float32, workload,
                          {**reference_names(), "linear": "cpu"})


def write_checkpoint(directory, spec: Qwen3Spec, dtype: torch.dtype) -> str:
    """The suite's reference model of ``spec`` saved as a Hugging Face directory."""
    model = reference_model(spec, dtype)
    state = {k: v.contiguous() for k, v in model.state_dict().items()
             if not (spec.tie_word_embeddings and k == "lm_head.weight")}
    save_file(state, directory / "model.safetensors", metadata={"format": "pt"})
    kind = ("qwen3_moe", "Qwen3MoeForCausalLM") if spec.is_moe else ("qwen3", "Qwen3ForCausalLM")
    config = {**spec.to_dict(), "model_type": kind[0], "architectures": [kind[1]],
              "torch_dtype": str(dtype).removeprefix("torch.")}
    (directory / "config.json").write_text(json.dumps(config))
    return str(directory)


def test_ranks_loading_their_slices_from_a_checkpoint_equal_one_process(two_ranks, tmp_path):
    spec = ONE_KV_HEAD.replace(num_attention_heads=2, tie_word_embeddings=False, num_experts=4,
                               num_experts_per_tok=2, moe_intermediate_size=21,
                               decoder_sparse_step=2)
    source = write_checkpoint(tmp_path, spec, torch.float64)
    workload = Workload(((5, 9, 2, 60), (7, 1)), max_new_tokens=4)
    assert_parallel_equal(two_ranks, spec, torch.float64, workload,
                          {**reference_names(), "moe": "grouped"}, source=source)
