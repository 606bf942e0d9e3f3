"""The cpu backend's quantized weights: one packed copy of int8 or int4 levels, and its kernel.

:func:`pack_quantized` turns a :class:`~qwen3core.quant.QuantizedWeight` into the tile layout
of ``csrc/kernels.h`` (16 outputs per tile, levels input-major; int4 eight inputs per 32-bit
word, in an order one shift and one mask unpack; float16 scales and int8 zero points per group and output).
Nothing else of the weight is kept: no dense copy, no unpacked levels. The numbers are the
scheme's reference (``backends/eager/linear.py``): ``(q - z) * s`` summed in float32.

A weight with ``act_block`` (the ``w8a8`` / ``w4a8`` schemes) is packed instead for the
integer kernels (``csrc/a8_kernels.h``, layout in ``csrc/kernels.h``): int8 levels as
unsigned bytes ``q + 128``, four inputs of an output side by side (what ``vpdpbusd`` takes);
int4 nibbles four inputs apart in one byte. The operator quantizes the activations itself.

Activation-ordered groups (GPTQ ``desc_act``: a ``g_idx`` that is not ``i // group_size``)
are packed with their input columns sorted by group, and each call gathers the activations in
the same order: the same sum, with contiguous groups.

The packing itself is a C++ operator (``csrc/pack_op.cpp``) that writes the final tensors
straight from the int8 levels; :mod:`.pack_reference` is its readable definition in torch
operations, and the two are tested equal bit for bit.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch

from qwen3core.quant.schemes import QuantizationError
from qwen3core.quant.weight import QuantizedWeight

from .build import load_kernels

TILE = 16
A8_BLOCK = 32  # kActBlock in csrc/kernels.h


@dataclass(frozen=True)
class PackedQuant:
    levels: torch.Tensor  # int8 [tiles, K_pad, 16]; int4: uint8 [tiles, K_pad/2, 16] in
    # blocks of 8 inputs (see csrc/pack_op.cpp)
    scales: torch.Tensor  # float16 [tiles, groups, 16]
    zeros: torch.Tensor  # int8 [tiles, groups, 16], or empty (every zero is zero_const)
    bits: int
    group_size: int
    zero_const: float
    perm: torch.Tensor | None  # int64 [in]: input order of the packed columns, or None
    act_block: int | None = None  # int8 activations per this many inputs: the a8 layout

    def __call__(self, x: torch.Tensor, out_features: int) -> torch.Tensor:
        return self._product(x, out_features)

    @functools.cached_property
    def _product(self) -> Callable[[torch.Tensor, int], torch.Tensor]:
        """The operator with this weight's operands bound, made on the first call: a decode
        step makes ~113 of these calls, each of which would otherwise look them up again."""
        levels, scales, zeros, bits, gs = (self.levels, self.scales, self.zeros, self.bits,
                                           self.group_size)
        if self.act_block is not None:
            a8, zc = torch.ops.qwen3core_cpu.qlinear_a8.default, int(self.zero_const)
            return lambda x, n: a8(x, levels, scales, zeros, bits, gs, zc, n)
        op, zero_const, perm = torch.ops.qwen3core_cpu.qlinear.default, self.zero_const, self.perm
        if perm is None:
            return lambda x, n: op(x, levels, scales, zeros, bits, gs, zero_const, n)
        return lambda x, n: op(x.index_select(-1, perm), levels, scales, zeros, bits, gs,
                               zero_const, n)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_product", None)  # a closure: made again on the first call
        return state

    @property
    def nbytes(self) -> int:
        return sum(t.nbytes for t in (self.levels, self.scales, self.zeros))

    def tiles(self, start: int, stop: int) -> PackedQuant:
        """Tiles [start, stop) as views (the outputs 16*start .. 16*stop)."""
        zeros = self.zeros[start:stop] if self.zeros.numel() else self.zeros
        return replace(self, levels=self.levels[start:stop], scales=self.scales[start:stop],
                       zeros=zeros)


def activation_order(weight: QuantizedWeight) -> torch.Tensor | None:
    """The input order of the packed columns (sorted by group, stable), or None when the
    columns are already in group order."""
    if weight.g_idx is None:
        return None
    g = weight.g_idx.to(torch.int64)
    inp, gs = weight.in_features, weight.group_size
    if torch.equal(g, torch.arange(inp, device=g.device) // gs):
        return None
    counts = torch.bincount(g, minlength=weight.scales.shape[1])
    if bool((counts[:-1] != gs).any()) or int(counts[-1]) > gs:
        raise QuantizationError("the cpu kernels need g_idx groups of group_size columns each")
    return torch.argsort(g, stable=True)


def half_scales(weight: QuantizedWeight) -> torch.Tensor:
    """The scales as float16, the kernels' dtype; refused where that would change them."""
    scales = weight.scales
    if scales.dtype != torch.float16:
        as_half = scales.to(torch.float16)
        if not torch.equal(as_half.to(scales.dtype), scales):
            raise QuantizationError(
                "the cpu kernels hold float16 scales; these are not exactly float16 "
                f"({scales.dtype}); select backends={{'linear': 'eager'}} for them")
        scales = as_half
    return scales


