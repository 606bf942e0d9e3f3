"""Rotary embeddings through the CUDA kernel: q and k rotated in one launch."""

import torch
from qwen3core_backends.eager.rope import EagerRotary, cos_sin_scale, rotary_inv_freq
from torch import nn

from qwen3core.rope_scaling import RopeScaling

from .ops import prepare_kernels, rotary

__all__ = ["CudaRotary", "rotary_inv_freq"]


class CudaRotary(nn.Module):
    """``(q, k, positions) -> (q, k)``; q/k are [B, H, S, D], positions [B, S].

    A module (with no parameters) so that the model moves its frequency table with it and
    calls :meth:`prepare_weights` once the table has real memory. Rope scaling: the kernel
    takes the scaled frequency table as it is (linear, and yarn's frequencies); yarn's cos/sin
    scale is not in the kernel, so a spec whose scale is not 1 runs the reference's torch
    expression on the GPU instead (exact, but several launches per layer).
    """

    def __init__(self, head_dim: int, theta: float, *, device: torch.device,
                 scaling: RopeScaling | None = None):
        super().__init__()
        self.head_dim = head_dim
        self.theta = theta
        self.scaling = scaling
        self.fallback = (EagerRotary(head_dim, theta, scaling)
                         if cos_sin_scale(scaling) != 1.0 else None)
        # Derived, never loaded: filled by prepare_weights() (the model is built on meta).
        self.register_buffer("inv_freq", torch.empty(head_dim // 2, dtype=torch.float32,
                                                     device=device), persistent=False)

    @torch.no_grad()
    def prepare_weights(self) -> None:
        device = self.inv_freq.device
        self.inv_freq = rotary_inv_freq(self.head_dim, self.theta, device, self.scaling)
        prepare_kernels(device)

    def forward(self, q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.fallback is not None:
            return self.fallback(q, k, positions)
        return rotary(q, k, positions, self.inv_freq)

    def extra_repr(self) -> str:
        return f"head_dim={self.head_dim}, theta={self.theta}, scaling={self.scaling}"
