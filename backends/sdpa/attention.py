"""Attention on ``torch.nn.functional.scaled_dot_product_attention``."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from qwen3core.contracts import AttentionBatch


def repeat_kv(x: torch.Tensor, groups: int) -> torch.Tensor:
    """[B, H_kv, T, D] -> [B, H_kv * groups, T, D]; only for torch without ``enable_gqa``."""
    b, h_kv, t, d = x.shape
    return x[:, :, None].expand(b, h_kv, groups, t, d).reshape(b, h_kv * groups, t, d)


def make_sdpa_attention(native_gqa: bool):
    """The attention function; ``native_gqa`` lets the kernel read each kv head for its whole
    query group (``enable_gqa``, torch >= 2.5) instead of materialising repeated K/V."""

    def sdpa_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                       batch: AttentionBatch, scale: float) -> torch.Tensor:
        groups = q.shape[1] // k.shape[1]
        s, t = q.shape[2], k.shape[2]
        # The built-in causal path aligns the diagonal top-left, which is right only when the
        # queries are all the keys (a first prefill); one unpadded query sees every key.
        if batch.plain_causal and s == t:
            mask, causal = None, True
        elif batch.plain_causal and s == 1:
            mask, causal = None, False
        else:
            mask, causal = batch.mask, False  # [B, 1, S, T] bool, broadcast over heads
        extra = {}
        if groups > 1:
            if native_gqa:
                extra["enable_gqa"] = True
            else:
                k, v = repeat_kv(k, groups), repeat_kv(v, groups)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal,
                                              scale=scale, **extra)  # [B, H_q, S, D]

    return sdpa_attention