def _level_range(q: torch.Tensor) -> tuple[int, int]:
    if q.numel() == 0:
        return 0, 0
    lo, hi = torch.aminmax(q)  # in the levels' own dtype: no widened copy
    return int(lo), int(hi)


def _int8_levels(q: torch.Tensor) -> torch.Tensor:
    """The levels as int8 (every format's unpacked dtype already; others, range-checked by the
    caller, are converted)."""
    return q if q.dtype == torch.int8 else q.to(torch.int8)


@torch.no_grad()
def pack_quantized(weight: QuantizedWeight) -> PackedQuant:
    """``weight`` in the kernels' layout (module docstring), written by the C++ operator
    ``qwen3core_cpu::pack_levels`` straight from the int8 levels into the final tensors: no
    temporary but the small per-group tensors. :mod:`.pack_reference` defines the same bytes
    in torch operations."""
    load_kernels()  # build the extension while the model is built, not mid-forward
    if weight.act_block is not None:
        return _pack_a8(weight)
    perm = activation_order(weight)
    groups = weight.scales.shape[1]
    gs = weight.group_size
    if gs % 2:
        if groups != 1:
            raise QuantizationError(f"the cpu kernels need an even group size, got {gs}")
        gs += 1  # one group per channel over an odd K: pad the group with one zero input
    scales = half_scales(weight)
    q_lo, q_hi = _level_range(weight.qweight)
    offset = 8 if weight.bits == 4 and q_lo < 0 else 0  # signed -8..7 as 0..15
    lo, hi = (0, 15) if weight.bits == 4 else (-128, 127)
    if q_lo + offset < lo or q_hi + offset > hi:
        raise QuantizationError(f"{weight.bits}-bit levels outside {lo - offset}.."
                                f"{hi - offset}")
    zeros = torch.empty(0, dtype=torch.int8)
    zero_const = float(offset)
    if weight.zeros is not None:
        zeros = _zero_tiles(weight.zeros, offset, -128, 127)
        if zeros is None:
            raise QuantizationError("the cpu kernels need integer zero points in -128..127")
        zero_const = 0.0
    if weight.bits == 4 and gs % 8:
        raise QuantizationError(f"the cpu int4 kernels need groups of a multiple of 8 "
                                f"inputs, got {gs}")
    packed = torch.ops.qwen3core_cpu.pack_levels(_int8_levels(weight.qweight), perm,
                                                 weight.bits, offset, groups * gs, False)
    return PackedQuant(packed, _tiles(scales), zeros, weight.bits, gs, zero_const, perm)


