"""The cpu backend's packed layouts of quantized weights, written in torch operations.

The readable definition of what :func:`~.quant_linear.pack_quantized` makes (its C++ operator,
``csrc/pack_op.cpp``, writes the same bytes straight from the int8 levels, with none of the
widened temporaries below: an int4 weight's levels pass through int16 and int64 copies here,
several times the levels' bytes). tests/quant/test_pack_ops.py holds the two equal bit for
bit; the layouts themselves are described in ``csrc/kernels.h`` and :mod:`.quant_linear`.
"""

from __future__ import annotations

import torch

from qwen3core.quant.schemes import QuantizationError
from qwen3core.quant.weight import QuantizedWeight

from .quant_linear import A8_BLOCK, TILE, PackedQuant, activation_order, half_scales


@torch.no_grad()
def pack_quantized_reference(weight: QuantizedWeight) -> PackedQuant:
    """What :func:`~.quant_linear.pack_quantized` makes, in torch operations."""
    if weight.act_block is not None:
        return _pack_a8(weight)
    q, perm = weight.qweight, activation_order(weight)
    if perm is not None:
        q = q.index_select(1, perm)
    out, inp = q.shape
    groups = weight.scales.shape[1]
    gs = weight.group_size
    if gs % 2:
        if groups != 1:
            raise QuantizationError(f"the cpu kernels need an even group size, got {gs}")
        gs += 1  # one group per channel over an odd K: pad the group with one zero input
    scales = half_scales(weight)
    levels = q.to(torch.int16)
    offset = 0
    if weight.bits == 4 and int(levels.min()) < 0:
        offset = 8  # signed 4-bit levels -8..7 as 0..15, the zero point moved with them
    levels = levels + offset
    lo, hi = (0, 15) if weight.bits == 4 else (-128, 127)
    if int(levels.min()) < lo or int(levels.max()) > hi:
        raise QuantizationError(f"{weight.bits}-bit levels outside {lo - offset}.."
                                f"{hi - offset}")
    zeros = torch.empty(0, dtype=torch.int8)
    zero_const = float(offset)
    if weight.zeros is not None:
        z = weight.zeros.to(torch.float32) + offset
        if not torch.equal(z, z.round()) or float(z.min()) < -128 or float(z.max()) > 127:
            raise QuantizationError("the cpu kernels need integer zero points in -128..127")
        zeros = _tiles(z.to(torch.int8), out)
        zero_const = 0.0
    n_pad, k_pad = -(-out // TILE) * TILE, groups * gs
    padded = levels.new_zeros(n_pad, k_pad)
    padded[:out, :inp] = levels
    if weight.bits == 4:
        if gs % 8:
            raise QuantizationError(f"the cpu int4 kernels need groups of a multiple of 8 "
                                    f"inputs, got {gs}")
        packed = _int4_blocks(padded)
    else:
        packed = padded.to(torch.int8).view(n_pad // TILE, TILE, -1).transpose(1, 2)
        packed = packed.contiguous()
    return PackedQuant(packed, _tiles(scales, out), zeros, weight.bits, gs, zero_const, perm)


def _pack_a8(weight: QuantizedWeight) -> PackedQuant:
    """The integer kernels' layout (see the module docstring and csrc/kernels.h)."""
    if weight.act_block != A8_BLOCK:
        raise QuantizationError(f"the cpu integer kernels quantize activations per "
                                f"{A8_BLOCK} inputs, not {weight.act_block}")
    out, inp = weight.qweight.shape
    groups, gs = weight.scales.shape[1], weight.group_size
    if gs % A8_BLOCK:
        if groups != 1:
            raise QuantizationError(f"the cpu integer kernels need weight groups of a multiple "
                                    f"of {A8_BLOCK} inputs, got {gs}")
        gs = -(-gs // A8_BLOCK) * A8_BLOCK  # one group per channel: pad it with zero inputs
    levels = weight.qweight.to(torch.int16)
    zeros = torch.empty(0, dtype=torch.int8)
    zero_const = 0.0
    if weight.bits == 8:
        if weight.zeros is not None:
            raise QuantizationError("the cpu integer kernels take symmetric int8 levels (no "
                                    "zero points)")
        lo, hi = -128, 127
    else:
        lo, hi = 0, 15
        if int(levels.min()) < 0:  # signed -8..7: as 0..15 around the zero point 8
            levels = levels + 8
            lo, hi = 8 - 8, 7 + 8
            zero_const = 8.0
        if weight.zeros is not None:
            z = weight.zeros.to(torch.float32) + zero_const
            if not torch.equal(z, z.round()) or float(z.min()) < 0 or float(z.max()) > 15:
                raise QuantizationError("the cpu integer kernels need int4 zero points in "
                                        "0..15")
            zeros = _tiles(z.to(torch.int8), out)
            zero_const = 0.0
    if int(levels.min()) < lo or int(levels.max()) > hi:
        raise QuantizationError(f"{weight.bits}-bit levels outside the range the integer "
                                f"kernels take")
    n_pad, k_pad = -(-out // TILE) * TILE, groups * gs
    padded = levels.new_zeros(n_pad, k_pad)  # padding levels multiply zero activations
    padded[:out, :inp] = levels
    tiles = n_pad // TILE
    if weight.bits == 8:
        u = (padded + 128).to(torch.uint8).view(tiles, TILE, k_pad // 4, 4)
        packed = u.transpose(1, 2).contiguous().view(tiles, k_pad, TILE)
    else:
        u = padded.to(torch.uint8).view(tiles, TILE, k_pad // 8, 2, 4)
        pairs = u[:, :, :, 0, :] | (u[:, :, :, 1, :] << 4)  # [tiles, 16, K/8, 4]
        packed = pairs.transpose(1, 2).contiguous().view(tiles, k_pad // 2, TILE)
    return PackedQuant(packed, _tiles(half_scales(weight), out), zeros, weight.bits, gs,
                       zero_const, None, A8_BLOCK)


def _int4_blocks(levels: torch.Tensor) -> torch.Tensor:
    """[N_pad, K_pad] levels 0..15 -> uint8 [tiles, K_pad/2, 16]: per tile, blocks of 8 inputs
    as one 32-bit word per output (16 words, 64 bytes); nibble n of the low half holds input
    8b + 2n, nibble n of the high half input 8b + 2n + 1. One 16-bit shift and one mask then
    give the n-th input pair of all 16 outputs (csrc/kernels.h)."""
    n_pad, k_pad = levels.shape
    pairs = levels.to(torch.int64).view(n_pad, k_pad // 8, 4, 2)
    shifts = 4 * torch.arange(4, dtype=torch.int64)
    low = (pairs[..., 0] << shifts).sum(-1)
    high = (pairs[..., 1] << shifts).sum(-1)
    words = (low | (high << 16)).to(torch.int64)
    words = torch.where(words >= 2**31, words - 2**32, words).to(torch.int32)  # same bits
    tiles = words.view(n_pad // TILE, TILE, k_pad // 8).transpose(1, 2).contiguous()
    return tiles.view(torch.uint8).view(n_pad // TILE, k_pad // 2, TILE)


def _tiles(per_group: torch.Tensor, out: int) -> torch.Tensor:
    """[out, groups] -> [tiles, groups, 16], zero rows past ``out``."""
    n_pad = -(-out // TILE) * TILE
    padded = per_group.new_zeros(n_pad, per_group.shape[1])
    padded[:out] = per_group
    return padded.view(n_pad // TILE, TILE, -1).transpose(1, 2).contiguous()
