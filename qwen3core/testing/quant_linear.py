"""Operator-level checks of a quantized linear against the scheme's eager reference.

The equivalence suite compares whole greedy runs, under tolerances that must allow for
rounding. For schemes that quantize activations (``w8a8``, ``w4a8``) that allowance has to
cover one activation moving a whole level when two implementations' inputs differ in the last
bit, which is as large as skipping the activation quantization altogether. Here the inputs
are identical, so a linear must reproduce the reference's levels exactly and its products to
float32 rounding: a plugin implementing a scheme calls :func:`check_quantized_linear` beside
``check_backend(..., quantize=...)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from qwen3core.quant import QuantizedWeight, resolve_scheme
from qwen3core.quant.activations import fake_quantize_activations

#: Largest |candidate - float64 product| / max |float64 product| per activation dtype.
PRODUCT_TOLERANCE = {torch.float32: 2e-6, torch.bfloat16: 8e-3}


def check_quantized_linear(make_linear: Callable[[int, int, torch.dtype], nn.Module],
                           scheme: str, *,
                           shapes: Iterable[tuple[int, int]] = ((17, 33), (100, 64), (31, 1031)),
                           rows: Iterable[int] = (1, 3, 8, 9),
                           dtypes: Iterable[torch.dtype] = (torch.float32, torch.bfloat16),
                           seed: int = 0) -> int:
    """``make_linear(in_features, out_features, dtype)`` -> a module with ``load_quantized``.
    For each shape it gets ``scheme``'s quantization of a random weight and must compute, for
    each row count and dtype, the reference product (activations quantized first when the
    scheme says so) within :data:`PRODUCT_TOLERANCE` of its float64 value; for a scheme that
    quantizes activations, an identity weight must also give back exactly the reference's
    ``q * s`` of hard rows (ties, zero blocks, huge and tiny values). Raises AssertionError;
    returns the number of products checked."""
    qscheme = resolve_scheme(scheme)
    gen = torch.Generator().manual_seed(seed)
    checked = 0
    for out, inp in shapes:
        weight = qscheme.quantize(torch.randn(out, inp, generator=gen))
        for dtype in dtypes:
            module = make_linear(inp, out, dtype)
            module.load_quantized(weight)
            for count in rows:
                x = torch.randn(count, inp, generator=gen).to(dtype)
                xr = (fake_quantize_activations(x, weight.act_block, torch.float64)
                      if weight.act_block is not None else x.double())
                expected = xr @ weight.dequantize(torch.float64).T
                with torch.no_grad():
                    got = module(x)
                assert got.dtype == dtype and got.shape == (count, out), (
                    f"{scheme} [{out}, {inp}] {dtype}: got {got.dtype} {tuple(got.shape)}")
                err = float((got.double() - expected).abs().max() / expected.abs().max())
                assert err < PRODUCT_TOLERANCE[dtype], (
                    f"{scheme} [{out}, {inp}], {count} rows, {dtype}: relative error {err:.2e} "
                    f"against the reference product (allowed {PRODUCT_TOLERANCE[dtype]:.0e})")
                checked += 1
    if qscheme.act_block is not None:
        for k in (32, 40, 100):
            checked += _check_levels(make_linear, k, qscheme.act_block)
    return checked


def hard_rows(k: int, seed: int = 0) -> torch.Tensor:
    """Rows that test a quantization step: exact ties (a block whose amax is 127, so its scale
    is 1, and halves), an all-zero block, values near 1e30 and 1e-30, integers."""
    x = torch.randn(6, k, generator=torch.Generator().manual_seed(seed + k))
    ties = torch.arange(k, dtype=torch.float32) % 64 - 31.5
    ties[::32] = 127.0
    x[0] = ties
    x[1, :32] = 0.0
    x[2] *= 1e30
    x[3] *= 1e-30
    x[4] = x[4].round()
    return x


def _check_levels(make_linear, k: int, block: int) -> int:
    """An int8 identity weight, scale 1, one group per channel: the output is the module's
    q * s of each input, which must equal the reference's exactly (float32 output)."""
    eye = QuantizedWeight(torch.eye(k, dtype=torch.int8), torch.ones(k, 1, dtype=torch.float16),
                          None, k, 8, act_block=block)
    module = make_linear(k, k, torch.float32)
    module.load_quantized(eye)
    x = hard_rows(k)
    for dtype in (torch.float32, torch.bfloat16):
        rounded = x.to(dtype).float()  # bfloat16 inputs, fed as float32 for a float32 output
        with torch.no_grad():
            got = module(rounded)
        expected = fake_quantize_activations(rounded, block)
        assert torch.equal(got, expected), (
            f"activation levels differ from the reference's ({dtype} inputs, K={k}): largest "
            f"difference {float((got - expected).abs().max()):.3g}")
    return 2
