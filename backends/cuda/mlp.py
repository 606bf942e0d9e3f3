"""The SwiGLU MLP with the activation and the gating product fused in one CUDA kernel."""

import torch
from torch import nn

from qwen3core.contracts import BuildContext

from .ops import prepare_kernels, silu_mul


class CudaSwiGLU(nn.Module):
    """``down(silu(gate(x)) * up(x))``; the projections are whatever ``linear`` was selected."""

    def __init__(self, ctx: BuildContext, hidden_size: int, intermediate_size: int):
        super().__init__()
        self.gate_proj = ctx.linear(hidden_size, intermediate_size)
        self.up_proj = ctx.linear(hidden_size, intermediate_size)
        self.down_proj = ctx.linear(intermediate_size, hidden_size)

    def prepare_weights(self) -> None:
        prepare_kernels(self.gate_proj.weight.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(silu_mul(self.gate_proj(x), self.up_proj(x)))  # [..., E]
