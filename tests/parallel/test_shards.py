"""What each rank holds, without starting processes: a layout without a process group can
build (not run) its shard, so every rank's weights are compared here with the one-process
model's, slice by slice."""

from __future__ import annotations

import itertools

import pytest
import torch

from qwen3core.build import build_random, select_backends
from qwen3core.errors import ParallelError
from qwen3core.init import fill_random
from qwen3core.parallel import ParallelLayout, Span, split_evenly
from qwen3core.parallel.plan import ELSEWHERE, Shard, shard_for
from qwen3core.spec import PRESETS, Qwen3Spec

EAGER = {"attention": "eager", "norm": "eager", "rope": "eager", "kv_cache": "dynamic",
         "linear": "eager", "mlp": "eager", "moe": "eager", "runner": "eager"}

DENSE = Qwen3Spec(vocab_size=61, hidden_size=33, intermediate_size=37, num_hidden_layers=2,
                  num_attention_heads=8, num_key_value_heads=2, head_dim=6,
                  max_position_embeddings=64, tie_word_embeddings=True, eos_token_id=None)
MOE = DENSE.replace(tie_word_embeddings=False, num_experts=7, num_experts_per_tok=2,
                    moe_intermediate_size=21, decoder_sparse_step=1, mlp_only_layers=(1,))


def _model(spec, world_size=1, rank=0, moe="eager"):
    selection = select_backends({**EAGER, "moe": moe}, device=torch.device("cpu"),
                                dtype=torch.float32)
    return build_random(spec, selection, dtype=torch.float32, device=torch.device("cpu"),
                        seed=3, parallel=ParallelLayout(rank, world_size))


def test_split_evenly_covers_the_dimension_in_order():
    for total in (7, 8, 61):
        for parts in (1, 2, 3, 4):
            spans = [split_evenly(total, parts, i) for i in range(parts)]
            assert spans[0].start == 0 and spans[-1].stop == total
            assert all(a.stop == b.start for a, b in itertools.pairwise(spans))
            assert max(s.size for s in spans) - min(s.size for s in spans) <= 1


def test_each_rank_reads_the_kv_heads_of_its_query_heads():
    spec = DENSE  # 8 query heads over 2 KV heads: query head h reads KV head h // 4
    at4 = [ParallelLayout(r, 4).kv_heads(spec) for r in range(4)]
    assert at4 == [Span(0, 1), Span(0, 1), Span(1, 2), Span(1, 2)]  # replicated in pairs
    at2 = [ParallelLayout(r, 2).kv_heads(spec) for r in range(2)]
    assert at2 == [Span(0, 1), Span(1, 2)]
    at8 = [ParallelLayout(r, 8).kv_heads(spec) for r in range(8)]
    assert at8 == [Span(r // 4, r // 4 + 1) for r in range(8)]


@pytest.mark.parametrize("changes, words", [
    ({"num_attention_heads": 6, "num_key_value_heads": 2}, "num_attention_heads (6)"),
    ({"num_attention_heads": 12, "num_key_value_heads": 3}, "num_key_value_heads (3)"),
    ({"num_experts": 3, "num_experts_per_tok": 1, "moe_intermediate_size": 8}, "num_experts (3)"),
])
def test_a_spec_that_does_not_split_is_refused_with_the_reason(changes, words):
    with pytest.raises(ParallelError, match=words.replace("(", r"\(").replace(")", r"\)")):
        _model(DENSE.replace(**changes), world_size=4)


@pytest.mark.parametrize("spec", [DENSE, MOE], ids=["dense-tied", "moe-untied"])
@pytest.mark.parametrize("world_size", [2, 4])
@pytest.mark.parametrize("moe", ["eager", "grouped"])
def test_every_rank_holds_exactly_its_slice_of_the_one_process_random_model(
        spec, world_size, moe):
    whole = _model(spec, moe=moe).state_dict()
    seen_experts = set()
    for rank in range(world_size):
        layout = ParallelLayout(rank, world_size)
        local = _model(spec, world_size, rank, moe=moe).state_dict()
        for key, full in whole.items():
            shard = shard_for(key, spec, layout)
            if shard == ELSEWHERE:
                assert key not in local, key
                continue
            want = full[shard.index()] if isinstance(shard, Shard) else full
            assert torch.equal(local[key], want), f"rank {rank}: {key}"
            if ".experts." in key:
                seen_experts.add(key)
    assert seen_experts == {k for k in whole if ".experts." in k}


def test_sharded_parameters_hold_about_one_nth_of_the_weights():
    spec = PRESETS["tiny"].replace(vocab_size=1000, intermediate_size=256)
    one = sum(p.numel() for p in _model(spec).parameters())
    ranks = [sum(p.numel() for p in _model(spec, 2, r).parameters()) for r in range(2)]
    norms = sum(p.numel() for n, p in _model(spec).named_parameters() if "norm" in n)
    assert all(n == (one - norms) // 2 + norms for n in ranks), (one, ranks)


def test_any_region_of_a_random_tensor_equals_that_region_of_the_whole(monkeypatch):
    monkeypatch.setattr("qwen3core.init.TILE", (3, 5))  # many tiles on a small tensor
    whole = torch.empty(10, 13)
    fill_random(whole, "model.layers.0.mlp.down_proj.weight", 7, 16)
    for index in [(slice(2, 9),), (slice(None), slice(4, 12)), (slice(0, 1), slice(12, 13))]:
        part = torch.empty_like(whole[index])
        fill_random(part, "model.layers.0.mlp.down_proj.weight", 7, 16, whole.shape, index)
        assert torch.equal(part, whole[index])
    other = torch.empty(10, 13)
    fill_random(other, "model.layers.1.mlp.down_proj.weight", 7, 16)
    assert not torch.equal(other, whole)  # each parameter draws its own values


def test_an_moe_implementation_unaware_of_experts_per_rank_is_refused():
    """One that keeps every expert would return the whole output on every rank, and the sum
    over ranks would count it twice: refused at build time instead."""
    from torch import nn

    from qwen3core import Implementation, hookimpl

    class AllExperts(nn.Module):
        def __init__(self, ctx):
            super().__init__()
            self.gate = ctx.linear(ctx.spec.hidden_size, ctx.spec.num_experts)
            self.experts = nn.ModuleList(
                ctx.mlp(ctx.spec.hidden_size, ctx.spec.moe_intermediate_size)
                for _ in range(ctx.spec.num_experts))

    class Plugin:
        @hookimpl
        def qwen3core_moe(self):
            return Implementation("moe", "all-experts", AllExperts)

    selection = select_backends({**EAGER, "moe": "all-experts"}, device=torch.device("cpu"),
                                dtype=torch.float32, plugins=[Plugin()])
    build_random(MOE, selection, dtype=torch.float32, device=torch.device("cpu"))  # one process
    with pytest.raises(ParallelError, match="'all-experts' does not keep its experts"):
        build_random(MOE, selection, dtype=torch.float32, device=torch.device("cpu"),
                     parallel=ParallelLayout(0, 2))
