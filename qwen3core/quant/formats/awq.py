"""AWQ checkpoints, 4-bit "gemm" packing (AutoAWQ's ``WQLinear_GEMM``; ``Qwen/Qwen3-*-AWQ``).

Per linear layer of ``in`` inputs and ``out`` outputs, groups of ``group_size`` input columns::

    qweight  int32 [in, out/8]          eight 4-bit levels per word, columns interleaved
    qzeros   int32 [in/group_size, out/8]  zero points, packed the same way
    scales   float [in/group_size, out]

The matrix is stored transposed ([in, out]) and, inside each word, the level in bits
``4k..4k+3`` belongs to output column ``8w + AWQ_ORDER[k]`` (AutoAWQ packs the columns in the
order 0, 2, 4, 6, 1, 3, 5, 7 to suit its CUDA dequantiser). The weight is
``(level - zero) * scale``; AWQ always has zero points (``zero_point: true``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from qwen3core.errors import CheckpointError
from qwen3core.quant.formats.bits import Dtypes, shape_mismatches, unpack_int32
from qwen3core.quant.weight import QuantizedWeight

BITS = 4
PER_WORD = 32 // BITS
AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)  # word slot k holds column AWQ_ORDER[k] of its eight
SUPPORTED = "AWQ: bits 4, version 'gemm', zero_point true, any group_size"


def column_order(out_features: int) -> torch.Tensor:
    """Index that turns the unpacked, interleaved columns into natural order: column ``j``
    of the weight sits at slot ``AWQ_ORDER.index(j % 8)`` of word ``j // 8``."""
    inverse = torch.tensor([AWQ_ORDER.index(j) for j in range(PER_WORD)])
    words = torch.arange(out_features // PER_WORD).unsqueeze(1) * PER_WORD
    return (words + inverse).reshape(-1)


def unpack_awq(qweight: torch.Tensor, qzeros: torch.Tensor, scales: torch.Tensor,
               group_size: int, name: str = "weight") -> QuantizedWeight:
    """The :class:`QuantizedWeight` [out, in] (levels 0..15, zero points) of one AWQ linear."""
    dense_shape(qweight.shape, qzeros.shape, scales.shape, group_size, name)
    order = column_order(qweight.shape[1] * PER_WORD)
    levels = unpack_int32(qweight, BITS, dim=1)[:, order]  # [in, out]
    zeros = unpack_int32(qzeros, BITS, dim=1)[:, order]  # [groups, out]
    return QuantizedWeight(qweight=levels.t().to(torch.int8).contiguous(),
                           scales=scales.t().contiguous(),
                           zeros=zeros.t().to(torch.int8).contiguous(),
                           group_size=group_size, bits=BITS)


def dense_shape(qweight: tuple[int, ...], qzeros: tuple[int, ...], scales: tuple[int, ...],
                group_size: int, name: str) -> tuple[int, int]:
    """[out, in] of the weight these tensor shapes describe; CheckpointError if they disagree."""
    if len(qweight) != 2:
        raise CheckpointError(f"{name}: AWQ qweight must be 2-D [in, out/8], got {list(qweight)}")
    inp, out = qweight[0], qweight[1] * PER_WORD
    groups = -(-inp // group_size)
    want = {"qzeros": (groups, out // PER_WORD), "scales": (groups, out)}
    got = {"qzeros": tuple(qzeros), "scales": tuple(scales)}
    wrong = shape_mismatches(want, got)
    if wrong:
        raise CheckpointError(f"{name}: AWQ tensors disagree with qweight {list(qweight)} "
                              f"(in={inp}, out={out}, group_size={group_size}): "
                              + "; ".join(wrong))
    return out, inp


@dataclass(frozen=True)
class AwqFormat:
    group_size: int
    name = "awq"
    marker = "qweight"  # a key ``<linear>.qweight`` marks a quantized linear
    parts = ("qweight", "qzeros", "scales")
    stored_dtypes: ClassVar[Dtypes] = {"qweight": (torch.int32,), "qzeros": (torch.int32,)}
    has_levels = True  # unpack gives a QuantizedWeight (else a dense tensor)
    optional: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, config: dict[str, Any], where: str) -> AwqFormat:
        problems = []
        if config.get("bits", config.get("w_bit")) != BITS:
            problems.append(f"bits {config.get('bits', config.get('w_bit'))!r}")
        version = str(config.get("version", "gemm")).lower()
        if version != "gemm":
            problems.append(f"version {version!r} (its packing differs from gemm's)")
        if config.get("zero_point", True) is not True:
            problems.append("zero_point false")
        backend = str(config.get("backend", "autoawq")).lower()
        if backend not in ("autoawq", "auto_awq"):
            problems.append(f"backend {backend!r}")
        group_size = config.get("group_size", config.get("q_group_size"))
        if not isinstance(group_size, int) or group_size <= 0:
            problems.append(f"group_size {group_size!r}")
        if problems:
            raise CheckpointError(f"{where}: unsupported AWQ quantization_config "
                                  f"({', '.join(problems)}); supported: {SUPPORTED}")
        return cls(group_size)

    def dense_shape(self, shapes: dict[str, tuple[int, ...]], name: str) -> tuple[int, int]:
        return dense_shape(shapes["qweight"], shapes["qzeros"], shapes["scales"],
                           self.group_size, name)

    def unpack(self, tensors: dict[str, torch.Tensor], name: str) -> QuantizedWeight:
        return unpack_awq(tensors["qweight"], tensors["qzeros"], tensors["scales"],
                          self.group_size, name)
