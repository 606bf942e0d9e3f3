"""A MoE layer's experts stacked per matrix kind, the layout ``qwen3core_cpu::moe_experts`` reads.

Two stacks per layer: ``gate_up`` (gate then up, each padded to whole 16-output tiles) and
``down``, each one tensor per field indexed by the local expert (global id minus the first one
this process holds). Each expert's three layers (:class:`ExpertLinear`, the cpu linear) keep
views into the stacks as their weights, so every expert is held once, under its checkpoint keys.

Quantized experts are written into the stacks as they load (``load_quantized``): the first
expert's packed weight sizes the stack (uninitialised memory, so untouched pages cost nothing),
every later one is packed, copied into its place and dropped. The load therefore never holds a
second copy of an expert, or of the layer. Dense experts are stacked by ``prepare_weights`` once
their weights are in place (each layer's dense weight is released as it is copied in) and
restacked when a layer's weight is later replaced or written.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from qwen3core.quant.schemes import QuantizationError
from qwen3core.quant.weight import QuantizedWeight

from .huge_pages import advise_huge_pages
from .linear import CpuLinear
from .quant_linear import PackedQuant
from .tiles import TILE, store_weight, tile_shape

#: Operator kinds (csrc/moe_op.cpp): dense tiles, float-activation levels, integer kernels.
DENSE, QUANT, A8 = 0, 1, 2


class QuantStack:
    """One matrix kind of a layer's experts, quantized: levels, scales, zero points (or none),
    each part's constant zero point and column order (GPTQ act-order), stacked by expert."""

    def __init__(self, what: str, experts: int, parts: int, in_features: int):
        self.what, self.experts, self.parts, self.in_features = what, experts, parts, in_features
        self.first: PackedQuant | None = None
        self.levels = self.scales = self.zeros = None
        self.zero_consts = torch.zeros(experts, parts, dtype=torch.float32)
        self.perms: torch.Tensor | None = None  # int64 [E, parts, in], made at the first perm
        self.filled = torch.zeros(experts, parts, dtype=torch.bool)
        self.part_tiles = 0

    def put(self, expert: int, part: int, packed: PackedQuant) -> PackedQuant:
        """Copy ``packed`` into its place and return the same weight as views into the stack."""
        if self.first is None:
            self.first = packed
            self.part_tiles = packed.levels.shape[0]
            tiles = self.parts * self.part_tiles
            self.levels = packed.levels.new_empty(self.experts, tiles, *packed.levels.shape[1:])
            self.scales = packed.scales.new_empty(self.experts, tiles, *packed.scales.shape[1:])
            self.zeros = (packed.zeros.new_empty(self.experts, tiles, *packed.zeros.shape[1:])
                          if packed.zeros.numel() else packed.zeros)
            for stacked in (self.levels, self.scales, self.zeros):
                advise_huge_pages(stacked)  # before the experts are written into it
        elif _layout(packed) != _layout(self.first):
            raise QuantizationError(
                f"expert {expert}'s {self.what} is quantized in another layout than the first "
                f"expert's ({_describe(packed)} vs {_describe(self.first)}); the cpu moe stacks "
                "a layer's experts in one layout: select backends={'moe': 'eager'} for this "
                "checkpoint")
        place = slice(part * self.part_tiles, (part + 1) * self.part_tiles)
        views = {"levels": self.levels[expert, place], "scales": self.scales[expert, place],
                 "zeros": self.zeros[expert, place] if packed.zeros.numel() else packed.zeros}
        for name, view in views.items():
            if view.numel():
                view.copy_(getattr(packed, name))
        self.zero_consts[expert, part] = packed.zero_const
        if packed.perm is not None:
            if self.perms is None:
                self.perms = torch.arange(self.in_features).expand(
                    self.experts, self.parts, -1).contiguous()
            self.perms[expert, part] = packed.perm
        self.filled[expert, part] = True
        return replace(packed, **views)

    @property
    def complete(self) -> bool:
        return bool(self.filled.all())

    def operands(self) -> tuple[torch.Tensor, ...]:
        empty = torch.empty(0, dtype=torch.int64)
        return (self.levels, self.scales, self.zeros, self.zero_consts,
                empty if self.perms is None else self.perms)


