"""Quantized weights: the one representation every scheme, kernel and checkpoint format shares.

See :mod:`qwen3core.quant.weight`. Checkpoint formats (AWQ, GPTQ, ...) unpack into a
:class:`QuantizedWeight`; schemes (:mod:`qwen3core.quant.schemes`) quantize into it; kernels
pack it into their own layout.
"""

from qwen3core.quant.registry import resolve_scheme, scheme_families
from qwen3core.quant.schemes import QuantizationError, QuantScheme, SchemeFamily
from qwen3core.quant.weight import QuantizedLinearModule, QuantizedWeight

__all__ = ["QuantScheme", "QuantizationError", "QuantizedLinearModule", "QuantizedWeight",
           "SchemeFamily", "resolve_scheme", "scheme_families"]
