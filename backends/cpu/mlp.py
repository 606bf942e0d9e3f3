"""The SwiGLU MLP with gate and up as one packed weight and the activation in one operator."""

from __future__ import annotations

import torch
from qwen3core_backends.eager.mlp import SwiGLU

from qwen3core.contracts import FusedLinear
from qwen3core.fusion import fuse_linears

from .build import load_kernels
from .linear import KERNEL_DTYPES


class CpuSwiGLU(SwiGLU):
    """``down(silu(gate(x)) * up(x))`` with the projections the selected ``linear`` builds.

    Where that linear can fuse layers (the ``cpu`` one can), gate and up are read as one
    [2I, E] product: one kernel call streams both, a larger call reaching a higher share of
    the memory bandwidth than two smaller ones; ``silu_mul`` then turns its [..., 2I] output
    into [..., I] in one pass instead of three operators.
    """

    def __init__(self, ctx, hidden_size: int, intermediate_size: int):
        super().__init__(ctx, hidden_size, intermediate_size)
        self.gate_up: FusedLinear | None = None  # set by prepare_weights; not a module
        load_kernels()

    def prepare_weights(self) -> None:
        self.gate_up = fuse_linears(self.gate_proj, self.up_proj)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gate_up is None or not x.is_cpu or x.dtype not in KERNEL_DTYPES:
            return super().forward(x)  # unfused projections: the eager expression, same numerics
        gate_up = self.gate_up(x)  # [..., 2I]
        return self.down_proj(torch.ops.qwen3core_cpu.silu_mul(gate_up))
