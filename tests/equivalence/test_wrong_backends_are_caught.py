"""The suite must fail deliberately wrong backends, registered the way a plugin would be.

Each one is subtly wrong in a way real backends have been (README "known failure modes"):
attention without the causal mask, attention that keeps causality but ignores padding, a KV
cache that loses a position; and two that are right on every short prompt and wrong only at
length: attention that drops every key past slot 64, and a rotary embedding that is wrong past
position 100 (the suite's long examples must catch them, in the default profile).
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from qwen3core_backends.eager.attention import eager_attention
from qwen3core_backends.eager.kv_cache import DynamicKVCache
from qwen3core_backends.eager.rope import EagerRotary
from torch.nn import functional as F

from qwen3core import Implementation, hookimpl
from qwen3core.testing import check_all_combinations, check_backend


def attention_without_mask(q, k, v, batch, scale):
    """Ignores the mask entirely: no causality, no padding."""
    return F.scaled_dot_product_attention(q, k, v, scale=scale, enable_gqa=True)


def attention_causal_only(q, k, v, batch, scale):
    """Causal (bottom-right aligned) but blind to left padding."""
    s, t = q.shape[2], k.shape[2]
    causal = torch.ones(s, t, dtype=torch.bool, device=q.device).tril(t - s)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=causal, scale=scale,
                                          enable_gqa=True)


class ForgetsFirstSlot(DynamicKVCache):
    """Stores everything but hands attention zeros for slot 0 (a lost position)."""

    def update(self, layer_idx, start, k, v, length):
        k, v = super().update(layer_idx, start, k, v, length)
        keep = torch.ones_like(k[:1, :1, :, :1])
        keep[:, :, 0] = 0
        return k * keep, v * keep


def attention_dropping_keys_past_64(q, k, v, batch, scale):
    """Attends to key slots 0..63 only (as a kernel with a fixed 64-key tile might)."""
    dropped = batch.mask.clone()
    dropped[..., 64:] = False
    # A query left with no key keeps its own (a NaN would be caught for another reason).
    mask = torch.where(dropped.any(dim=-1, keepdim=True), dropped, batch.mask)
    return eager_attention(q, k, v, dataclasses.replace(batch, mask=mask), scale)


class RotaryWrongPast100(EagerRotary):
    """Right up to position 100; past it, every token is rotated as if it were at 100 (as a
    precomputed table of 101 rows, clamped, would do)."""

    def __call__(self, q, k, positions):
        return super().__call__(q, k, positions.clamp(max=100))


class WrongBackends:
    @hookimpl
    def qwen3core_attention(self):
        return [Implementation("attention", "no-mask", lambda ctx: attention_without_mask),
                Implementation("attention", "causal-only", lambda ctx: attention_causal_only),
                Implementation("attention", "drops-keys-past-64",
                               lambda ctx: attention_dropping_keys_past_64)]

    @hookimpl
    def qwen3core_rope(self):
        return Implementation("rope", "wrong-past-100", lambda ctx: RotaryWrongPast100(
            ctx.spec.head_dim, ctx.spec.rope_theta, ctx.spec.rope_scaling))

    @hookimpl
    def qwen3core_kv_cache(self):
        return Implementation(
            "kv_cache", "forgets-first-slot",
            lambda ctx, b, capacity: ForgetsFirstSlot(ctx.spec.num_hidden_layers, capacity))


@pytest.mark.parametrize("component, name", [("attention", "no-mask"),
                                             ("attention", "causal-only"),
                                             ("kv_cache", "forgets-first-slot")])
def test_the_property_catches_a_wrong_backend(component, name):
    with pytest.raises(AssertionError, match="differ from the reference|!= reference"):
        check_backend(component, name, plugins=[WrongBackends()], max_examples=30,
                      shrink=False)


@pytest.mark.parametrize("component, name", [("attention", "drops-keys-past-64"),
                                             ("rope", "wrong-past-100")])
def test_the_default_profile_catches_a_backend_wrong_only_at_length(component, name):
    """Right on every short example: only the long examples can catch these. Shrinking is on
    (as by default) so that the message shows what a user would see: short, and blaming."""
    with pytest.raises(AssertionError, match="differ from the reference|!= reference") as info:
        check_backend(component, name, plugins=[WrongBackends()], others="reference")
    message = str(info.value)
    assert message.startswith(f"{component}={name} diverges from the eager reference: ")
    assert "position" in message and "decode" in message or "prefill" in message
    assert len(message) < 1000  # no tensor or prompt dumps


def test_a_backend_wrong_only_at_length_passes_the_short_examples():
    """The premise of the test above: the short examples alone cannot catch them."""
    for component, name in [("attention", "drops-keys-past-64"), ("rope", "wrong-past-100")]:
        assert check_backend(component, name, plugins=[WrongBackends()], long_examples=0,
                             others="reference", max_examples=10) == 10


def test_the_combination_sweep_catches_a_wrong_backend():
    with pytest.raises(AssertionError, match="no-mask|causal-only|forgets-first-slot"):
        check_all_combinations(plugins=[WrongBackends()], dtypes=(torch.float64,))
