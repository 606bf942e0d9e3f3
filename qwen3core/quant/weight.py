"""A group-quantized linear weight in its plain, unpacked form.

Every quantized format is unpacked into this one form before a kernel repacks it, so that
"what number does this weight stand for" is written down exactly once (:meth:`dequantize`)::

    w[o, i] = (qweight[o, i] - zeros[o, g(i)]) * scales[o, g(i)]

with ``g(i) = g_idx[i]`` when ``g_idx`` is given (GPTQ with ``desc_act``: groups follow the
activation order, not the column order) and ``g(i) = i // group_size`` otherwise. Symmetric
schemes have no zero points (``zeros is None``: zero is 0).

``act_block`` set (the ``w8a8`` / ``w4a8`` schemes) says that the activations this weight
multiplies are themselves quantized first, dynamically, to int8 per block of ``act_block``
inputs (:mod:`qwen3core.quant.activations`). The product is then
``quantize_activations(x) @ dequantize().T``: the weight carries the whole definition of
the number its product stands for, so every module that adopts it computes the same one.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol, runtime_checkable

import torch


@dataclass(frozen=True)
class QuantizedWeight:
    qweight: torch.Tensor  # [out, in] integer levels, int8 storage (int4: -8..7 or 0..15)
    scales: torch.Tensor  # [out, n_groups] floating point
    zeros: torch.Tensor | None  # [out, n_groups] in the level domain, or None (symmetric)
    group_size: int  # input columns per group; in_features for one group per output channel
    bits: int  # 4 or 8: the range the levels were drawn from
    g_idx: torch.Tensor | None = None  # [in] int64 group of each input column, or None
    act_block: int | None = None  # activations quantized to int8 per this many inputs, or None

    def __post_init__(self) -> None:
        out, inp = self.qweight.shape
        groups = self.scales.shape[1] if self.scales.dim() == 2 else -1
        problems = []
        if self.bits not in (4, 8):
            problems.append(f"bits must be 4 or 8, got {self.bits}")
        if self.scales.shape[0] != out:
            problems.append(f"scales rows {self.scales.shape[0]} != weight rows {out}")
        if self.g_idx is None and groups != -(-inp // self.group_size):
            problems.append(f"{groups} scale groups for {inp} columns in groups of "
                            f"{self.group_size}")
        if self.zeros is not None and self.zeros.shape != self.scales.shape:
            problems.append(f"zeros {tuple(self.zeros.shape)} != scales "
                            f"{tuple(self.scales.shape)}")
        if self.g_idx is not None and self.g_idx.shape != (inp,):
            problems.append(f"g_idx shape {tuple(self.g_idx.shape)} != ({inp},)")
        if self.act_block is not None and self.act_block < 1:
            problems.append(f"act_block must be positive or None, got {self.act_block}")
        if self.act_block is not None and self.g_idx is not None:
            problems.append("activation quantization blocks follow the column order; a g_idx "
                            "(activation-order groups) cannot be combined with them")
        if problems:
            raise ValueError("malformed QuantizedWeight: " + "; ".join(problems))

    @property
    def out_features(self) -> int:
        return self.qweight.shape[0]

    @property
    def in_features(self) -> int:
        return self.qweight.shape[1]

    def column_groups(self) -> torch.Tensor:
        """[in] int64: the group each input column belongs to."""
        if self.g_idx is not None:
            return self.g_idx.to(torch.int64)
        return torch.arange(self.in_features, device=self.qweight.device) // self.group_size

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The weight these levels stand for, [out, in] in ``dtype`` (computed in float32, or
        float64 for a float64 request, then rounded once)."""
        work = torch.float64 if dtype == torch.float64 else torch.float32
        groups = self.column_groups()
        scales = self.scales.to(work).index_select(1, groups)  # [out, in]
        levels = self.qweight.to(work)
        if self.zeros is not None:
            levels = levels - self.zeros.to(work).index_select(1, groups)
        return (levels * scales).to(dtype)

    def to(self, device: torch.device | str) -> QuantizedWeight:
        """The same weight with its tensors on ``device``."""
        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device)

        return replace(self, qweight=move(self.qweight), scales=move(self.scales),
                       zeros=move(self.zeros), g_idx=move(self.g_idx))


@runtime_checkable
class QuantizedLinearModule(Protocol):
    """A linear module that can take its weight in quantized form (instead of ``weight``)."""

    def load_quantized(self, weight: QuantizedWeight) -> None:
        """Adopt ``weight`` (repacking it into the module's own layout) in place of a dense
        weight; called by checkpoint loaders and quantize-on-load."""

    # Optional (looked up with getattr, so not part of the runtime check):
    # ``load_quantized_rows(scheme, rows)``: the same result as
    # ``load_quantized(quantize_rows(scheme, (out, in), rows))``, the weight given as its rows
    # (``rows(slice)``, each valid until the next call) for the module to quantize and pack a
    # chunk at a time (docs/hooks.md).
