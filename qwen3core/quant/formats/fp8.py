"""Fine-grained FP8 checkpoints (DeepSeek-V3 style; ``Qwen/Qwen3-*-FP8``).

Per linear layer ``[out, in]``::

    weight            float8_e4m3fn [out, in]
    weight_scale_inv  float [ceil(out/bo), ceil(in/bi)]   one scale per bo x bi block

with ``weight_block_size: [bo, bi]`` in the config (Qwen: [128, 128]) and the weight
``weight[o, i] * weight_scale_inv[o // bo, i // bi]`` (despite its name, the stored value
multiplies). ``activation_scheme: dynamic`` means activations are quantized at run time by
kernels that want it; the weights alone define the numbers.

FP8 values are not integer levels, so they have no :class:`QuantizedWeight` form: for now a
loader dequantizes them to the load dtype (the checkpoint's bf16 by default), and the model
runs dense at that dtype. An FP8 kernel would take ``weight`` and the block scales directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from qwen3core.errors import CheckpointError
from qwen3core.quant.formats.bits import Dtypes

SUPPORTED = ("FP8: fmt 'e4m3', activation_scheme 'dynamic', weight_block_size [bo, bi] "
             "(block-wise scales)")


def dequantize_fp8(weight: torch.Tensor, scale_inv: torch.Tensor, block: tuple[int, int],
                   dtype: torch.dtype = torch.float32, name: str = "weight") -> torch.Tensor:
    """The [out, in] weight in ``dtype`` (computed in float32, rounded once)."""
    dense_shape(tuple(weight.shape), tuple(scale_inv.shape), block, name)
    out, inp = weight.shape
    scales = scale_inv.to(torch.float32)
    scales = scales.repeat_interleave(block[0], 0)[:out].repeat_interleave(block[1], 1)[:, :inp]
    return (weight.to(torch.float32) * scales).to(dtype)


def dense_shape(weight: tuple[int, ...], scale_inv: tuple[int, ...], block: tuple[int, int],
                name: str) -> tuple[int, int]:
    if len(weight) != 2:
        raise CheckpointError(f"{name}: an FP8 weight must be 2-D [out, in], got {list(weight)}")
    want = (-(-weight[0] // block[0]), -(-weight[1] // block[1]))
    if tuple(scale_inv) != want:
        raise CheckpointError(f"{name}: weight_scale_inv is {list(scale_inv)}, but a "
                              f"{list(weight)} weight in {list(block)} blocks needs {list(want)}")
    return weight[0], weight[1]


@dataclass(frozen=True)
class Fp8Format:
    block: tuple[int, int]
    name = "fp8"
    marker = "weight_scale_inv"
    parts = ("weight", "weight_scale_inv")
    stored_dtypes: ClassVar[Dtypes] = {"weight": (torch.float8_e4m3fn,)}
    has_levels = False  # unpack gives a QuantizedWeight (else a dense tensor)
    optional: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, config: dict[str, Any], where: str) -> Fp8Format:
        problems = []
        fmt = str(config.get("fmt", "e4m3")).lower()
        if fmt != "e4m3":
            problems.append(f"fmt {fmt!r}")
        scheme = str(config.get("activation_scheme", "dynamic")).lower()
        if scheme != "dynamic":
            problems.append(f"activation_scheme {scheme!r} (static input scales)")
        block = config.get("weight_block_size")
        if not (isinstance(block, list | tuple) and len(block) == 2
                and all(isinstance(b, int) and b > 0 for b in block)):
            problems.append(f"weight_block_size {block!r} (per-tensor FP8 has none)")
        if problems:
            raise CheckpointError(f"{where}: unsupported FP8 quantization_config "
                                  f"({', '.join(problems)}); supported: {SUPPORTED}")
        return cls((block[0], block[1]))

    def dense_shape(self, shapes: dict[str, tuple[int, ...]], name: str) -> tuple[int, int]:
        return dense_shape(shapes["weight"], shapes["weight_scale_inv"], self.block, name)

    def unpack(self, tensors: dict[str, torch.Tensor], name: str) -> torch.Tensor:
        """The dense float32 weight: FP8 has no integer-level form (see the module doc)."""
        return dequantize_fp8(tensors["weight"], tensors["weight_scale_inv"], self.block,
                              name=name)
