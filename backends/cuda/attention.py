"""Attention through flash kernels, with the mask always honoured.

Which kernel runs depends on what the :class:`~qwen3core.contracts.AttentionBatch` promises:

* ``plain_causal`` and S == T (a prompt from slot 0): the flash kernel's own causal path.
* ``plain_causal`` and S == 1 (a decode step): every cached slot is visible, so flash runs
  without any mask.
* anything else (left padding, a static cache's unwritten slots, a chunk continuing a cache):
  the mask goes to the memory-efficient or cuDNN kernel as an additive bias (the math kernel
  only for a head_dim those cannot take, which no Qwen3 checkpoint has). torch's causal
  flag means the *top-left* aligned triangle, which is wrong whenever S < T, so it is used only
  for S == T.

Masked-out slots get a large negative *finite* bias, half the dtype's most negative value so
that adding a score to it cannot overflow to -inf even in float16: a query row with nothing to
attend to (a pad position, if a caller produces one) then yields finite values instead of NaNs
that would spread through later layers. Padding outputs are never read.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from qwen3core.contracts import AttentionBatch

_FLASH = [SDPBackend.FLASH_ATTENTION]
_MASKED = [SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION]
# The masked kernels need head_dim % 8 == 0 in 16-bit types (every Qwen3 checkpoint has 128);
# only other head sizes, such as the equivalence suite's tiny specs, may fall to the math kernel.
_FUSED_HEAD_DIM_MULTIPLE = 8


def flash_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, batch: AttentionBatch,
                    scale: float) -> torch.Tensor:
    """q [B, H_q, S, D], k/v [B, H_kv, T, D] -> [B, H_q, S, D] with torch's flash kernels."""
    s, t = q.shape[2], k.shape[2]
    if batch.plain_causal and (s == t or s == 1):
        with sdpa_kernel(_FLASH):
            return F.scaled_dot_product_attention(q, k, v, is_causal=s == t and s > 1,
                                                  scale=scale, enable_gqa=True)
    return masked_attention(q, k, v, batch.mask, scale)


def make_flash_attn_package_attention():
    """The same contract through the ``flash_attn`` package, whose causal mask is aligned
    bottom-right (query ``s`` sees keys up to ``T - S + s``), so it serves every plain causal
    call, chunks continuing a cache included."""
    from flash_attn import flash_attn_func

    def flash_attn_package_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                                     batch: AttentionBatch, scale: float) -> torch.Tensor:
        if batch.plain_causal:
            # flash_attn takes [B, S, H, D]; GQA is native (H_q a multiple of H_kv).
            out = flash_attn_func(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                  softmax_scale=scale, causal=True)
            return out.transpose(1, 2)  # [B, H_q, S, D]
        return masked_attention(q, k, v, batch.mask, scale)

    return flash_attn_package_attention


def masked_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor,
                     scale: float) -> torch.Tensor:
    """Attention under an explicit boolean mask [B, 1, S, T] (True: may attend).

    The memory-efficient kernel has no grouped-query mode, so each kv head's query group is
    folded into the sequence axis instead of repeating k and v: q [B, H_kv, G*S, D] with the
    mask tiled G times along S. Query head h = kv*G + g lands on row g*S + s of kv head kv.
    """
    b, h_q, s, d = q.shape
    h_kv = k.shape[1]
    groups = h_q // h_kv
    folded = q.reshape(b, h_kv, groups * s, d)  # [B, H_kv, G*S, D]
    bias = torch.zeros(mask.shape, dtype=q.dtype, device=q.device)
    bias.masked_fill_(~mask, torch.finfo(q.dtype).min / 2)  # [B, 1, S, T]
    if groups > 1:
        bias = bias.repeat(1, 1, groups, 1)  # [B, 1, G*S, T]
    kernels = _MASKED
    if d % _FUSED_HEAD_DIM_MULTIPLE:
        kernels = [*_MASKED, SDPBackend.MATH]
    with sdpa_kernel(kernels):
        out = F.scaled_dot_product_attention(folded, k, v, attn_mask=bias, scale=scale)
    return out.reshape(b, h_q, s, d)
