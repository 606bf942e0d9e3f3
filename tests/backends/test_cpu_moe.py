"""The cpu MoE block (one operator per layer) against the eager reference.

Quantized experts in every scheme the cpu linear runs, and dense ones, both dtypes, batches
whose rows choose different experts: the equivalence property (greedy tokens under the margin
rule, logits within tolerance); the block equal bit for bit to the eager block over the cpu
linear (the same kernels on the same rows); each expert held once, as views into the layer's
stacks; expert parallelism; and deliberately wrong variants caught.
"""

from __future__ import annotations

import textwrap

import pytest
import torch
from qwen3core_backends import cpu as cpu_backend
from qwen3core_backends.cpu.moe import CpuMoE

import qwen3core
from qwen3core import Implementation, hookimpl
from qwen3core.build import build_random, select_backends
from qwen3core.errors import BackendSelectionError
from qwen3core.quant import resolve_scheme
from qwen3core.quant.apply import build_random_quantized
from qwen3core.registry import get_registry
from qwen3core.spec import Qwen3Spec
from qwen3core.testing import Workload, check_example

CPU = torch.device("cpu")
_missing = cpu_backend._check(CPU, torch.float32)
pytestmark = pytest.mark.skipif(_missing is not None,
                                reason=f"cpu kernels unavailable here: {_missing}")

# moe_intermediate_size 34: gate and up each padded to whole tiles inside the stack. (With
# more experts the reference's routing margins fall within the quantized tolerance from the
# first steps, and the margin rule leaves nothing to compare: see WIDE below for those.)
MOE = Qwen3Spec(vocab_size=97, hidden_size=72, intermediate_size=40, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                max_position_embeddings=512, tie_word_embeddings=False, num_experts=4,
                num_experts_per_tok=2, moe_intermediate_size=34, norm_topk_prob=True,
                eos_token_id=None)
WIDE = MOE.replace(num_experts=6, num_experts_per_tok=3)
# Three rows of different lengths: a batch whose rows choose different experts per step.
SHORT = Workload(prompts=((5, 17, 3, 90, 41, 8), (12, 7), (60, 61, 62, 2)), max_new_tokens=5,
                 prefill_chunks=2, reorder=(2, (2, 0)))


@pytest.mark.parametrize("scheme", ["int8", "int4", "int4:g64:sym", "int8:channel", "w8a8",
                                    "w4a8", "w4a8:g64:sym", None])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cpu_moe_is_equivalent_to_the_eager_reference(scheme, dtype):
    assert check_example(MOE, SHORT, {"moe": "cpu"}, dtype, quantize=scheme) > 0


# A 300-token prompt prefilled in three chunks, then decode: the block's prefill-sized calls
# (every expert chosen by some row) and a long KV cache, as the suite's long workloads. In
# float32: this tiny model's bfloat16 margins after 300 tokens all fall inside bfloat16's
# tolerance, so the margin rule would leave no token to compare; for the same reason the a8
# schemes (compared under bfloat16's rule in every dtype) are held at a 300-token prefill by the
# bit-for-bit test against the eager block below, not here.
LONG = Workload(prompts=(tuple((i * 37 + 11) % 90 for i in range(300)), (4, 9)),
                max_new_tokens=24, prefill_chunks=3)


@pytest.mark.parametrize("scheme", ["int8", "int4", "int4:g64:sym", None])
def test_cpu_moe_long_workload(scheme):
    selection = {"linear": "cpu", "mlp": "cpu", "moe": "cpu"}
    assert check_example(MOE, LONG, selection, torch.float32, quantize=scheme,
                         alone=False) > 0


def _block(moe: str, spec: Qwen3Spec, dtype: torch.dtype, scheme: str | None):
    selection = select_backends({"moe": moe, "linear": "cpu", "mlp": "cpu"}, device=CPU,
                                dtype=dtype)
    if scheme is None:
        model = build_random(spec, selection, dtype=dtype, device=CPU, seed=3)
    else:
        model = build_random_quantized(spec, selection, dtype=dtype, device=CPU, seed=3,
                                       scheme=resolve_scheme(scheme))
    return model.model.layers[0].mlp


@pytest.mark.parametrize("scheme", ["int4", "int8", "w4a8", "w8a8", None])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_the_block_equals_the_eager_block_over_the_cpu_linear_bit_for_bit(scheme, dtype):
    """The same tile kernels on the same rows in the same order, the same roundings: with
    gate/up fused in the eager block too (I a multiple of 16, silu_mul both ways), equal."""
    spec = WIDE.replace(moe_intermediate_size=32)
    ours, eager = _block("cpu", spec, dtype, scheme), _block("eager", spec, dtype, scheme)
    gen = torch.Generator().manual_seed(0)
    for tokens in (1, 2, 7, 40, 300):  # decode steps to a long prompt's prefill
        x = torch.randn(1, tokens, spec.hidden_size, generator=gen).to(dtype)
        assert torch.equal(ours(x), eager(x)), (scheme, dtype, tokens)
    # 64 alike tokens: each chosen expert gets 64 rows, whose layout has a padded row stride
    # (kernels.h's activation_stride).
    alike = torch.randn(1, 1, spec.hidden_size, generator=gen).to(dtype).expand(1, 64, -1)
    assert torch.equal(ours(alike), eager(alike)), (scheme, dtype, "64 alike")
    chosen = torch.topk(ours.gate(x[0]), spec.num_experts_per_tok).indices.sort(-1).values
    assert len({tuple(row) for row in chosen.tolist()}) > 3  # rows chose different experts


