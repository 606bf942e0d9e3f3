"""The plain bias-free linear layer, and the reference numerics of every quantization scheme.

With a dense weight it is ``F.linear``. After :meth:`Linear.load_quantized` it holds the
:class:`~qwen3core.quant.QuantizedWeight` as is (levels, scales, zero points; the ``weight``
parameter is gone) and computes, readably and slowly, what every quantized kernel must
reproduce: the weight dequantized in float32 (float64 for float64 activations), the product in
that precision, rounded once to the activations' dtype. A weight with ``act_block`` (the
``w8a8`` / ``w4a8`` schemes) multiplies the activations' int8 quantization instead of the
activations themselves (:func:`qwen3core.quant.activations.quantize_activations`, computed in
float32 from x rounded to float32).
"""

import torch
from torch import nn
from torch.nn import functional as F

from qwen3core.quant.activations import fake_quantize_activations
from qwen3core.quant.weight import QuantizedWeight


def quantized_reference(x: torch.Tensor, weight: QuantizedWeight) -> torch.Tensor:
    """``x @ dequantize(weight).T`` in float32 (float64 for float64 x), cast to x's dtype;
    with ``weight.act_block``, x replaced by its int8 quantization ``q * s`` first."""
    work = torch.float64 if x.dtype == torch.float64 else torch.float32
    xw = x.to(work)
    if weight.act_block is not None:
        xw = fake_quantize_activations(x, weight.act_block, work)
    return F.linear(xw, weight.dequantize(work)).to(x.dtype)


def check_quantized_shape(module: nn.Module, weight: QuantizedWeight) -> None:
    if (weight.out_features, weight.in_features) != (module.out_features, module.in_features):
        raise ValueError(
            f"quantized weight is [{weight.out_features}, {weight.in_features}] but the layer "
            f"is [{module.out_features}, {module.in_features}]")


class Linear(nn.Module):
    def __init__(self, in_features: int, out_features: int, *, dtype: torch.dtype,
                 device: torch.device):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features, dtype=dtype,
                                               device=device))
        # (group_size, bits, act_block) once quantized
        self.quant_meta: tuple[int, int, int | None] | None = None

    def load_quantized(self, weight: QuantizedWeight) -> None:
        """Hold ``weight`` instead of a dense one (see the module docstring)."""
        check_quantized_shape(self, weight)
        del self.weight
        device = weight.qweight.device
        # Non-persistent: the unpacked levels are not a checkpoint format (the scheme's
        # to_checkpoint is); buffers still follow .to() and device moves.
        for name in ("qweight", "scales", "zeros", "g_idx"):
            value = getattr(weight, name)
            self.register_buffer(f"q_{name}", None if value is None else value.to(device),
                                 persistent=False)
        self.quant_meta = (weight.group_size, weight.bits, weight.act_block)

    def quantized_weight(self) -> QuantizedWeight | None:
        """The quantized weight this layer holds, or None for a dense one."""
        if self.quant_meta is None:
            return None
        group_size, bits, act_block = self.quant_meta
        return QuantizedWeight(self.q_qweight, self.q_scales, self.q_zeros, group_size, bits,
                               g_idx=self.q_g_idx, act_block=act_block)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.quant_meta is not None:
            return quantized_reference(x, self.quantized_weight())
        return F.linear(x, self.weight)

    def extra_repr(self) -> str:
        if self.quant_meta is None:
            return f"in_features={self.in_features}, out_features={self.out_features}"
        group_size, bits, act_block = self.quant_meta
        acts = "" if act_block is None else f", int8 activations per {act_block}"
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"int{bits} group_size={group_size}{acts}")
