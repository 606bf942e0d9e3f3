"""Attention over keys in chunks with a running maximum and sum ("online softmax").

Scores exist for one chunk of keys at a time, [B, H_kv, G, S, C] instead of [B, H_q, S, T],
so a long prompt's attention needs memory linear in its length rather than quadratic. Each
query head group reads its kv head directly (no repeated K/V). Accumulation is in float32
(float64 for float64 inputs), as the attention contract asks.
"""

from __future__ import annotations

import torch

from qwen3core import AttentionBatch


def chunked_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                      batch: AttentionBatch, scale: float, chunk: int) -> torch.Tensor:
    """q [B, H_q, S, D], k/v [B, H_kv, T, D] -> [B, H_q, S, D] in q's dtype."""
    b, h_q, s, d = q.shape
    h_kv, t = k.shape[1], k.shape[2]
    compute = torch.promote_types(q.dtype, torch.float32)
    queries = q.reshape(b, h_kv, h_q // h_kv, s, d).to(compute)  # [B, H_kv, G, S, D]
    running_max = torch.full((b, h_kv, h_q // h_kv, s, 1), float("-inf"), dtype=compute,
                             device=q.device)
    running_sum = torch.zeros_like(running_max)
    out = torch.zeros(b, h_kv, h_q // h_kv, s, d, dtype=compute, device=q.device)
    for lo in range(0, t, chunk):
        keys = k[:, :, None, lo:lo + chunk].to(compute)  # [B, H_kv, 1, C, D]
        values = v[:, :, None, lo:lo + chunk].to(compute)
        allowed = batch.mask[:, :, None, :, lo:lo + chunk]  # [B, 1, 1, S, C]
        scores = torch.matmul(queries, keys.transpose(-1, -2)) * scale  # [B, H_kv, G, S, C]
        scores = scores.masked_fill(~allowed, float("-inf"))
        new_max = torch.maximum(running_max, scores.amax(dim=-1, keepdim=True))
        # A row that has seen no allowed key yet keeps max -inf; shift by 0 there so that
        # exp(-inf - -inf) never makes a NaN (its weights are all exp(-inf) = 0 anyway).
        shift = torch.where(torch.isinf(new_max), torch.zeros_like(new_max), new_max)
        rescale = torch.exp(running_max - shift)  # how much the earlier chunks shrink
        weights = torch.exp(scores - shift)
        running_sum = running_sum * rescale + weights.sum(dim=-1, keepdim=True)
        out = out * rescale + torch.matmul(weights, values)
        running_max = new_max
    # Every query row allows at least one key (the AttentionBatch contract), so sum > 0.
    return (out / running_sum).reshape(b, h_q, s, d).to(q.dtype)


def make_chunked_attention(chunk: int):
    if chunk < 1:
        raise ValueError(f"chunk must be a positive number of keys, got {chunk}")

    def attend(q, k, v, batch, scale):
        return chunked_attention(q, k, v, batch, scale, chunk)

    return attend
