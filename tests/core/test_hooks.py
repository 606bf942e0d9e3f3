"""Every hook: its eager implementation honours the documented contract, and the hook is
documented in docs/hooks.md. Adding a hook without both makes this file fail."""

import re
from pathlib import Path

import pytest
import torch

from qwen3core import PRESETS
from qwen3core.contracts import AttentionBatch, BuildContext
from qwen3core.hookspecs import HOOK_FOR_COMPONENT
from qwen3core.registry import get_registry

DOCS = Path(__file__).resolve().parents[2] / "docs" / "hooks.md"
SPEC = PRESETS["tiny-moe"]
DTYPE = torch.float64


def ctx():
    selection = get_registry().select(
        {c: ("dynamic" if c == "kv_cache" else "eager") for c in HOOK_FOR_COMPONENT},
        device="cpu", dtype=DTYPE)
    return BuildContext(SPEC, DTYPE, torch.device("cpu"), selection)


def build(component, *args):
    c = ctx()
    module = c.build(component, *args)
    if isinstance(module, torch.nn.Module):
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for p in module.parameters():
                p.copy_(torch.randn(p.shape, generator=gen, dtype=DTYPE) / p.shape[-1] ** 0.5)
    return module


def rand(*shape):
    return torch.randn(*shape, dtype=DTYPE, generator=torch.Generator().manual_seed(1))


def check_attention():
    attend = build("attention")
    q, k, v = rand(1, 4, 3, 16), rand(1, 2, 5, 16), rand(1, 2, 5, 16)
    mask = torch.ones(1, 1, 3, 5, dtype=torch.bool)
    mask[..., 4] = False  # nobody may see slot 4
    out = attend(q, k, v, AttentionBatch(torch.zeros(1, 3, dtype=torch.long), mask, 0), 0.25)
    v2 = v.clone()
    v2[:, :, 4] += 100.0
    out2 = attend(q, k, v2, AttentionBatch(torch.zeros(1, 3, dtype=torch.long), mask, 0), 0.25)
    assert out.shape == (1, 4, 3, 16) and torch.allclose(out, out2)


def check_norm():
    norm = build("norm", 16, 1e-6)
    x = rand(3, 16)
    expected = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * norm.weight
    assert torch.allclose(norm(x), expected)


def check_rope():
    rotate = build("rope")
    q, k = rand(1, 4, 3, 16), rand(1, 2, 3, 16)
    pos = torch.tensor([[0, 5, 9]])
    q2, _k2 = rotate(q, k, pos)
    assert torch.allclose(q2[:, :, 0], q[:, :, 0])  # position 0 is the identity
    assert torch.allclose(q2.norm(dim=-1), q.norm(dim=-1))  # a rotation keeps lengths
    # Relative positions: <R(a)q, R(b)k> depends only on a - b.
    def score(a, b):
        qa, _ = rotate(q, k, torch.tensor([[a] * 3]))
        _, kb = rotate(q, k, torch.tensor([[b] * 3]))
        return (qa[:, :2] * kb).sum()

    assert torch.allclose(score(7, 3), score(4, 0))
    assert not torch.allclose(score(7, 3), score(3, 0))


def check_kv_cache():
    cache = build("kv_cache", 2, 8)
    k1, v1 = rand(2, 2, 3, 16), rand(2, 2, 3, 16)
    cache.update(0, torch.tensor([0, 0]), k1, v1, 3)
    k2, v2 = rand(2, 2, 1, 16), rand(2, 2, 1, 16)
    k, _v = cache.update(0, torch.tensor([3, 3]), k2, v2, 4)
    assert torch.equal(k[:, :, :4], torch.cat([k1, k2], 2))
    cache.reorder(torch.tensor([1]))
    k, _ = cache.update(0, torch.tensor([4]), k2[1:], v2[1:], 5)
    assert k.shape[0] == 1 and torch.equal(k[:, :, :3], k1[1:])
    # Rows at different positions: a joined row writes after its own last slot.
    other = build("kv_cache", 1, 8)
    other.update(0, torch.tensor([0]), k1[:1, :, :2], v1[:1, :, :2], 2)
    cache.extend(other)
    k, _ = cache.update(0, torch.tensor([5, 2]), k2, v2, 6)
    assert k.shape[0] == 2
    assert torch.equal(k[1:, :, :3], torch.cat([k1[:1, :, :2], k2[1:]], 2))
    assert torch.equal(k[:1, :, 5], k2[:1, :, 0])


def check_linear():
    lin = build("linear", 16, 8)
    x = rand(2, 16)
    assert torch.allclose(lin(x), x @ lin.weight.T)


def check_mlp():
    mlp = build("mlp", 16, 24)
    x = rand(2, 16)
    want = mlp.down_proj(torch.nn.functional.silu(mlp.gate_proj(x)) * mlp.up_proj(x))
    assert torch.allclose(mlp(x), want)


def check_moe():
    moe = build("moe")
    keys = set(moe.state_dict())
    assert "gate.weight" in keys and "experts.7.down_proj.weight" in keys
    x = rand(1, 3, SPEC.hidden_size)
    assert moe(x).shape == x.shape


def check_runner():
    wrap = build("runner")
    step = lambda model, x: x * 2
    assert torch.equal(wrap(step, "decode")(None, torch.ones(2)), torch.full((2,), 2.0))


CONTRACT_CHECKS = {
    "qwen3core_attention": check_attention, "qwen3core_norm": check_norm,
    "qwen3core_rope": check_rope, "qwen3core_kv_cache": check_kv_cache,
    "qwen3core_linear": check_linear, "qwen3core_mlp": check_mlp, "qwen3core_moe": check_moe,
    "qwen3core_runner": check_runner,
}


@pytest.mark.parametrize("hook", sorted(HOOK_FOR_COMPONENT.values()))
def test_every_hook_has_a_contract_test(hook):
    assert hook in CONTRACT_CHECKS, f"add a contract check for {hook} to {__file__}"
    CONTRACT_CHECKS[hook]()


@pytest.mark.parametrize("hook", sorted(HOOK_FOR_COMPONENT.values()))
def test_every_hook_is_documented(hook):
    text = DOCS.read_text()
    assert re.search(rf"^## `{hook}`", text, re.MULTILINE), f"docs/hooks.md needs a '## `{hook}`' section"
