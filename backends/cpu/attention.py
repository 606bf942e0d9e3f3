"""Attention on the CPU: the few query rows of a decode step in one operator call, a prompt's
rows in blocks of the eager expression (prefill_attention.py)."""

from __future__ import annotations

import torch
from qwen3core_backends.sdpa import _torch_version
from qwen3core_backends.sdpa.attention import make_sdpa_attention

from qwen3core.contracts import AttentionBatch

from .linear import KERNEL_DTYPES
from .prefill_attention import blocked_attention

#: Query rows per call (batch x heads x new tokens) up to which the loop is used. It does
#: O(rows x keys x D) scalar-ish work with no blocking, which suits decode (one new token per
#: row) and short continuations; longer ones go to the blocked products or to SDPA.
MAX_QUERY_TOKENS = 8
#: New tokens from which a prompt's attention runs in blocks of GEMMs (blocked_attention):
#: faster than SDPA from here on (0.6B heads, causal, scripts/prefill_attention_bench.py:
#: 64 tokens 0.17 against 0.25 ms a layer, 512 tokens 4.67 against 11.95, 2048 tokens 70.6
#: against 109.2), slower below (16 tokens 0.08 against 0.04, 32 tokens 0.10 against 0.08),
#: where the per-block operator calls dominate.
MIN_BLOCKED_QUERY_TOKENS = 64

_sdpa = make_sdpa_attention(native_gqa=_torch_version() >= (2, 5))


def cpu_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, batch: AttentionBatch,
                  scale: float) -> torch.Tensor:
    if (q.is_cpu and q.dtype in KERNEL_DTYPES and q.shape[2] <= MAX_QUERY_TOKENS
            and q.stride(-1) == 1 and k.stride(-1) == 1 and v.stride(-1) == 1):
        return torch.ops.qwen3core_cpu.attention(q, k, v, batch.mask, scale)
    # Not under torch.compile: the blocks' key ranges are data-dependent Python ints.
    if (q.is_cpu and q.dtype in KERNEL_DTYPES and q.shape[2] >= MIN_BLOCKED_QUERY_TOKENS
            and not torch.compiler.is_compiling()):
        return blocked_attention(q, k, v, batch.mask, scale)
    return _sdpa(q, k, v, batch, scale)  # [B, H_q, S, D]
