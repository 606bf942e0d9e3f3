"""The SwiGLU feed-forward block: ``down(silu(gate(x)) * up(x))``."""

import torch
from torch import nn
from torch.nn import functional as F

from qwen3core.contracts import BuildContext


class SwiGLU(nn.Module):
    def __init__(self, ctx: BuildContext, hidden_size: int, intermediate_size: int):
        super().__init__()
        self.gate_proj = ctx.linear(hidden_size, intermediate_size)
        self.up_proj = ctx.linear(hidden_size, intermediate_size)
        self.down_proj = ctx.linear(intermediate_size, hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))
