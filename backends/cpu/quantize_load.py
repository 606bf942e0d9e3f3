"""Quantize-on-load for the cpu backend: quantize and pack a weight a chunk of rows at a time.

:meth:`CpuLinear.load_quantized_rows <.linear.CpuLinear.load_quantized_rows>` takes a weight as
its rows (drawn or read a chunk at a time, see :mod:`qwen3core.quant.apply`) and packs it with
no copy of the whole weight but the final tiles:

* the first-party schemes are quantized by the C++ operator ``qwen3core_cpu::quantize_groups``
  (``csrc/quantize_op.cpp``): the reference's operations (:meth:`QuantScheme.quantize`) in one
  pass over the rows, with none of its float32 temporaries; the two are tested bit-identical
  (tests/quant/test_quantize_op.py). A scheme of another kind (a plugin's) quantizes itself;
* each chunk is packed (:func:`.quant_linear.pack_quantized`) and copied into the final tiles:
  the same tiles as the whole weight packed at once (outputs are packed independently, and
  every chunk is a whole number of 16-output tiles).

Peak memory per weight is therefore its packed size plus one chunk's rows and levels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import torch

from qwen3core.quant.apply import chunk_rows
from qwen3core.quant.schemes import QuantizationError, QuantScheme
from qwen3core.quant.weight import QuantizedWeight

from .build import load_kernels
from .quant_linear import TILE, PackedQuant, pack_quantized

FAST_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def quantize(scheme: QuantScheme, weight: torch.Tensor) -> QuantizedWeight:
    """``scheme.quantize(weight)``: by the C++ operator for the first-party schemes (the same
    bits), by the scheme itself otherwise."""
    if (type(scheme).quantize is not QuantScheme.quantize or weight.dim() != 2
            or weight.dtype not in FAST_DTYPES or weight.device.type != "cpu"):
        return scheme.quantize(weight)
    load_kernels()
    gs = scheme.group_for(weight.shape[1])
    lo, hi = scheme.levels()
    try:
        q, scales, zeros = torch.ops.qwen3core_cpu.quantize_groups(weight, gs, lo, hi,
                                                                   scheme.zero_point)
    except RuntimeError as exc:
        if "NaN or an infinity" in str(exc):
            raise QuantizationError(f"{scheme} cannot quantize a weight holding a NaN or an "
                                    "infinity") from None
        raise
    return QuantizedWeight(q, scales, zeros if scheme.zero_point else None, gs, scheme.bits,
                           act_block=scheme.act_block)


@torch.no_grad()
def pack_rows(scheme: QuantScheme, shape: tuple[int, int],
              rows: Callable[[slice], torch.Tensor]) -> PackedQuant | None:
    """The packed weight ``scheme`` makes of the [out, in] weight whose rows
    ``rows(slice(start, stop))`` gives, a chunk of rows at a time; None where a chunk packs in
    another layout than the first (signed int4 levels: a chunk with no negative level packs
    without the +8 offset of the others), for the caller to pack the whole weight."""
    out, inp = shape
    step = chunk_rows(inp)
    if step % TILE:
        raise AssertionError(f"chunks of {step} rows split a tile")
    if step >= out:
        return pack_quantized(quantize(scheme, rows(slice(0, out))))
    stacked = first = None
    for start in range(0, out, step):
        stop = min(out, start + step)
        weight = quantize(scheme, rows(slice(start, stop)))
        # The +8 offset of signed int4 levels moves the zero points too: part of the layout.
        signed = weight.bits == 4 and weight.qweight.numel() and int(weight.qweight.min()) < 0
        part = pack_quantized(weight)
        del weight
        if first is None:
            first, first_signed = part, signed
            tiles = -(-out // TILE)
            stacked = replace(part, **{
                name: getattr(part, name).new_empty(tiles, *getattr(part, name).shape[1:])
                for name in ("levels", "scales", "zeros") if getattr(part, name).numel()})
        elif _layout(part) != _layout(first) or signed != first_signed:
            return None  # e.g. signed int4 with no negative level in one chunk: no +8 offset
        t0 = start // TILE
        for name in ("levels", "scales", "zeros"):
            value = getattr(part, name)
            if value.numel():
                getattr(stacked, name)[t0:t0 + value.shape[0]] = value
        del part
    return stacked


def _layout(part: PackedQuant) -> tuple:
    """Every field of a packed part but its tensors' tile counts."""
    return (part.bits, part.group_size, part.zero_const, part.act_block, part.levels.shape[1:],
            part.scales.shape[1:], part.zeros.shape[1:], part.zeros.numel() > 0,
            None if part.perm is None else part.perm.tolist())
