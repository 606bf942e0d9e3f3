"""Rotary embeddings of q and k in one operator call."""

from __future__ import annotations

import torch
from qwen3core_backends.eager.rope import EagerRotary, cos_sin_scale, rotary_inv_freq
from torch import nn

from qwen3core.rope_scaling import RopeScaling

from .build import load_kernels
from .linear import KERNEL_DTYPES


class CpuRotary(nn.Module):
    """``(q, k, positions) -> (q, k)``; q/k are [B, H, S, D] with unit stride along D.

    The eager rotary recomputes its frequency table and concatenates rotated halves in every
    layer (about 20 dispatches); here the table is made once (a non-persistent buffer filled
    by :meth:`prepare_weights`, as the model is built on meta) and the operator computes each
    token's cos/sin once for all its heads. Rope scaling (yarn, linear) is the reference's
    frequency table plus its cos/sin scale, which the operator applies before rounding, as the
    reference does.
    """

    def __init__(self, head_dim: int, theta: float, *, device: torch.device,
                 scaling: RopeScaling | None = None):
        super().__init__()
        self.head_dim, self.theta, self.scaling = head_dim, theta, scaling
        self.scale = cos_sin_scale(scaling)
        self.register_buffer("inv_freq", torch.empty(head_dim // 2, dtype=torch.float32,
                                                     device=device), persistent=False)
        if device.type != "meta":  # built for real: no reason to wait for prepare_weights
            self.prepare_weights()
        self.fallback = EagerRotary(head_dim, theta, scaling)
        load_kernels()

    @torch.no_grad()
    def prepare_weights(self) -> None:
        self.inv_freq = rotary_inv_freq(self.head_dim, self.theta, self.inv_freq.device,
                                        self.scaling)

    def forward(self, q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        if (q.device.type != "cpu" or q.dtype not in KERNEL_DTYPES or k.dtype != q.dtype
                or q.stride(-1) != 1 or k.stride(-1) != 1):
            return self.fallback(q, k, positions)
        return torch.ops.qwen3core_cpu.rotary(q, k, positions, self.inv_freq, self.scale)

    def extra_repr(self) -> str:
        return f"head_dim={self.head_dim}, theta={self.theta}, scaling={self.scaling}"
