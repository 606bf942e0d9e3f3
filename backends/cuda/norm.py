"""RMSNorm through the CUDA kernel (hidden norms and the per-head q/k norms alike)."""

import torch
from torch import nn

from .ops import prepare_kernels, rms_norm


class CudaRMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float, *, dtype: torch.dtype, device: torch.device):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim, dtype=dtype, device=device))

    def prepare_weights(self) -> None:
        prepare_kernels(self.weight.device)  # compile or load now, not inside the first step

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if residual is not None:  # the residual add stays a torch operator (no fused kernel yet)
            x = x + residual
            return rms_norm(x, self.weight, self.eps), x
        return rms_norm(x, self.weight, self.eps)  # [..., D]

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"
