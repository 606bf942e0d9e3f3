"""RMSNorm in one pass per row (the hidden norms and the per-head q/k norms alike)."""

from __future__ import annotations

import torch
from qwen3core_backends.eager.norm import RMSNorm

from .build import load_kernels
from .linear import KERNEL_DTYPES


class CpuRMSNorm(RMSNorm):
    """The eager RMSNorm (same ``weight`` and numerics) as one operator: the eager chain of
    cast, square, mean, rsqrt, multiply, cast and scale is seven dispatches per call, and a
    0.6B decode step makes 57 calls (the per-head q/k norms go with the rotation, see
    :class:`.rope.CpuNormRotary`). With a residual, its add is the same operator's first pass."""

    def __init__(self, dim: int, eps: float, *, dtype: torch.dtype, device: torch.device):
        super().__init__(dim, eps, dtype=dtype, device=device)
        load_kernels()

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        weight = self.weight
        if not x.is_cpu or x.dtype not in KERNEL_DTYPES or x.dtype != weight.dtype:
            return super().forward(x, residual)
        if residual is None:
            return torch.ops.qwen3core_cpu.rms_norm(x, weight, self.eps)
        if residual.dtype != x.dtype or residual.shape != x.shape:
            return super().forward(x, residual)
        # The residual add and the norm in one pass: a decode step makes 57 of these pairs.
        return torch.ops.qwen3core_cpu.add_rms_norm(x, residual, weight, self.eps)

    def fuse_layer(self, layer):
        """The decoder layer this norm opens as two operator calls per decode step (see
        qwen3core.fusion.fuse_decoder_layer), or None where its parts are not all this
        backend's."""
        from .layer_step import CpuLayerStep  # imports this module

        return CpuLayerStep.fuse(layer)
