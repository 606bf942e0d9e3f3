"""The Mixture-of-Experts block with tokens grouped by expert and stacked expert weights."""

from __future__ import annotations

import torch
from qwen3core_backends.eager.moe import route
from torch import nn
from torch.nn import functional as F

from qwen3core.contracts import BuildContext
from qwen3core.parallel.experts import local_experts

from .experts import ExpertWeights, stack_experts
from .grouped_linear import grouped_linear, grouped_mm_usable


class GroupedMoE(nn.Module):
    """Router as the reference; experts run as two grouped matmuls over expert-sorted rows.

    Every (token, slot) pair becomes one row; rows are sorted by expert (stable, so each expert
    sees its tokens in ascending order, as the eager loop does). The weighted outputs go back
    to their (token, slot) place and each token's k contributions are summed in ascending
    expert order from zero: the eager block's order, with no atomics, so results are
    deterministic and differ from the eager block only by the matmuls' rounding (the stacked
    gate/up matrix may be blocked differently from two separate ones).

    Under tensor parallelism it holds this rank's experts only: rows routed elsewhere are left
    out before sorting and contribute zero here (another rank adds them).
    """

    def __init__(self, ctx: BuildContext):
        super().__init__()
        spec = ctx.spec
        self.top_k = spec.num_experts_per_tok
        self.norm_topk_prob = spec.norm_topk_prob
        self.num_experts = spec.num_experts
        self.intermediate_size = spec.moe_intermediate_size
        self.gate = ctx.linear(spec.hidden_size, spec.num_experts)
        self.experts = local_experts(ctx, lambda: ExpertWeights(
            spec.hidden_size, spec.moe_intermediate_size, dtype=ctx.dtype, device=ctx.device))
        held = ctx.parallel.experts(spec)
        self.first_expert = held.start
        self.expert_parallel = held.size < spec.num_experts
        # Derived from the experts in prepare_weights(); not in the state dict.
        self.register_buffer("gate_up", None, persistent=False)  # [E, 2I, H]
        self.register_buffer("down", None, persistent=False)  # [E, H, I]
        self.use_grouped_mm = False
        self.register_buffer("expert_ids", None, persistent=False)  # [experts held]

    def prepare_weights(self) -> None:
        self.gate_up, self.down = stack_experts(self.experts)
        self.expert_ids = torch.arange(self.first_expert, self.first_expert + len(self.experts),
                                       device=self.down.device)
        self.use_grouped_mm = grouped_mm_usable(self.down.device, self.down.dtype,
                                                self.down.shape[1], self.down.shape[2])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gate_up is None:
            raise RuntimeError("GroupedMoE.prepare_weights() was not called after loading")
        shape = x.shape
        tokens = x.reshape(-1, shape[-1])  # [N, E]
        n, k = tokens.shape[0], self.top_k
        weights, experts = route(self.gate(tokens), k, self.norm_topk_prob, x.dtype)  # [N, k]
        flat = experts.reshape(-1)  # [N*k] expert of each (token, slot) row
        if self.expert_parallel:  # only the rows this rank's experts run
            held = (flat >= self.first_expert) & (flat < self.first_expert + len(self.experts))
            picked = held.nonzero().squeeze(1)
            order = picked.index_select(
                0, torch.argsort(flat.index_select(0, picked), stable=True))
        else:
            order = torch.argsort(flat, stable=True)  # rows grouped by expert
        sorted_experts = flat.index_select(0, order)
        # Where each expert's rows end: a fixed-size result (unlike bincount, whose length
        # depends on the data), so compiled code needs no host round trip here.
        ends = torch.searchsorted(sorted_experts, self.expert_ids, right=True)  # [held]
        local_ids = sorted_experts - self.first_expert  # index into the stacks
        rows = tokens.index_select(0, order // k)  # [N*k, E]
        hidden = grouped_linear(rows, self.gate_up, local_ids, ends,
                                self.use_grouped_mm)  # [N*k, 2I]
        gate, up = hidden.split(self.intermediate_size, dim=-1)
        out = grouped_linear(F.silu(gate) * up, self.down, local_ids, ends,
                             self.use_grouped_mm)  # [N*k, E]
        out = out * weights.reshape(-1).index_select(0, order)[:, None]
        # Back to (token, slot) places: a permutation, so no two rows meet (zeros where
        # another rank's expert was chosen).
        places = tokens.new_zeros(n * k, out.shape[-1]) if self.expert_parallel \
            else torch.empty_like(out)
        contributions = places.index_copy_(0, order, out).view(n, k, -1)
        ascending = torch.argsort(experts, dim=-1)  # [N, k]
        contributions = torch.gather(contributions, 1,
                                     ascending[..., None].expand_as(contributions))
        total = torch.zeros_like(tokens)
        for slot in range(k):
            total = total + contributions[:, slot]
        return total.reshape(shape)
