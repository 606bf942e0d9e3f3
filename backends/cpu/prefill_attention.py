"""Attention for prefill: the eager reference's expression, a block of query rows at a time.

``eager_attention`` (backends/eager/attention.py) forms every score of a layer at once:
``[B, H_q, S, T]`` in the activation dtype, then a float32 softmax and a second product. For
a prompt that is quadratic memory, and torch's own CPU kernel (SDPA) computes a different
expression (float32 scores) at 8-14 % of the bfloat16 dot-product peak of the machine it was
measured on (docs/benchmarks.md, "Prefill attention"). Here the same three steps run per row
of the batch and block of query rows, all key/value heads in one batched product (each kv
head against its group of query heads, no repeated K/V), and only over the keys the block may
see: a causal block's last allowed key bounds its product, so half of a prompt's scores are
never formed. The numbers are the eager ones: the products are oneDNN's bfloat16 GEMMs (float32
sums, rounded to the dtype as ``torch.matmul`` rounds them), and a block in which some query row
may see no key at all keeps every key, so that row gets the reference's uniform weights.
"""

from __future__ import annotations

import torch

#: Query rows per block. Small enough that a causal block skips most of the keys it may not
#: see, large enough that each product is a GEMM: one layer of the 0.6B's heads, 2 threads
#: (scripts/prefill_attention_bench.py): 512 tokens 4.67 ms at 64 and 4.58 at 128 against
#: 6.16 at 32 and 5.10 at 256; 2048 tokens 70.6 and 70.7 against 82.2 and 77.0.
QUERY_BLOCK = 64


def blocked_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor,
                      scale: float) -> torch.Tensor:
    """q [B, H_q, S, D], k and v [B, H_kv, T, D], mask [B, 1, S, T] bool -> [B, H_q, S, D]
    (laid out as [B, S, H_q, D], so the reshape before the output product is free)."""
    batch, q_heads, queries, dim = q.shape
    kv_heads, keys = k.shape[1], k.shape[2]
    groups = q_heads // kv_heads
    out = q.new_empty(batch, queries, q_heads, dim)
    lowest = torch.finfo(q.dtype).min
    compute = torch.promote_types(q.dtype, torch.float32)
    for b in range(batch):
        grouped = q[b].reshape(kv_heads, groups, queries, dim)
        for s0 in range(0, queries, QUERY_BLOCK):
            s1 = min(queries, s0 + QUERY_BLOCK)
            rows = s1 - s0
            allowed = mask[b, 0, s0:s1]  # [rows, T]
            seen = keys
            if bool(allowed.any(1).all()):  # every row sees a key: stop after the last one
                seen = int(allowed.any(0).nonzero().max()) + 1
            block = grouped[:, :, s0:s1].reshape(kv_heads, groups * rows, dim)
            scores = torch.matmul(block, k[b, :, :seen].transpose(-1, -2)) * scale
            scores = scores.view(kv_heads, groups, rows, seen).masked_fill(
                ~allowed[:, :seen], lowest)
            weights = torch.softmax(scores, dim=-1, dtype=compute).to(q.dtype)
            attended = torch.matmul(weights.view(kv_heads, groups * rows, seen), v[b, :, :seen])
            out[b, s0:s1] = attended.view(q_heads, rows, dim).transpose(0, 1)
    return out.transpose(1, 2)
