"""Grouped-query attention written out step by step: the reference every backend must match."""

import torch

from qwen3core.contracts import AttentionBatch


def repeat_kv(x: torch.Tensor, groups: int) -> torch.Tensor:
    """[B, H_kv, T, D] -> [B, H_kv * groups, T, D], each kv head repeated for its query group."""
    if groups == 1:
        return x
    b, h_kv, t, d = x.shape
    return x[:, :, None].expand(b, h_kv, groups, t, d).reshape(b, h_kv * groups, t, d)


def eager_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, batch: AttentionBatch,
                    scale: float) -> torch.Tensor:
    groups = q.shape[1] // k.shape[1]
    k, v = repeat_kv(k, groups), repeat_kv(v, groups)
    scores = torch.matmul(q, k.transpose(-1, -2)) * scale  # [B, H_q, S, T]
    # A large negative number rather than -inf: a query row with nothing to attend to (a pad
    # position) then gets uniform weights instead of NaNs that would poison later layers.
    scores = scores.masked_fill(~batch.mask, torch.finfo(scores.dtype).min)
    # float32 softmax (float64 stays float64, so float64 runs are exact references).
    compute = torch.promote_types(q.dtype, torch.float32)
    weights = torch.softmax(scores, dim=-1, dtype=compute).to(q.dtype)
    return torch.matmul(weights, v)  # [B, H_q, S, D]
