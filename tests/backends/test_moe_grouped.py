"""The grouped MoE block: checkpoint keys, shared stacked weights, equality with eager, and no
host synchronisation (it compiles as one graph)."""

from __future__ import annotations

import io

import pytest
import torch
from qwen3core_backends.moe_grouped.grouped_linear import grouped_linear

from qwen3core import PRESETS
from qwen3core.build import build_random, build_skeleton, select_backends
from qwen3core.testing.models import reference_names

CPU = torch.device("cpu")
SPEC = PRESETS["tiny-moe"].replace(num_experts=6, num_experts_per_tok=3, hidden_size=40,
                                   moe_intermediate_size=24)


def _models(dtype, spec=SPEC):
    eager = build_random(spec, select_backends(reference_names(), device=CPU, dtype=dtype),
                         dtype=dtype, device=CPU, seed=3)
    grouped = build_random(
        spec, select_backends({**reference_names(), "moe": "grouped"}, device=CPU, dtype=dtype),
        dtype=dtype, device=CPU, seed=3)
    return eager, grouped


def _close(got, want):
    """Equal up to rounding: the stacked gate/up matmul may round differently from two."""
    tolerance = {torch.float64: 1e-12, torch.float32: 1e-5, torch.bfloat16: 2e-2}[want.dtype]
    scale = float(want.abs().max())
    return torch.allclose(got.double(), want.double(), atol=tolerance * scale, rtol=0)


def _x(n_tokens, dtype, spec=SPEC):
    return torch.randn(1, n_tokens, spec.hidden_size, generator=torch.Generator().manual_seed(n_tokens)
                       ).to(dtype)


def test_state_dict_keys_are_the_checkpoint_keys_and_weights_are_held_once():
    eager, grouped = _models(torch.float32)
    assert list(grouped.state_dict()) == list(eager.state_dict())
    assert "model.layers.0.mlp.experts.5.down_proj.weight" in grouped.state_dict()
    moe = grouped.model.layers[0].mlp
    # Same random draws as eager (same names, same order), so same weights.
    assert torch.equal(moe.experts[2].up_proj.weight, eager.model.layers[0].mlp.experts[2]
                       .up_proj.weight)
    # Each expert's parameters are views into the stacks: no second copy of the experts.
    stack = moe.gate_up.untyped_storage().data_ptr()
    assert moe.experts[4].up_proj.weight.untyped_storage().data_ptr() == stack
    assert moe.experts[4].down_proj.weight.untyped_storage().data_ptr() == \
        moe.down.untyped_storage().data_ptr()
    assert torch.equal(moe.gate_up[4, SPEC.moe_intermediate_size:], moe.experts[4].up_proj.weight)


def test_saving_and_loading_the_state_dict_round_trips():
    eager, grouped = _models(torch.float32)
    buffer = io.BytesIO()
    torch.save(grouped.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer)
    # Into a fresh grouped model: loading writes through the views into the stacks.
    _, other = _models(torch.float32, SPEC)
    with torch.no_grad():
        for p in other.parameters():
            p.zero_()
    other.load_state_dict(state)
    x = _x(5, torch.float32)
    with torch.no_grad():
        assert torch.equal(other.model.layers[0].mlp(x), grouped.model.layers[0].mlp(x))
    # Into the eager model: the keys are the checkpoint's.
    eager.load_state_dict(state)


def test_the_checkpoint_loaders_path_assign_onto_meta_then_prepare():
    eager, _ = _models(torch.float32)
    selection = select_backends({**reference_names(), "moe": "grouped"}, device=CPU,
                                dtype=torch.float32)
    skeleton = build_skeleton(SPEC, selection, torch.float32)
    result = skeleton.load_state_dict(eager.state_dict(), strict=False, assign=True)
    assert not result.missing_keys and not result.unexpected_keys
    skeleton.tie_weights()
    skeleton.prepare_weights()
    x = _x(7, torch.float32)
    with torch.no_grad():
        assert _close(skeleton.model.layers[0].mlp(x), eager.model.layers[0].mlp(x))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
@pytest.mark.parametrize("n_tokens", [1, 2, 9])  # fewer rows than experts, and more
def test_matches_the_eager_block(dtype, n_tokens):
    eager, grouped = _models(dtype)
    x = _x(n_tokens, dtype)
    with torch.no_grad():
        want = eager.model.layers[0].mlp(x)
        got = grouped.model.layers[0].mlp(x)
    assert _close(got, want)


@pytest.mark.parametrize("rows", [3, 11])  # gathered-matrix path, and per-expert slices
def test_fallback_paths_equal_per_expert_linear(rows):
    gen = torch.Generator().manual_seed(rows)
    weight = torch.randn(4, 5, 6, generator=gen, dtype=torch.float64)
    experts = torch.sort(torch.randint(0, 4, (rows,), generator=gen)).values
    x = torch.randn(rows, 6, generator=gen, dtype=torch.float64)
    ends = torch.searchsorted(experts, torch.arange(4), right=True)
    got = grouped_linear(x, weight, experts, ends, use_grouped_mm=False)
    want = torch.stack([weight[e] @ x[i] for i, e in enumerate(experts.tolist())])
    assert torch.allclose(got, want, atol=1e-12, rtol=0)


def test_deterministic_across_runs():
    _, grouped = _models(torch.float32)
    x = _x(16, torch.float32)
    with torch.no_grad():
        first = grouped.model.layers[0].mlp(x)
        assert all(torch.equal(first, grouped.model.layers[0].mlp(x)) for _ in range(3))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32, torch.float64])
def test_compiles_as_one_graph_without_host_synchronisation(dtype):
    # fullgraph=True fails on any graph break: a .item(), .tolist() or nonzero would be one.
    # bfloat16 takes the grouped_mm path; float32 and float64 (grouped_mm under compile takes
    # only bfloat16) the gathered-matrix path for a decode-sized batch.
    torch._dynamo.reset()
    eager, grouped = _models(dtype)
    moe = grouped.model.layers[0].mlp
    compiled = torch.compile(moe, fullgraph=True, backend="aot_eager")
    x = _x(2, dtype)
    with torch.no_grad():
        assert _close(compiled(x), eager.model.layers[0].mlp(x))
