"""Autograd (issue 18 item 8): every implementation that declares ``supports_autograd`` gives
the eager reference's gradients (a property over inputs, like the forward one); every other one
refuses a forward pass that needs gradients; ``load(..., training=True)`` selects only the
former."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import qwen3core
from qwen3core.autograd import FORWARD_COMPONENTS, AutogradUnsupportedError
from qwen3core.contracts import COMPONENTS
from qwen3core.errors import BackendSelectionError
from qwen3core.registry import get_registry
from qwen3core.spec import PRESETS
from qwen3core.testing.gradients import gradient_mismatches
from qwen3core.testing.models import candidate_model, reference_model, reference_names
from qwen3core.testing.suite import scaled_examples

CPU = torch.device("cpu")


def _implementations(supporting: bool):
    registry = get_registry()
    out = []
    # A declared-supporting kv_cache or runner is held to the property too: a training forward
    # pass (no cache) must not depend on them.
    for component in (COMPONENTS if supporting else FORWARD_COMPONENTS):
        for impl in registry.implementations(component):
            if impl.supports_autograd != supporting or impl.plugin == "eager":
                continue
            for dtype in (torch.float64, torch.float32):
                if impl.unavailable_reason(CPU, dtype) is None:
                    out.append(pytest.param(component, impl.name, dtype,
                                            id=f"{component}={impl.name}-{str(dtype)[6:]}"))
                    break
    return out


@pytest.mark.parametrize("component, name, dtype", _implementations(supporting=True))
def test_gradients_agree_with_the_eager_reference(component, name, dtype):
    spec = PRESETS["tiny-moe" if component == "moe" else "tiny"]

    @settings(max_examples=scaled_examples(4), deadline=None, database=None)
    @given(batch=st.integers(1, 2), length=st.integers(1, 9), seed=st.integers(0, 2**16))
    def check(batch, length, seed):
        ids = torch.randint(0, spec.vocab_size, (batch, length),
                            generator=torch.Generator().manual_seed(seed))
        mismatches = gradient_mismatches(spec, dtype, {component: name}, ids, seed=seed)
        assert not mismatches, "; ".join(map(str, mismatches[:5]))

    check()


def test_the_eager_reference_gives_every_gradient():
    spec = PRESETS["tiny-moe"]
    ids = torch.randint(0, spec.vocab_size, (2, 9), generator=torch.Generator().manual_seed(0))
    assert gradient_mismatches(spec, torch.float64, {}, ids) == []


def test_a_wrong_gradient_is_caught(monkeypatch):
    """The property fails for an implementation whose backward is wrong (a detached norm)."""
    from qwen3core_backends.eager.norm import RMSNorm

    real_forward = RMSNorm.forward

    def detached(self, x, residual=None):  # forward equal, no gradient through the norm
        if residual is None:
            return real_forward(self, x).detach()
        normed, total = real_forward(self, x, residual)
        return normed.detach(), total

    spec = PRESETS["tiny"]
    ids = torch.randint(0, spec.vocab_size, (1, 5), generator=torch.Generator().manual_seed(0))
    reference_model.cache_clear()
    try:
        reference = reference_model(spec, torch.float64)
        candidate = candidate_model(reference, reference_names())
        monkeypatch.setattr(RMSNorm, "forward", detached)
        from qwen3core.testing.gradients import compare_gradients, gradients

        weights = torch.randn(1, 5, spec.vocab_size, dtype=torch.float64)
        shapes = {n: p.shape for n, p in reference.named_parameters()}
        monkeypatch.setattr(RMSNorm, "forward", real_forward)
        want = gradients(reference, ids, weights)
        monkeypatch.setattr(RMSNorm, "forward", detached)
        got = gradients(candidate, ids, weights)
        assert compare_gradients(want, got, shapes, 1e-9)
    finally:
        reference_model.cache_clear()


@pytest.mark.parametrize("component, name, dtype", _implementations(supporting=False))
def test_an_implementation_without_autograd_refuses_gradients(component, name, dtype):
    spec = PRESETS["tiny-moe" if component == "moe" else "tiny"]
    reference = reference_model(spec, dtype)
    model = candidate_model(reference, {**reference_names(), component: name})
    ids = torch.tensor([[1, 2, 3]])
    with torch.no_grad():
        model(ids)  # inference is untouched
    model.requires_grad_(True)
    with pytest.raises(AutogradUnsupportedError, match=rf"{component}='{name}'.*training=True"):
        model(ids)
    model.requires_grad_(False)
    model(ids)  # no parameter needs a gradient: nothing to refuse


def test_training_load_selects_only_autograd_implementations_and_trains():
    loaded = qwen3core.load("random:tiny-moe", dtype="float32", training=True)
    selection = loaded.selection
    assert all(selection[c].supports_autograd for c in FORWARD_COMPONENTS)
    ids = torch.randint(0, 512, (2, 8), generator=torch.Generator().manual_seed(0))
    loss = torch.nn.functional.cross_entropy(loaded.model(ids[:, :-1]).reshape(-1, 512),
                                             ids[:, 1:].reshape(-1))
    loss.backward()
    missing = [n for n, p in loaded.model.named_parameters()
               if p.grad is None and ".experts." not in n]
    assert missing == []


def test_training_with_an_explicit_implementation_without_autograd_is_refused():
    registry = get_registry()
    lacking = [(c, i.name) for c in FORWARD_COMPONENTS for i in registry.implementations(c)
               if not i.supports_autograd and i.unavailable_reason(CPU, torch.float32) is None]
    if not lacking:
        pytest.skip("every implementation available here supports autograd")
    component, name = lacking[0]
    with pytest.raises(BackendSelectionError, match="does not support autograd"):
        qwen3core.load("random:tiny-moe", backends={component: name}, training=True)


def test_an_inference_load_needs_no_gradients_and_builds_no_graph():
    loaded = qwen3core.load("random:tiny")
    assert not any(p.requires_grad for p in loaded.model.parameters())
    logits = loaded.model(torch.tensor([[1, 2, 3]]))  # no torch.no_grad() needed
    assert logits.grad_fn is None
