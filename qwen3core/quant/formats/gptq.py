"""GPTQ checkpoints, 4 and 8 bit (AutoGPTQ / GPTQModel; ``Qwen/Qwen3-30B-A3B-GPTQ-Int4``).

Per linear layer of ``in`` inputs and ``out`` outputs, ``groups`` groups of input columns::

    qweight  int32 [in * bits/32, out]   32/bits levels per word, along the *input* axis
    qzeros   int32 [groups, out * bits/32]  zero points, packed along the output axis
    scales   float [groups, out]
    g_idx    int32 [in]                 the group of each input column (optional)

Levels are packed in order, least significant first, in both tensors. The weight is
``(level - zero) * scale`` with the scale and zero of group ``g_idx[i]``; with ``desc_act``
GPTQ quantized the columns in activation order, so ``g_idx`` is not ``i // group_size``.

Zero points: the original format (``checkpoint_format`` "gptq", a.k.a. v1) stores
``zero - 1`` (an AutoGPTQ quirk every reader undoes with ``+ 1``; a symmetric 4-bit checkpoint
therefore stores 7 for its zero of 8); GPTQModel's "gptq_v2" stores the zero itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from qwen3core.errors import CheckpointError
from qwen3core.quant.formats.bits import Dtypes, shape_mismatches, unpack_int32
from qwen3core.quant.weight import QuantizedWeight

BITS = (4, 8)
ZERO_OFFSET = {"gptq": 1, "gptq_v2": 0}  # added to the stored zero points
SUPPORTED = ("GPTQ: bits 4 or 8, group_size -1 or positive, desc_act true or false, sym true "
             "or false, checkpoint_format 'gptq' or 'gptq_v2', pack_dtype int32")


def unpack_gptq(qweight: torch.Tensor, qzeros: torch.Tensor, scales: torch.Tensor,
                g_idx: torch.Tensor | None, *, bits: int, group_size: int, zero_offset: int,
                name: str = "weight") -> QuantizedWeight:
    """The :class:`QuantizedWeight` [out, in] of one GPTQ linear.

    When every zero point is the midpoint ``2^(bits-1)`` (symmetric quantization) the result is
    symmetric: signed levels and ``zeros=None``, the same numbers. 8-bit levels are stored
    shifted by -128 (levels and zeros alike) so that they fit int8; 4-bit levels stay 0..15.
    ``g_idx`` is kept only where it is not plain ``i // group_size``.
    """
    _, inp = dense_shape(tuple(qweight.shape), tuple(qzeros.shape), tuple(scales.shape),
                           None if g_idx is None else tuple(g_idx.shape), bits, group_size,
                           name)
    size = inp if group_size == -1 else group_size
    levels = unpack_int32(qweight, bits, dim=0).t()  # [out, in]
    zeros = (unpack_int32(qzeros, bits, dim=1) + zero_offset).t()  # [out, groups]
    groups = _column_groups(g_idx, inp, size, scales.shape[0], name)
    mid = 1 << (bits - 1)
    if bool((zeros == mid).all()):
        qzero, shift = None, mid
    else:
        shift = 0 if bits == 4 else mid
        qzero = (zeros - shift).to(torch.int8 if bits == 4 else torch.int16).contiguous()
    return QuantizedWeight(qweight=(levels - shift).to(torch.int8).contiguous(),
                           scales=scales.t().contiguous(), zeros=qzero, group_size=size,
                           bits=bits, g_idx=groups)


def _column_groups(g_idx: torch.Tensor | None, inp: int, size: int, n_groups: int,
                   name: str) -> torch.Tensor | None:
    if g_idx is None:
        return None
    groups = g_idx.to(torch.int64)
    if groups.numel() and (int(groups.min()) < 0 or int(groups.max()) >= n_groups):
        raise CheckpointError(f"{name}: GPTQ g_idx holds groups outside 0..{n_groups - 1}")
    if n_groups == -(-inp // size) and torch.equal(groups, torch.arange(inp) // size):
        return None  # the plain order: kernels need no gather
    return groups


def dense_shape(qweight: tuple[int, ...], qzeros: tuple[int, ...], scales: tuple[int, ...],
                g_idx: tuple[int, ...] | None, bits: int, group_size: int, name: str
                ) -> tuple[int, int]:
    """[out, in] of the weight these tensor shapes describe; CheckpointError if they disagree."""
    if len(qweight) != 2:
        raise CheckpointError(f"{name}: GPTQ qweight must be 2-D [in*bits/32, out], got "
                              f"{list(qweight)}")
    per_word = 32 // bits
    inp, out = qweight[0] * per_word, qweight[1]
    groups = 1 if group_size == -1 else -(-inp // group_size)
    want = {"qzeros": (groups, -(-out // per_word)), "scales": (groups, out)}
    got = {"qzeros": tuple(qzeros), "scales": tuple(scales)}
    if g_idx is not None:
        want["g_idx"], got["g_idx"] = (inp,), tuple(g_idx)
    wrong = shape_mismatches(want, got)
    if wrong:
        raise CheckpointError(f"{name}: GPTQ tensors disagree with qweight {list(qweight)} "
                              f"(bits={bits}, in={inp}, out={out}, group_size={group_size}): "
                              + "; ".join(wrong))
    return out, inp


@dataclass(frozen=True)
class GptqFormat:
    bits: int
    group_size: int  # -1: one group per output channel
    desc_act: bool
    zero_offset: int
    name = "gptq"
    marker = "qweight"
    parts = ("qweight", "qzeros", "scales")
    stored_dtypes: ClassVar[Dtypes] = {"qweight": (torch.int32,), "qzeros": (torch.int32,),
                     "g_idx": (torch.int32, torch.int64)}
    has_levels = True  # unpack gives a QuantizedWeight (else a dense tensor)
    optional: tuple[str, ...] = ("g_idx",)

    @classmethod
    def from_config(cls, config: dict[str, Any], where: str) -> GptqFormat:
        problems = []
        bits = config.get("bits")
        if bits not in BITS:
            problems.append(f"bits {bits!r}")
        group_size = config.get("group_size", -1)
        if not isinstance(group_size, int) or (group_size <= 0 and group_size != -1):
            problems.append(f"group_size {group_size!r}")
        layout = str(config.get("checkpoint_format", config.get("format", "gptq"))).lower()
        if layout not in ZERO_OFFSET:
            problems.append(f"checkpoint_format {layout!r} (a kernel-specific repacking)")
        pack_dtype = str(config.get("pack_dtype", "int32")).removeprefix("torch.")
        if pack_dtype != "int32":
            problems.append(f"pack_dtype {pack_dtype!r} (levels packed in other than int32)")
        for flag in ("desc_act", "sym"):
            if not isinstance(config.get(flag, False), bool):
                problems.append(f"{flag} {config.get(flag)!r}")
        if problems:
            raise CheckpointError(f"{where}: unsupported GPTQ quantization_config "
                                  f"({', '.join(problems)}); supported: {SUPPORTED}")
        return cls(bits, group_size, bool(config.get("desc_act", False)), ZERO_OFFSET[layout])

    def dense_shape(self, shapes: dict[str, tuple[int, ...]], name: str) -> tuple[int, int]:
        if self.desc_act and "g_idx" not in shapes:
            raise CheckpointError(f"{name}: the config says desc_act true but the checkpoint "
                                  "has no g_idx for this layer, so its column order is unknown")
        return dense_shape(shapes["qweight"], shapes["qzeros"], shapes["scales"],
                           shapes.get("g_idx"), self.bits, self.group_size, name)

    def unpack(self, tensors: dict[str, torch.Tensor], name: str) -> QuantizedWeight:
        return unpack_gptq(tensors["qweight"], tensors["qzeros"], tensors["scales"],
                           tensors.get("g_idx"), bits=self.bits, group_size=self.group_size,
                           zero_offset=self.zero_offset, name=name)
