"""The Mixture-of-Experts block, written for reading: route, run each expert, mix.

Only the experts some token chose are run, so a decode step's cost follows the active
experts. Router: softmax over all experts in float32, top-k, renormalise the k weights iff the spec's
``norm_topk_prob``, cast to the activation dtype. Each token's expert outputs are summed in
ascending expert order starting from zero (the reference model's order), into a per-slot buffer
rather than with ``index_add_``, whose atomics make CUDA results non-deterministic.

Under tensor parallelism the block holds only this rank's experts (see
:mod:`qwen3core.parallel.experts`), routes over all of them, and returns the contribution of
the experts it holds; the model sums the ranks' contributions.
"""

import torch
from torch import nn

from qwen3core.contracts import BuildContext
from qwen3core.parallel.experts import local_experts


def route(router_logits: torch.Tensor, top_k: int, normalise: bool, dtype: torch.dtype
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """router_logits [N, n_experts] -> (weights [N, k] in ``dtype``, expert ids [N, k])."""
    probs = torch.softmax(router_logits, dim=-1,
                          dtype=torch.promote_types(router_logits.dtype, torch.float32))
    weights, experts = torch.topk(probs, top_k, dim=-1)
    if normalise:
        weights = weights / weights.sum(dim=-1, keepdim=True)
    return weights.to(dtype), experts


class EagerMoE(nn.Module):
    def __init__(self, ctx: BuildContext):
        super().__init__()
        spec = ctx.spec
        self.top_k = spec.num_experts_per_tok
        self.norm_topk_prob = spec.norm_topk_prob
        self.gate = ctx.linear(spec.hidden_size, spec.num_experts)
        self.experts = local_experts(
            ctx, lambda: ctx.mlp(spec.hidden_size, spec.moe_intermediate_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        tokens = x.reshape(-1, shape[-1])  # [N, E]
        weights, experts = route(self.gate(tokens), self.top_k, self.norm_topk_prob, x.dtype)
        contributions = tokens.new_zeros(tokens.shape[0], self.top_k, shape[-1])  # [N, k, E]
        # Only the experts some token chose: at batch 1 the cost follows the k active experts,
        # not all of them (one host read of the chosen ids per block).
        chosen = set(torch.unique(experts).tolist())
        for e, expert in self.experts.by_id():
            if e not in chosen:
                continue
            rows, slots = torch.where(experts == e)
            out = self.experts[e](tokens[rows]) * weights[rows, slots, None]
            contributions[rows, slots] = out
        # Sum each token's k contributions in ascending expert order.
        order = torch.argsort(experts, dim=-1)
        contributions = torch.gather(contributions, 1, order[..., None].expand_as(contributions))
        total = torch.zeros_like(tokens)
        for slot in range(self.top_k):
            total = total + contributions[:, slot]
        return total.reshape(shape)