def _pack_a8(weight: QuantizedWeight) -> PackedQuant:
    """The integer kernels' layout (see the module docstring and csrc/kernels.h)."""
    if weight.act_block != A8_BLOCK:
        raise QuantizationError(f"the cpu integer kernels quantize activations per "
                                f"{A8_BLOCK} inputs, not {weight.act_block}")
    groups, gs = weight.scales.shape[1], weight.group_size
    if gs % A8_BLOCK:
        if groups != 1:
            raise QuantizationError(f"the cpu integer kernels need weight groups of a multiple "
                                    f"of {A8_BLOCK} inputs, got {gs}")
        gs = -(-gs // A8_BLOCK) * A8_BLOCK  # one group per channel: pad it with zero inputs
    q_lo, q_hi = _level_range(weight.qweight)
    zeros = torch.empty(0, dtype=torch.int8)
    offset = 0
    zero_const = 0.0
    if weight.bits == 8:
        if weight.zeros is not None:
            raise QuantizationError("the cpu integer kernels take symmetric int8 levels (no "
                                    "zero points)")
        lo, hi = -128, 127
    else:
        lo, hi = 0, 15
        if q_lo < 0:  # signed -8..7: as 0..15 around the zero point 8
            offset = 8
            zero_const = 8.0
        if weight.zeros is not None:
            zeros = _zero_tiles(weight.zeros, offset, 0, 15)
            if zeros is None:
                raise QuantizationError("the cpu integer kernels need int4 zero points in "
                                        "0..15")
            zero_const = 0.0
    if q_lo + offset < lo or q_hi + offset > hi:
        raise QuantizationError(f"{weight.bits}-bit levels outside the range the integer "
                                f"kernels take")
    packed = torch.ops.qwen3core_cpu.pack_levels(_int8_levels(weight.qweight), None,
                                                 weight.bits, offset, groups * gs, True)
    return PackedQuant(packed, _tiles(half_scales(weight)), zeros, weight.bits, gs,
                       zero_const, None, A8_BLOCK)


def _zero_tiles(zeros: torch.Tensor, offset: int, lo: int, hi: int) -> torch.Tensor | None:
    """The zero points plus ``offset`` as int8 tiles, or None unless they are integers in
    lo..hi. int8 zero points (every format's) are checked and moved without a copy."""
    if zeros.dtype != torch.int8:
        z = zeros.to(torch.float32) + offset
        if not torch.equal(z, z.round()) or float(z.min()) < lo or float(z.max()) > hi:
            return None
        return _tiles(z.to(torch.int8))
    z_lo, z_hi = _level_range(zeros)
    if z_lo + offset < lo or z_hi + offset > hi:
        return None
    return torch.ops.qwen3core_cpu.tile_groups(zeros, offset)


def _tiles(per_group: torch.Tensor, out: int | None = None) -> torch.Tensor:
    """[out, groups] -> [tiles, groups, 16], zero rows past ``out`` (``per_group``'s rows; the
    argument is checked, for callers of the earlier signature)."""
    if out is not None and out != per_group.shape[0]:
        raise ValueError(f"{per_group.shape[0]} rows of groups, not {out}")
    return torch.ops.qwen3core_cpu.tile_groups(per_group)


def concat_packed(parts: Sequence[PackedQuant], out_features: Sequence[int]
                  ) -> PackedQuant | None:
    """One packed weight with ``parts``' outputs stacked, or None when their layouts differ
    (bits, groups, zero points, column order) or a part before the last ends mid-tile."""
    first = parts[0]
    for part, n in zip(parts[:-1], out_features[:-1]):
        if n % TILE:
            return None
    for part in parts:
        if (part.bits, part.group_size, part.zero_const, part.act_block, part.levels.shape[1:],
                part.scales.shape[1:], part.zeros.numel() > 0) != (
                first.bits, first.group_size, first.zero_const, first.act_block,
                first.levels.shape[1:],
                first.scales.shape[1:], first.zeros.numel() > 0):
            return None
        if (part.perm is None) != (first.perm is None) or (
                part.perm is not None and not torch.equal(part.perm, first.perm)):
            return None
    zeros = torch.cat([p.zeros for p in parts]) if first.zeros.numel() else first.zeros
    return PackedQuant(torch.cat([p.levels for p in parts]), torch.cat([p.scales for p in parts]),
                       zeros, first.bits, first.group_size, first.zero_const, first.perm,
                       first.act_block)