def test_experts_are_held_once_as_views_into_the_stacks():
    moe = _block("cpu", WIDE, torch.bfloat16, "int4")
    assert isinstance(moe, CpuMoE)
    levels = moe.gate_up_q.levels
    assert levels.shape[0] == WIDE.num_experts
    for e, expert in moe.experts.by_id():
        for part, proj in enumerate((expert.gate_proj, expert.up_proj)):
            assert "weight" not in proj._parameters
            assert proj.quant.levels.data_ptr() == levels[e, part * levels.shape[1] // 2].data_ptr()
        assert expert.down_proj.quant.levels.data_ptr() == moe.down_q.levels[e].data_ptr()
    stacked = sum(t.nbytes for t in (moe.gate_up_q.levels, moe.gate_up_q.scales,
                                     moe.gate_up_q.zeros, moe.down_q.levels, moe.down_q.scales,
                                     moe.down_q.zeros))
    own = sum(p.numel() * p.element_size() for n, p in moe.named_parameters() if "experts" in n)
    assert own == 0 and stacked > 0


def test_dense_experts_are_views_into_the_stacks_and_follow_a_new_weight():
    moe = _block("cpu", MOE, torch.float32, None)
    stack = moe.down_dense.current()
    assert moe.experts[2].down_proj.tiles.data_ptr() == stack[2].data_ptr()
    x = torch.randn(1, 3, MOE.hidden_size)
    before = moe(x)
    new = torch.randn(MOE.hidden_size, MOE.moe_intermediate_size)
    for expert in moe.experts:  # every expert's down_proj rewritten: the output must change
        expert.down_proj.load_state_dict({"weight": new})
    after = moe(x)
    assert not torch.equal(before, after)
    assert torch.equal(moe.experts[0].down_proj.weight, new)


def test_an_explicit_selection_it_cannot_run_is_a_clear_error():
    with pytest.raises(BackendSelectionError, match="moe implementation 'cpu' is unavailable"):
        select_backends({"moe": "cpu"}, device=CPU, dtype=torch.float64)
    moe = _block("cpu", MOE, torch.float32, "int4")
    with pytest.raises(BackendSelectionError, match="bfloat16 or float32"):
        moe(torch.randn(1, 2, MOE.hidden_size, dtype=torch.float64))


def test_quantize_on_load_selects_it_by_default_and_keeps_an_explicit_choice():
    loaded = qwen3core.load("random:tiny-moe", quantize="int4", dtype="bfloat16")
    assert loaded.selection["moe"].name == "cpu"
    loaded = qwen3core.load("random:tiny-moe", quantize="int4", dtype="bfloat16",
                            backends={"moe": "eager"})
    assert loaded.selection["moe"].name == "eager"


class _Wrong(CpuMoE):
    """Hands the operator altered routing; ``alter`` says how."""

    alter = staticmethod(lambda weights, experts, ranked: (weights, experts))

    def forward(self, x):
        from qwen3core_backends.eager.moe import route

        shape = x.shape
        tokens = x.reshape(-1, shape[-1])
        logits = self.gate(tokens)
        weights, experts = route(logits, self.top_k, self.norm_topk_prob, x.dtype)
        ranked = torch.argsort(logits.float(), dim=-1, descending=True)
        weights, experts = self.alter(weights, experts, ranked)
        out = torch.ops.qwen3core_cpu.moe_experts(
            tokens, experts.contiguous(), weights.contiguous(), self.first_expert,
            *self._operands(x), self.intermediate_size)
        return out.reshape(shape)


class WeightsReversed(_Wrong):
    """Each token's routing weights paired with its experts in reverse order."""

    alter = staticmethod(lambda w, e, ranked: (w.flip(-1), e))


class NextExpert(_Wrong):
    """The last of the k chosen experts replaced by the next-ranked one."""

    alter = staticmethod(lambda w, e, ranked: (
        w, torch.cat((e[:, :-1], ranked[:, e.shape[1]:e.shape[1] + 1]), dim=-1)))


class WrongMoEs:
    @hookimpl
    def qwen3core_moe(self):
        return [Implementation("moe", "weights-reversed", WeightsReversed),
                Implementation("moe", "next-expert", NextExpert)]


@pytest.mark.parametrize("name", ["weights-reversed", "next-expert"])
def test_a_wrong_variant_is_caught(name):
    registry = get_registry([WrongMoEs()])
    with pytest.raises(AssertionError, match="differ from the reference|!= reference"):
        check_example(MOE, SHORT, {"moe": name}, torch.bfloat16, registry=registry,
                      quantize="int4")


def test_expert_parallelism_two_ranks():
    """Each rank holds half the experts and returns their contribution (dense float32: quantized
    loads refuse tensor parallelism for now)."""
    if not torch.distributed.is_available():
        pytest.skip("this torch build has no torch.distributed")
    from qwen3core.testing.models import reference_names
    from qwen3core.testing.rank_group import RankGroup, assert_parallel_equal

    spec = MOE.replace(num_experts=4, num_experts_per_tok=2)
    with RankGroup(2) as group:
        assert assert_parallel_equal(group, spec, torch.float32, SHORT,
                                     {**reference_names(), "moe": "cpu"}) > 0


def test_avx2_kernels_when_forced(run_forced_avx2):
    """The AVX2 kernels (chosen once per process, so in a fresh one) give the eager block's
    numbers too."""
    code = textwrap.dedent("""
        import torch
        from qwen3core_backends.cpu.build import isa
        from tests.backends.test_cpu_moe import WIDE, _block
        assert isa() == "avx2"
        spec = WIDE.replace(moe_intermediate_size=32)
        x = torch.randn(1, 5, spec.hidden_size).bfloat16()
        for scheme in ("int4", "int8", "w4a8", None):
            ours = _block("cpu", spec, torch.bfloat16, scheme)
            eager = _block("eager", spec, torch.bfloat16, scheme)
            assert torch.equal(ours(x), eager(x)), scheme
    """)
    run_forced_avx2(code)
