"""The cpu backend's MoE block: a layer's chosen experts in one operator call.

Router as the reference (:func:`qwen3core_backends.eager.moe.route`: the router linear, a
float32 softmax, top-k, in torch). The chosen ids and weights then go, as tensors, to
``qwen3core_cpu::moe_experts`` (csrc/moe_op.cpp), which runs every chosen expert's gate/up
product, SiLU-multiply and down product with the cpu linear's tile kernels on the layer's
stacked weights (:mod:`.expert_stacks`) and sums each token's contributions in ascending expert
order from zero: the eager block's numbers, with no host read of the ids, no per-expert Python
and both cores streaming the k experts' weights. Quantized experts (every scheme the cpu linear
runs: int8/int4 with float activations, w8a8/w4a8) and dense bfloat16/float32 ones.

Its experts are its own (the cpu linear, whatever ``linear`` is selected), under the checkpoint
keys; under tensor parallelism only this rank's (:mod:`qwen3core.parallel.experts`).
"""

from __future__ import annotations

import torch
from qwen3core_backends.eager.moe import route
from torch import nn

from qwen3core.contracts import BuildContext
from qwen3core.errors import BackendSelectionError
from qwen3core.parallel.experts import local_experts

from .build import load_kernels
from .expert_stacks import DENSE, DenseStack, ExpertLinear, QuantStack, stack_kind
from .linear import KERNEL_DTYPES


class CpuExpert(nn.Module):
    """One expert's ``gate_proj``, ``up_proj`` and ``down_proj`` (checkpoint key names); run
    only through the block's operator."""

    def __init__(self, ctx: BuildContext, expert: int, gate_up: QuantStack, down: QuantStack):
        super().__init__()
        spec = ctx.spec
        hidden, inter = spec.hidden_size, spec.moe_intermediate_size

        def linear(i: int, o: int, stack: QuantStack, part: int) -> ExpertLinear:
            return ExpertLinear(i, o, dtype=ctx.dtype, device=ctx.device, stack=stack,
                                expert=expert, part=part)

        self.gate_proj = linear(hidden, inter, gate_up, 0)
        self.up_proj = linear(hidden, inter, gate_up, 1)
        self.down_proj = linear(inter, hidden, down, 0)


class CpuMoE(nn.Module):
    def __init__(self, ctx: BuildContext):
        super().__init__()
        spec = ctx.spec
        self.top_k = spec.num_experts_per_tok
        self.norm_topk_prob = spec.norm_topk_prob
        self.intermediate_size = spec.moe_intermediate_size
        self.gate = ctx.linear(spec.hidden_size, spec.num_experts)
        held = ctx.parallel.experts(spec)
        self.first_expert = held.start
        count = held.stop - held.start
        # Plain attributes: shared by the experts' layers, filled as they load.
        self.gate_up_q = QuantStack("gate_up", count, 2, spec.hidden_size)
        self.down_q = QuantStack("down_proj", count, 1, spec.moe_intermediate_size)
        self.experts = local_experts(ctx, _expert_maker(ctx, self.first_expert, self.gate_up_q,
                                                        self.down_q))
        self.gate_up_dense: DenseStack | None = None  # set by prepare_weights for dense experts
        self.down_dense: DenseStack | None = None
        self.quant_operands: tuple | None = None  # set by prepare_weights for quantized ones
        self._dense_operands: tuple | None = None  # expert_operands' tuple for dense ones
        load_kernels()

    def _layers(self) -> list[ExpertLinear]:
        return [layer for expert in self.experts
                for layer in (expert.gate_proj, expert.up_proj, expert.down_proj)]

    def prepare_weights(self) -> None:
        quantized = [layer.quant is not None for layer in self._layers()]
        if any(quantized):
            if not all(quantized) or not (self.gate_up_q.complete and self.down_q.complete):
                raise BackendSelectionError(
                    "the cpu moe needs every expert of a layer quantized, or none; this layer "
                    "holds both: select backends={'moe': 'eager'}")
            # Fixed from now on (the experts' views never move): built once, not per call.
            self.quant_operands = (stack_kind(self.gate_up_q.first), self.gate_up_q.first.bits,
                                   *self.gate_up_q.operands(), *self.down_q.operands())
            return
        experts = list(self.experts)
        self.gate_up_dense = DenseStack([[e.gate_proj, e.up_proj] for e in experts])
        self.down_dense = DenseStack([[e.down_proj] for e in experts])
        self.gate_up_dense.restack()
        self.down_dense.restack()

    def expert_operands(self) -> tuple | None:
        """What ``moe_experts`` takes after the routing: kind, bits, then gate/up's and down's
        five tensors each (levels, scales, zeros, constant zero points, column orders). Fixed
        for quantized experts; for dense ones the stacks' current tensors, as the same tuple
        for as long as they hold. None before prepare_weights."""
        if self.quant_operands is not None:
            return self.quant_operands
        if self.gate_up_dense is None:
            return None
        gate_up, down = self.gate_up_dense.current(), self.down_dense.current()
        held = self._dense_operands
        if held is None or held[2] is not gate_up or held[7] is not down:
            empty_h, empty = torch.empty(0, dtype=torch.float16), torch.empty(0)
            no_perm = torch.empty(0, dtype=torch.int64)
            held = self._dense_operands = (DENSE, 0, gate_up, empty_h, empty, empty, no_perm,
                                           down, empty_h, empty, empty, no_perm)
        return held

    def _operands(self, x: torch.Tensor) -> tuple:
        operands = self.expert_operands()
        if operands is None:
            raise RuntimeError("CpuMoE.prepare_weights() was not called after loading")
        if operands[0] == DENSE and operands[2].dtype != x.dtype:
            raise BackendSelectionError(
                f"the cpu moe's dense experts are {operands[2].dtype}, the activations "
                f"{x.dtype}; run the model in the dtype it was loaded in")
        return operands

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not x.is_cpu or x.dtype not in KERNEL_DTYPES:
            raise BackendSelectionError(
                f"the cpu moe runs bfloat16 or float32 activations on the CPU, got {x.dtype} on "
                f"{x.device}; select backends={{'moe': 'eager'}}")
        shape = x.shape
        tokens = x.reshape(-1, shape[-1])
        weights, experts = route(self.gate(tokens), self.top_k, self.norm_topk_prob, x.dtype)
        out = torch.ops.qwen3core_cpu.moe_experts(
            tokens, experts.contiguous(), weights, self.first_expert,
            *self._operands(x), self.intermediate_size)
        return out.reshape(shape)


def _expert_maker(ctx: BuildContext, first: int, gate_up: QuantStack, down: QuantStack):
    ids = iter(range(ctx.parallel.experts(ctx.spec).stop - first))

    def make() -> CpuExpert:
        return CpuExpert(ctx, next(ids), gate_up, down)

    return make
