"""Rotary embeddings of q and k in one operator call."""

from __future__ import annotations

import torch
from qwen3core_backends.eager.rope import EagerRotary, cos_sin_scale, rotary_inv_freq
from torch import nn

from qwen3core.rope_scaling import RopeScaling

from .build import load_kernels
from .linear import KERNEL_DTYPES
from .norm import CpuRMSNorm


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

    def fuse_norms(self, q_norm: nn.Module, k_norm: nn.Module) -> CpuNormRotary | None:
        """The q/k norms and this rotation as one operator call (see qwen3core.fusion); only
        for this backend's own norms, so a selection of another norm keeps its own."""
        if type(q_norm) is not CpuRMSNorm or type(k_norm) is not CpuRMSNorm:
            return None
        if q_norm.eps != k_norm.eps:
            return None
        return CpuNormRotary(q_norm, k_norm, self)

    def extra_repr(self) -> str:
        return f"head_dim={self.head_dim}, theta={self.theta}, scaling={self.scaling}"


class CpuNormRotary:
    """``rotary(q_norm(q), k_norm(k), positions)`` as ``qwen3core_cpu::qk_norm_rotary``: each
    head normalised and rotated in one pass, the same roundings as the three calls. Takes the
    projections [B, S, H * D] and returns [B, H, S, D] (see qwen3core.fusion.NormRotary). Holds
    the modules, not their tensors, so weights loaded or prepared later are the ones used."""

    def __init__(self, q_norm: CpuRMSNorm, k_norm: CpuRMSNorm, rotary: CpuRotary):
        self.q_norm, self.k_norm, self.rotary = q_norm, k_norm, rotary

    def __call__(self, q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        qw, kw = self.q_norm.weight, self.k_norm.weight
        dtype = q.dtype
        if (not q.is_cpu or dtype not in KERNEL_DTYPES or k.dtype != dtype or qw.dtype != dtype
                or kw.dtype != dtype or q.stride(-1) != 1 or k.stride(-1) != 1):
            return self.unfused(q, k, positions)
        return torch.ops.qwen3core_cpu.qk_norm_rotary(q, k, qw, kw, self.q_norm.eps, positions,
                                                      self.rotary.inv_freq, self.rotary.scale)

    def unfused(self, q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """The three modules one by one (inputs the kernel does not take, e.g. float64)."""
        d = self.rotary.head_dim
        q = self.q_norm(q.unflatten(-1, (-1, d))).transpose(1, 2)
        k = self.k_norm(k.unflatten(-1, (-1, d))).transpose(1, 2)
        return self.rotary(q, k, positions)
