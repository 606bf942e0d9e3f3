"""The published quantized checkpoint formats: pure functions from a checkpoint's tensors to a
:class:`~qwen3core.quant.QuantizedWeight` (or, for FP8, a dense weight), one file per format.

Each format class is built from a ``quantization_config`` (``from_config`` raises
:class:`~qwen3core.errors.CheckpointError` for options it cannot read) and names the tensors of
one quantized linear: ``marker`` is the key suffix that marks one, ``parts`` the suffixes it
needs, ``optional`` those it may have. ``qwen3core.checkpoint.quantized`` does the rest.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch

from qwen3core.quant.formats.awq import AwqFormat, unpack_awq
from qwen3core.quant.formats.fp8 import Fp8Format, dequantize_fp8
from qwen3core.quant.formats.gptq import GptqFormat, unpack_gptq
from qwen3core.quant.weight import QuantizedWeight


class CheckpointFormat(Protocol):
    name: str
    marker: str
    parts: tuple[str, ...]
    optional: tuple[str, ...]
    stored_dtypes: dict[str, tuple[torch.dtype, ...]]  # part -> the dtypes it may be stored in
    has_levels: bool  # unpack gives a QuantizedWeight; False: a dense float32 weight (FP8)

    def dense_shape(self, shapes: dict[str, tuple[int, ...]], name: str) -> tuple[int, int]:
        """[out, in] from the parts' shapes (header only); CheckpointError if inconsistent."""

    def unpack(self, tensors: dict[str, torch.Tensor], name: str
               ) -> QuantizedWeight | torch.Tensor:
        """One linear's parts (suffix -> stored tensor) -> its weight."""


# quant_method -> format class; the order is the order errors list them in
FORMATS: dict[str, Any] = {"awq": AwqFormat, "gptq": GptqFormat, "fp8": Fp8Format}

__all__ = ["FORMATS", "AwqFormat", "CheckpointFormat", "Fp8Format", "GptqFormat",
           "dequantize_fp8", "unpack_awq", "unpack_gptq"]
