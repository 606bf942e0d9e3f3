"""The SwiGLU MLP with the activation and the gating product fused in one CUDA kernel."""

import torch
from qwen3core_backends.eager.mlp import SwiGLU

from .ops import prepare_kernels, silu_mul


class CudaSwiGLU(SwiGLU):
    """The eager SwiGLU (same projections, built with the selected ``linear``) with
    ``silu(gate) * up`` in one kernel."""

    def prepare_weights(self) -> None:
        prepare_kernels(self.gate_proj.weight.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(silu_mul(self.gate_proj(x), self.up_proj(x)))  # [..., E]
