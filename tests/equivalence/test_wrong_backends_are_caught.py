"""The suite must fail deliberately wrong backends, registered the way a plugin would be.

Each one is subtly wrong in a way real backends have been (README "known failure modes"):
attention without the causal mask, attention that keeps causality but ignores padding, and a
KV cache that loses a position.
"""

from __future__ import annotations

import pytest
import torch
from qwen3core_backends.eager.kv_cache import DynamicKVCache
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


class WrongBackends:
    @hookimpl
    def qwen3core_attention(self):
        return [Implementation("attention", "no-mask", lambda ctx: attention_without_mask),
                Implementation("attention", "causal-only", lambda ctx: attention_causal_only)]

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


def test_the_combination_sweep_catches_a_wrong_backend():
    with pytest.raises(AssertionError, match="no-mask|causal-only|forgets-first-slot"):
        check_all_combinations(plugins=[WrongBackends()], dtypes=(torch.float64,))
