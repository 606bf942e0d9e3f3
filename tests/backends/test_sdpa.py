"""The sdpa attention against the eager reference, path by path (mask, causal, one query)."""

from __future__ import annotations

import pytest
import torch
from qwen3core_backends.eager.attention import eager_attention
from qwen3core_backends.sdpa.attention import make_sdpa_attention
from torch.nn import functional as F

from qwen3core.contracts import AttentionBatch
from qwen3core.registry import get_registry

GEN = torch.Generator().manual_seed(0)


def _qkv(b, h_q, h_kv, s, t, d=8, dtype=torch.float64):
    q = torch.randn(b, h_q, s, d, generator=GEN, dtype=dtype)
    k = torch.randn(b, h_kv, t, d, generator=GEN, dtype=dtype)
    v = torch.randn(b, h_kv, t, d, generator=GEN, dtype=dtype)
    return q, k, v


def _causal(b, s, t):
    start = t - s
    mask = torch.arange(t)[None, :] <= torch.arange(start, t)[:, None]  # [S, T]
    return mask.expand(b, 1, s, t)


@pytest.mark.parametrize("native_gqa", [True, False])
@pytest.mark.parametrize("groups", [1, 2, 4])
@pytest.mark.parametrize("s, t, plain", [(5, 5, True), (1, 7, True), (3, 9, True), (5, 5, False),
                                         (1, 7, False), (3, 9, False)])
def test_matches_eager_on_every_path(native_gqa, groups, s, t, plain):
    q, k, v = _qkv(2, 2 * groups, 2, s, t)
    mask = _causal(2, s, t).clone()
    if not plain:  # left padding in row 0: its first two key slots are not real ...
        mask[0, :, :, :2] = False
        for query in range(s):  # ... and a padding query sees only its own slot (contract)
            if t - s + query < 2:
                mask[0, :, query, t - s + query] = True
    batch = AttentionBatch(positions=torch.zeros(2, s, dtype=torch.long), mask=mask, start=t - s,
                           plain_causal=plain)
    got = make_sdpa_attention(native_gqa)(q, k, v, batch, 0.3)
    want = eager_attention(q, k, v, batch, 0.3)
    assert got.shape == want.shape == (2, 2 * groups, s, 8)
    assert torch.allclose(got, want, atol=1e-12, rtol=0)


def test_a_chunk_after_cached_tokens_does_not_use_the_top_left_causal_path():
    # plain_causal with fewer queries than keys: is_causal would align the diagonal top-left
    # and hide keys the queries must see; the result must still equal the eager reference.
    q, k, v = _qkv(1, 2, 2, 3, 8)
    batch = AttentionBatch(torch.zeros(1, 3, dtype=torch.long), _causal(1, 3, 8), 5, True)
    top_left = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=0.5)
    got = make_sdpa_attention(True)(q, k, v, batch, 0.5)
    assert torch.allclose(got, eager_attention(q, k, v, batch, 0.5), atol=1e-12, rtol=0)
    assert not torch.allclose(got, top_left, atol=1e-3)


def test_the_mask_is_honoured_not_just_causality():
    q, k, v = _qkv(1, 2, 2, 4, 4)
    mask = _causal(1, 4, 4).clone()
    mask[..., 1] = False  # a padding slot in the middle
    mask[..., 1, 1] = True  # which sees only itself (the cache's rule for padding queries)
    batch = AttentionBatch(torch.zeros(1, 4, dtype=torch.long), mask, 0, False)
    got = make_sdpa_attention(True)(q, k, v, batch, 0.3)
    unmasked = make_sdpa_attention(True)(q, k, v, AttentionBatch(batch.positions, _causal(1, 4, 4),
                                                                 0, True), 0.3)
    assert torch.allclose(got, eager_attention(q, k, v, batch, 0.3), atol=1e-12, rtol=0)
    assert not torch.allclose(got[..., 2:, :], unmasked[..., 2:, :], atol=1e-3)


def test_grouped_query_attention_does_not_repeat_keys_and_values(monkeypatch):
    seen = []
    real = F.scaled_dot_product_attention

    def spy(q, k, v, **kwargs):
        seen.append((k.shape[1], kwargs.get("enable_gqa", False)))
        return real(q, k, v, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    q, k, v = _qkv(1, 8, 2, 3, 3)
    batch = AttentionBatch(torch.zeros(1, 3, dtype=torch.long), _causal(1, 3, 3), 0, False)
    make_sdpa_attention(True)(q, k, v, batch, 0.3)
    assert seen == [(2, True)]  # the kernel got the 2 kv heads, not 8 repeated ones


def test_registered_above_eager_and_available_on_cpu():
    registry = get_registry()
    names = [i.name for i in registry.implementations("attention")]
    assert names.index("sdpa") < names.index("eager")
    for dtype in (torch.float64, torch.float32, torch.bfloat16):
        assert registry.get("attention", "sdpa").unavailable_reason(torch.device("cpu"),
                                                                    dtype) is None
