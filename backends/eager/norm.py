"""RMSNorm, the reference numerics: float32 statistics, cast back, *then* scale by the weight."""

import torch
from torch import nn


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float, *, dtype: torch.dtype, device: torch.device):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim, dtype=dtype, device=device))

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """norm(x); with ``residual``, (norm(x + residual), x + residual): the decoder's residual
        add and the norm after it (see docs/hooks.md)."""
        if residual is not None:
            x = x + residual
            return self.normalise(x), x
        return self.normalise(x)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        input_dtype = x.dtype
        # float32 statistics; float64 inputs keep float64 so float64 runs are exact references.
        x32 = x.to(torch.promote_types(input_dtype, torch.float32))
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        # The multiply happens in the input dtype, as the reference model does it; multiplying
        # in float32 first would round differently in bfloat16.
        return self.weight * x32.to(input_dtype)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"
