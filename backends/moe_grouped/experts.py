"""Expert weights kept under their checkpoint names, stacked for grouped matmuls."""

from __future__ import annotations

import torch
from torch import nn


class WeightOnly(nn.Module):
    """Holds one projection matrix as ``weight`` [out, in]: the checkpoint key's last part."""

    def __init__(self, out_features: int, in_features: int, *, dtype: torch.dtype,
                 device: torch.device):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_features, in_features, dtype=dtype,
                                               device=device))


class ExpertWeights(nn.Module):
    """One expert's ``gate_proj``, ``up_proj`` and ``down_proj`` weights; never run directly."""

    def __init__(self, hidden_size: int, intermediate_size: int, *, dtype: torch.dtype,
                 device: torch.device):
        super().__init__()
        self.gate_proj = WeightOnly(intermediate_size, hidden_size, dtype=dtype, device=device)
        self.up_proj = WeightOnly(intermediate_size, hidden_size, dtype=dtype, device=device)
        self.down_proj = WeightOnly(hidden_size, intermediate_size, dtype=dtype, device=device)


@torch.no_grad()
def stack_experts(experts: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack every expert's weights into gate_up [E, 2I, H] and down [E, H, I], then make each
    expert's parameters views into the stacks.

    The per-expert parameters stay the state dict (checkpoint keys, unchanged loaders) and share
    memory with the stacks, so the experts are held once; loading into a parameter afterwards
    (``copy_``) updates the stacks too. Anything that replaces the parameters (``assign=True``,
    ``.to()``) must be followed by another ``prepare_weights()``.
    """
    inter = next(iter(experts)).gate_proj.weight.shape[0]
    gate_up = torch.stack([torch.cat((e.gate_proj.weight, e.up_proj.weight)) for e in experts])
    down = torch.stack([e.down_proj.weight for e in experts])
    for i, expert in enumerate(experts):  # in expert order (an ExpertSet iterates its experts)
        expert.gate_proj.weight.data = gate_up[i, :inter]
        expert.up_proj.weight.data = gate_up[i, inter:]
        expert.down_proj.weight.data = down[i]
    return gate_up, down
