"""Quantization schemes: how a dense weight becomes a :class:`QuantizedWeight`, and back.

A scheme is a plugin like any backend (hook ``qwen3core_quant_scheme``, see
:mod:`qwen3core.hookspecs`): it says

* how to quantize a weight (:meth:`QuantScheme.quantize`, the float32 weight in, levels,
  scales and zero points out; round to nearest, ties to even);
* how its tensors are stored in a checkpoint (:meth:`QuantScheme.to_checkpoint` and
  :meth:`QuantScheme.from_checkpoint`: ``<prefix>.qweight`` packed levels,
  ``<prefix>.scales``, ``<prefix>.zeros``), and the ``quantization_config`` naming it;
* its numerics, defined once: :meth:`QuantizedWeight.dequantize`, then the eager product (the
  ``eager`` linear's :meth:`load_quantized` path). Kernels are further implementations of the
  same numbers, held to the equivalence suite.

The first-party schemes:

``int8``  symmetric, levels -127..127, ``w = q * s``, one float16 scale per group of
          ``group_size`` inputs (32) or per output channel (``group_size=None``).
``int4``  levels 0..15 with an integer zero point per group (``w = (q - z) * s``), or
          symmetric levels -8..7 (``zero_point=False``); groups of 32..128 inputs.
``w8a8``  the ``int8`` weight, and activations quantized dynamically to int8 per block of 32
          inputs (:mod:`qwen3core.quant.activations`), so kernels multiply integers.
``w4a8``  the ``int4`` weight with those int8 activations.

The weight tensors of ``w8a8`` / ``w4a8`` are those of ``int8`` / ``int4`` (same levels,
scales, zero points, checkpoint tensors); only ``act_block`` differs, in the scheme and in
every :class:`QuantizedWeight` it makes.

Scales are float16 (as in llama.cpp's q8_0/q4_0, AWQ and GPTQ): half the bytes of float32 and,
for weights of ordinary size, no loss a bfloat16 model would notice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from qwen3core.errors import Qwen3CoreError
from qwen3core.quant.activations import ACT_BLOCK
from qwen3core.quant.weight import QuantizedWeight

#: ``quant_method`` in the ``quantization_config`` of checkpoints this package writes.
QUANT_METHOD = "qwen3core"
SCALE_DTYPE = torch.float16


class QuantizationError(Qwen3CoreError, ValueError):
    """An unknown scheme, bad scheme options, or a weight a scheme cannot take."""


@dataclass(frozen=True)
class QuantScheme:
    """One configured scheme: ``name`` with its bits, group size and zero points."""

    name: str
    bits: int
    group_size: int | None  # None: one group per output channel
    zero_point: bool
    act_block: int | None = None  # activations quantized to int8 per this many inputs, or None

    def __post_init__(self) -> None:
        if self.act_block is not None and self.act_block != ACT_BLOCK:
            raise QuantizationError(f"scheme {self.name!r}: activations are quantized per "
                                    f"block of {ACT_BLOCK} inputs, not {self.act_block}")
        if self.bits not in (4, 8):
            raise QuantizationError(f"scheme {self.name!r}: bits must be 4 or 8")
        if self.group_size is not None and (self.group_size < 2 or self.group_size % 2):
            raise QuantizationError(
                f"scheme {self.name!r}: group_size must be an even number >= 2 (or None for "
                f"one group per output channel), got {self.group_size}")
        if self.bits == 8 and self.zero_point:
            raise QuantizationError(f"scheme {self.name!r}: 8-bit levels are symmetric (no zero "
                                    "points)")

    def __str__(self) -> str:
        group = "channel" if self.group_size is None else f"g{self.group_size}"
        acts = "" if self.act_block is None else f", int8 activations per {self.act_block}"
        return f"{self.name}({group}{', zero points' if self.zero_point else ''}{acts})"

    # -- numerics -----------------------------------------------------------------------------
    def levels(self) -> tuple[int, int]:
        """The smallest and largest level."""
        if self.zero_point:
            return 0, (1 << self.bits) - 1
        half = 1 << (self.bits - 1)
        return (-(half - 1), half - 1) if self.bits == 8 else (-half, half - 1)

    def group_for(self, in_features: int) -> int:
        return in_features if self.group_size is None else self.group_size

    @torch.no_grad()
    def quantize(self, weight: torch.Tensor) -> QuantizedWeight:
        """[out, in] floating weight -> its levels (computed in float32)."""
        if weight.dim() != 2 or not weight.is_floating_point():
            raise QuantizationError(f"{self} quantizes 2-d floating weights, got "
                                    f"{tuple(weight.shape)} {weight.dtype}")
        out, inp = weight.shape
        gs = self.group_for(inp)
        groups = -(-inp // gs)
        w = weight.detach().to(torch.float32)
        if not bool(torch.isfinite(w).all()):
            raise QuantizationError(f"{self} cannot quantize a weight holding a NaN or an "
                                    "infinity")
        if groups * gs != inp:  # a last, shorter group: pad with zeros that quantize to zero
            w = torch.cat([w, w.new_zeros(out, groups * gs - inp)], dim=1)
        w = w.view(out, groups, gs)
        lo, hi = self.levels()
        if self.zero_point:
            w_min = w.amin(dim=2).clamp(max=0.0)
            w_max = w.amax(dim=2).clamp(min=0.0)
            scales = ((w_max - w_min) / (hi - lo)).to(SCALE_DTYPE)
            s = _nonzero(scales.to(torch.float32))
            zeros = torch.round(-w_min / s).clamp(lo, hi)
            q = torch.round(w / s[..., None]) + zeros[..., None]
            zeros_out = zeros.to(torch.int8)
        else:
            # Symmetric: the largest magnitude maps to the largest positive level.
            scales = (w.abs().amax(dim=2) / hi).to(SCALE_DTYPE)
            s = _nonzero(scales.to(torch.float32))
            q = torch.round(w / s[..., None])
            zeros_out = None
        q = q.clamp(lo, hi).to(torch.int8).view(out, groups * gs)[:, :inp].contiguous()
        return QuantizedWeight(q, scales, zeros_out, gs, self.bits, act_block=self.act_block)

    def accepts(self, weight: QuantizedWeight) -> str | None:
        """Why ``weight`` is not of this scheme, or None."""
        if weight.bits != self.bits:
            return f"{weight.bits}-bit levels, the scheme has {self.bits}"
        if (weight.zeros is not None) != self.zero_point:
            return "zero points where the scheme has none" if weight.zeros is not None else (
                "no zero points where the scheme has them")
        if weight.g_idx is not None:
            return "a g_idx (activation-order groups)"
        if weight.act_block != self.act_block:
            return (f"activation blocks of {weight.act_block} (None: float activations), the "
                    f"scheme has {self.act_block}")
        return None

    # -- checkpoint storage -------------------------------------------------------------------
    def to_checkpoint(self, weight: QuantizedWeight) -> dict[str, torch.Tensor]:
        """suffix -> tensor, stored as ``<prefix>.<suffix>``. int8: ``qweight`` int8
        [out, in]; int4: ``qweight`` uint8 [out, ceil(in/2)], input 2i in the low nibble and
        2i+1 in the high one, levels offset to 0..15; ``scales`` float16 [out, groups];
        ``zeros`` int8 [out, groups] when the scheme has zero points."""
        why = self.accepts(weight)
        if why is not None:
            raise QuantizationError(f"{self} cannot store a weight with {why}")
        q = weight.qweight.to(torch.int16)
        if self.bits == 4:
            q = q - self.levels()[0]  # 0..15
            if q.shape[1] % 2:
                q = torch.cat([q, q.new_zeros(q.shape[0], 1)], dim=1)
            packed = (q[:, 0::2] | (q[:, 1::2] << 4)).to(torch.uint8)
        else:
            packed = q.to(torch.int8)
        out = {"qweight": packed.contiguous(), "scales": weight.scales.to(SCALE_DTYPE)}
        if weight.zeros is not None:
            out["zeros"] = weight.zeros.to(torch.int8)
        return out

    def from_checkpoint(self, tensors: Mapping[str, torch.Tensor], in_features: int
                        ) -> QuantizedWeight:
        """The inverse of :meth:`to_checkpoint` (``tensors`` keyed by suffix)."""
        missing = [k for k in self.checkpoint_suffixes() if k not in tensors]
        if missing:
            raise QuantizationError(f"{self}: missing {', '.join(missing)}")
        packed = tensors["qweight"]
        if self.bits == 4:
            p = packed.to(torch.int16)
            q = torch.stack([p & 0xF, p >> 4], dim=2).view(p.shape[0], -1)[:, :in_features]
            q = (q + self.levels()[0]).to(torch.int8)
        else:
            q = packed.to(torch.int8)
        if q.shape[1] != in_features:
            raise QuantizationError(f"{self}: qweight holds {q.shape[1]} inputs, expected "
                                    f"{in_features}")
        zeros = tensors["zeros"].to(torch.int8) if self.zero_point else None
        return QuantizedWeight(q.contiguous(), tensors["scales"].to(SCALE_DTYPE), zeros,
                               self.group_for(in_features), self.bits, act_block=self.act_block)

    def checkpoint_suffixes(self) -> tuple[str, ...]:
        return ("qweight", "scales", "zeros") if self.zero_point else ("qweight", "scales")

    def checkpoint_shapes(self, out: int, inp: int) -> dict[str, tuple[int, ...]]:
        groups = -(-inp // self.group_for(inp))
        shapes = {"qweight": (out, -(-inp // 2) if self.bits == 4 else inp),
                  "scales": (out, groups)}
        if self.zero_point:
            shapes["zeros"] = (out, groups)
        return shapes

    def quantization_config(self, *, head: bool) -> dict[str, Any]:
        config = {"quant_method": QUANT_METHOD, "scheme": self.name, "bits": self.bits,
                  "group_size": self.group_size, "zero_point": self.zero_point, "lm_head": head}
        if self.act_block is not None:
            # Dynamic: no stored activation scales, only how they are computed.
            config["activations"] = {"bits": 8, "block_size": self.act_block,
                                     "symmetric": True, "dynamic": True}
        return config

    # -- sizes --------------------------------------------------------------------------------
    def nbytes(self, out: int, inp: int) -> int:
        """Bytes of one [out, in] weight in this scheme (levels, scales, zero points)."""
        groups = -(-inp // self.group_for(inp))
        levels = out * (-(-inp // 2) if self.bits == 4 else inp)
        return levels + out * groups * (2 + (1 if self.zero_point else 0))


def _nonzero(scales: torch.Tensor) -> torch.Tensor:
    # An all-zero group: any scale reproduces it; 1 avoids 0/0.
    return torch.where(scales == 0, torch.ones_like(scales), scales)


@dataclass(frozen=True)
class SchemeFamily:
    """What a scheme plugin provides: a name and how to configure it from options."""

    name: str
    summary: str
    default_group_size: int | None
    default_zero_point: bool
    bits: int
    allowed_group_sizes: tuple[int | None, ...]
    act_block: int | None = None

    def make(self, group_size: int | None | str = "default",
             zero_point: bool | None = None) -> QuantScheme:
        gs = self.default_group_size if group_size == "default" else group_size
        if gs not in self.allowed_group_sizes:
            allowed = ", ".join("per channel" if g is None else str(g)
                                for g in self.allowed_group_sizes)
            raise QuantizationError(f"scheme {self.name!r} takes group sizes {allowed}; got "
                                    f"{gs}")
        zp = self.default_zero_point if zero_point is None else zero_point
        return QuantScheme(self.name, self.bits, gs, zp, self.act_block)


INT8 = SchemeFamily("int8", "symmetric 8-bit, float16 scale per 32 inputs or per channel",
                    32, False, 8, (32, 64, 128, None))
INT4 = SchemeFamily("int4", "4-bit, float16 scale and integer zero point per 32-128 inputs",
                    32, True, 4, (32, 64, 128))
W8A8 = SchemeFamily("w8a8", "int8 weights (as int8) times int8 activations quantized per 32 "
                    "inputs on the fly", 32, False, 8, (32, 64, 128, None), ACT_BLOCK)
W4A8 = SchemeFamily("w4a8", "int4 weights (as int4) times int8 activations quantized per 32 "
                    "inputs on the fly", 32, True, 4, (32, 64, 128), ACT_BLOCK)
