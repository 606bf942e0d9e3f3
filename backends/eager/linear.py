"""The plain bias-free linear layer."""

import torch
from torch import nn
from torch.nn import functional as F


class Linear(nn.Module):
    def __init__(self, in_features: int, out_features: int, *, dtype: torch.dtype,
                 device: torch.device):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features, dtype=dtype,
                                               device=device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"
