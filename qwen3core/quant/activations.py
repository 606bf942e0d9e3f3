"""Dynamic int8 quantization of activations: what the ``w8a8`` / ``w4a8`` schemes multiply.

Written once here; the eager reference (``backends/eager/linear.py``) calls it and every kernel
computes the same levels with the same float32 operations, in the same order:

* each row of ``x`` (rounded to float32 first: exact for bfloat16 and float32 inputs) is cut
  into blocks of ``block`` consecutive inputs, the last block padded with zeros;
* ``amax = max |x|`` over the block (exact in float32);
* ``s = amax / 127`` (one IEEE float32 division, round to nearest even); where that is 0 (a
  block of zeros, or an amax so tiny that the division underflows) ``s = 1`` instead (the
  levels are then 0 whatever the scale);
* ``q = round_half_to_even(x / s)`` (one IEEE float32 division, then rounding to an integer,
  ties to even), clamped to -127..127 (a no-op in practice: ``|x| <= amax`` and
  ``amax / s`` rounds to 127; the clamp makes the range a guarantee, and -128 never occurs).

The product the scheme stands for is then ``(q * s) @ dequantize(W).T``: in real numbers the
integer dot products of ``q`` with the weight's levels, per block, times ``s`` and the weight's
scale. Kernels compute exactly those integer dots and differ from the reference only in how
float32 rounds the sums of blocks.
"""

from __future__ import annotations

import torch

#: Inputs per activation scale in the first-party schemes (llama.cpp's q8_0 block).
ACT_BLOCK = 32
ACT_MAX = 127


def quantize_activations(x: torch.Tensor, block: int = ACT_BLOCK
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """x [..., K] -> (levels int8 [..., nblocks * block], scales float32 [..., nblocks]),
    the last block zero-padded (see the module docstring)."""
    k = x.shape[-1]
    blocks = -(-k // block)
    x32 = x.to(torch.float32)
    if blocks * block != k:
        x32 = torch.cat([x32, x32.new_zeros(*x32.shape[:-1], blocks * block - k)], dim=-1)
    xb = x32.reshape(*x32.shape[:-1], blocks, block)
    amax = xb.abs().amax(dim=-1)
    scales = amax / ACT_MAX
    scales = torch.where(scales == 0, torch.ones_like(scales), scales)
    levels = torch.round(xb / scales[..., None]).clamp(-ACT_MAX, ACT_MAX)
    return levels.to(torch.int8).reshape(*x32.shape), scales


def fake_quantize_activations(x: torch.Tensor, block: int = ACT_BLOCK,
                              dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The values the quantized activations stand for, ``q * s`` [..., K], in ``dtype``
    (float32, or float64 to multiply them without rounding: each is exact there)."""
    levels, scales = quantize_activations(x, block)
    k = x.shape[-1]
    values = levels.to(dtype).unflatten(-1, (scales.shape[-1], block)) * scales.to(dtype)[..., None]
    return values.flatten(-2)[..., :k]