def _layout(packed: PackedQuant) -> tuple:
    return (packed.bits, packed.group_size, packed.act_block, tuple(packed.levels.shape),
            tuple(packed.scales.shape), tuple(packed.zeros.shape), packed.levels.dtype)


def _describe(packed: PackedQuant) -> str:
    return (f"{packed.bits} bits, groups of {packed.group_size}, "
            f"{'zero points' if packed.zeros.numel() else 'no zero points'}, "
            f"{'int8 activations' if packed.act_block else 'float activations'}, "
            f"levels {list(packed.levels.shape)}")


class DenseStack:
    """One matrix kind of a layer's experts as dense tiles [E, parts * tiles, ...]; each layer's
    tiles a view into it (like the cpu linear's fused groups)."""

    def __init__(self, layers: list[list[CpuLinear]]):
        self.layers = layers  # [expert][part]
        self.stack: torch.Tensor | None = None
        self.views: list[torch.Tensor] = []

    @torch.no_grad()
    def restack(self) -> None:
        first = self.layers[0][0]
        source = first.packing_source()
        if source is None:
            raise QuantizationError(
                "the cpu moe runs bfloat16 or float32 experts on the CPU; these are "
                f"{first._parameters.get('weight', first.tiles).dtype}")
        part_tiles = -(-first.out_features // TILE)
        parts = len(self.layers[0])
        self.stack = torch.empty(len(self.layers), parts * part_tiles,
                                 *tile_shape(source.dtype, first.in_features),
                                 dtype=source.dtype, device=source.device)
        advise_huge_pages(self.stack)
        self.views = []
        for e, expert in enumerate(self.layers):
            for p, layer in enumerate(expert):
                view = self.stack[e, p * part_tiles:(p + 1) * part_tiles]
                src = layer.packing_source()
                if src is None or src.dtype != self.stack.dtype:
                    raise QuantizationError("the cpu moe needs every expert in one dtype")
                if src is layer.tiles:
                    view.copy_(src)
                else:
                    store_weight(view, src)
                del src  # the layer's dense weight must be free to go
                layer._adopt_tiles(view)
                self.views.append(view)

    def current(self) -> torch.Tensor:
        """The stack, rebuilt first when a layer's weight is no longer in it (replaced,
        written, moved)."""
        if self.stack is None or (not torch.compiler.is_compiling() and any(
                layer.packing_source() is not view for layer, view in
                zip((layer for expert in self.layers for layer in expert), self.views))):
            self.restack()
        return self.stack


class ExpertLinear(CpuLinear):
    """The cpu linear as one expert's gate, up or down: a quantized weight goes straight into
    the layer's stack (see the module docstring)."""

    def __init__(self, in_features: int, out_features: int, *, dtype: torch.dtype,
                 device: torch.device, stack: QuantStack, expert: int, part: int):
        super().__init__(in_features, out_features, dtype=dtype, device=device)
        # Plain attributes (not submodules): the stack is shared by every expert of the layer.
        self.stack, self.expert, self.part = stack, expert, part

    def load_quantized(self, weight: QuantizedWeight) -> None:
        super().load_quantized(weight)  # checks the shape, packs, drops the dense weight
        self._into_stack()

    def load_quantized_rows(self, scheme, rows) -> None:
        """The cpu linear's chunked quantize-and-pack (quantize on load), then into the stack
        (unless it fell back to :meth:`load_quantized`, which stacked it already)."""
        super().load_quantized_rows(scheme, rows)
        if not self._in_stack():
            self._into_stack()

    def _in_stack(self) -> bool:
        levels = self.stack.levels
        return levels is not None and (self.quant.levels.untyped_storage().data_ptr()
                                       == levels.untyped_storage().data_ptr())

    def _into_stack(self) -> None:
        packed, self.quant = self.quant, None
        self.quant = self.stack.put(self.expert, self.part, packed)
        del packed  # the expert's own packed copy: freed now, only the stack holds it


def stack_kind(packed: PackedQuant) -> int:
    return A8 if packed.act_block is not None else QUANT
