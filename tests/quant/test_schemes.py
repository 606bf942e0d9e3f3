"""The int8 and int4 schemes: quantization error bounds, levels in range, checkpoint storage
round trips, scheme names and options, and clear errors for what a scheme cannot take."""

from __future__ import annotations

import pytest
import torch

from qwen3core.quant import QuantizationError, QuantizedWeight, resolve_scheme

NAMES = ["int8", "int8:channel", "int8:g64", "int4", "int4:g64", "int4:g128:sym", "int4:sym"]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", [(16, 64), (5, 100), (33, 7)])
def test_quantize_error_is_at_most_half_a_step(name, shape):
    scheme = resolve_scheme(name)
    w = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    qw = scheme.quantize(w)
    lo, hi = scheme.levels()
    assert qw.qweight.dtype == torch.int8 and lo <= qw.qweight.min() and qw.qweight.max() <= hi
    step = qw.scales.to(torch.float32).index_select(1, qw.column_groups())
    # Rounding to nearest: half a step, plus the float16 rounding of the scale itself.
    assert ((qw.dequantize() - w).abs() <= 0.5 * step * (1 + 2e-3) + 1e-6).all()


@pytest.mark.parametrize("name", NAMES)
def test_checkpoint_round_trip_is_exact(name):
    scheme = resolve_scheme(name)
    w = torch.randn(24, 77, generator=torch.Generator().manual_seed(2))
    qw = scheme.quantize(w)
    stored = scheme.to_checkpoint(qw)
    assert {k: tuple(v.shape) for k, v in stored.items()} == scheme.checkpoint_shapes(24, 77)
    back = scheme.from_checkpoint(stored, 77)
    assert torch.equal(back.qweight, qw.qweight) and torch.equal(back.scales, qw.scales)
    assert (back.zeros is None) == (qw.zeros is None)
    assert sum(t.nbytes for t in stored.values()) == scheme.nbytes(24, 77)


def test_int4_packing_puts_the_even_input_in_the_low_nibble():
    scheme = resolve_scheme("int4:g32:zp")
    q = torch.tensor([[1, 2] * 16], dtype=torch.int8)
    qw = QuantizedWeight(q, torch.ones(1, 1, dtype=torch.float16),
                         torch.zeros(1, 1, dtype=torch.int8), 32, 4)
    assert scheme.to_checkpoint(qw)["qweight"][0, 0].item() == 0x21


def test_all_zero_group_dequantizes_to_zero():
    for name in NAMES:
        assert torch.equal(resolve_scheme(name).quantize(torch.zeros(2, 64)).dequantize(),
                           torch.zeros(2, 64))


@pytest.mark.parametrize("bad", ["int3", "int4:g48", "int4:q", "int8:zp", "", "int4:g16"])
def test_bad_scheme_names_are_clear_errors(bad):
    with pytest.raises(QuantizationError):
        resolve_scheme(bad)


def test_scheme_options():
    s = resolve_scheme("int4:g128:sym")
    assert (s.bits, s.group_size, s.zero_point) == (4, 128, False)
    assert resolve_scheme("int8:channel").group_size is None
