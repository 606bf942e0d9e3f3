"""Attention for decode: the few query rows of a step in one operator call."""

from __future__ import annotations

import torch
from qwen3core_backends.sdpa import _torch_version
from qwen3core_backends.sdpa.attention import make_sdpa_attention

from qwen3core.contracts import AttentionBatch

from .linear import KERNEL_DTYPES

#: Query rows per call (batch x heads x new tokens) up to which the loop is used. It does
#: O(rows x keys x D) scalar-ish work with no blocking, which suits decode (one new token per
#: row) and short continuations; prefill goes to SDPA, whose kernels block for long sequences.
MAX_QUERY_TOKENS = 8

_sdpa = make_sdpa_attention(native_gqa=_torch_version() >= (2, 5))


def cpu_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, batch: AttentionBatch,
                  scale: float) -> torch.Tensor:
    if (q.is_cpu and q.dtype in KERNEL_DTYPES and q.shape[2] <= MAX_QUERY_TOKENS
            and q.stride(-1) == 1 and k.stride(-1) == 1 and v.stride(-1) == 1):
        return torch.ops.qwen3core_cpu.attention(q, k, v, batch.mask, scale)
    return _sdpa(q, k, v, batch, scale)  # [B, H_q, S, D]
