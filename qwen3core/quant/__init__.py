"""Quantized weights: the one representation every scheme, kernel and checkpoint format shares.

See :mod:`qwen3core.quant.weight`. Checkpoint formats (AWQ, GPTQ, ...) unpack into a
:class:`QuantizedWeight`; schemes quantize into it; kernels pack it into their own layout.
"""

from qwen3core.quant.weight import QuantizedLinearModule, QuantizedWeight

__all__ = ["QuantizedLinearModule", "QuantizedWeight"]
