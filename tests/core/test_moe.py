"""The eager MoE block equals a dense reference that runs every expert and mixes the top-k."""

import pytest
import torch
from torch.nn import functional as F

from qwen3core import PRESETS
from qwen3core.build import build_random, select_backends


def dense_reference(moe, x, top_k, normalise):
    tokens = x.reshape(-1, x.shape[-1])
    probs = torch.softmax(F.linear(tokens, moe.gate.weight).double(), -1)
    outs = torch.stack([
        F.linear(F.silu(F.linear(tokens, e.gate_proj.weight)) * F.linear(tokens, e.up_proj.weight),
                 e.down_proj.weight)
        for e in moe.experts], 1)  # [N, n_experts, E]: every expert on every token
    top = probs.topk(top_k, -1)
    mix = torch.zeros_like(probs).scatter(-1, top.indices, top.values)
    if normalise:
        mix = mix / mix.sum(-1, keepdim=True)
    return torch.einsum("ne,neh->nh", mix.to(outs.dtype), outs).reshape(x.shape)


@pytest.mark.parametrize("normalise", [True, False])
def test_moe_equals_dense_mixture(normalise):
    spec = PRESETS["tiny-moe"].replace(norm_topk_prob=normalise, num_experts_per_tok=3)
    sel = select_backends({"moe": "eager", "mlp": "eager", "linear": "eager"},
                          device=torch.device("cpu"), dtype=torch.float64)
    model = build_random(spec, sel, dtype=torch.float64, device=torch.device("cpu"), seed=7)
    moe = model.model.layers[0].mlp
    x = torch.randn(2, 5, spec.hidden_size, dtype=torch.float64,
                    generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        got = moe(x)
        want = dense_reference(moe, x, 3, normalise)
    assert torch.allclose(got, want, atol=1e-10, rtol=0)
    # The two settings must actually differ, or the test would not see the flag.
    with torch.no_grad():
        other = dense_reference(moe, x, 3, not normalise)
    assert not torch.allclose(got, other, atol=1e-6)
