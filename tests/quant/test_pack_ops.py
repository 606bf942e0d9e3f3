"""The C++ packing of quantized weights equals its readable reference, bit for bit.

``pack_quantized`` (``csrc/pack_op.cpp``) writes the kernels' layouts straight from the int8
levels; ``pack_reference.pack_quantized_reference`` defines the same bytes in torch
operations. Drawn here: every layout (int8 / int4, float or int8 activations), group sizes
(per channel included, odd ones where the layout allows), zero points or none, signed or
unsigned int4 levels, activation-order columns, float32 scales that are exactly float16,
strided levels and sizes that end mid-tile and mid-block. Bad input is refused by both alike.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from qwen3core_backends import cpu as cpu_backend

from qwen3core.quant import QuantizedWeight, resolve_scheme
from qwen3core.quant.schemes import QuantizationError

_missing = cpu_backend._check(torch.device("cpu"), torch.float32)
pytestmark = pytest.mark.skipif(_missing is not None,
                                reason=f"cpu kernels unavailable here: {_missing}")


def _pack(weight: QuantizedWeight):
    from qwen3core_backends.cpu.quant_linear import pack_quantized
    return pack_quantized(weight)


def _reference(weight: QuantizedWeight):
    from qwen3core_backends.cpu.pack_reference import pack_quantized_reference
    return pack_quantized_reference(weight)


def _assert_same(got, want) -> None:
    for name in ("levels", "scales", "zeros"):
        a, b = getattr(got, name), getattr(want, name)
        assert a.dtype == b.dtype and a.shape == b.shape, name
        assert torch.equal(a.view(torch.uint8) if a.numel() else a,
                           b.view(torch.uint8) if b.numel() else b), name
        assert a.is_contiguous(), name
    assert (got.bits, got.group_size, got.zero_const, got.act_block) == (
        want.bits, want.group_size, want.zero_const, want.act_block)
    assert (got.perm is None) == (want.perm is None)
    assert got.perm is None or torch.equal(got.perm, want.perm)


@st.composite
def quantized_weights(draw) -> QuantizedWeight:
    bits = draw(st.sampled_from([4, 8]))
    a8 = draw(st.booleans())
    out = draw(st.integers(1, 70))
    per_channel = draw(st.booleans())
    if per_channel:
        # One group per output: any width where the layout pads it (odd ones included), a
        # multiple of 8 for the float int4 layout (its groups are whole 8-input blocks).
        inp = draw(st.integers(1, 100)) if a8 or bits == 8 else 8 * draw(st.integers(1, 12))
        gs = inp
    else:
        unit = 32 if a8 else (8 if bits == 4 else 2)
        gs = unit * draw(st.integers(1, 4))
        inp = draw(st.integers(1, 4 * gs))  # a last group that may be short
    groups = -(-inp // gs)
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    signed = bits == 8 or draw(st.booleans())
    lo, hi = ((-128, 127) if bits == 8 else (-8, 7)) if signed else (0, 15)
    q = torch.randint(lo, hi + 1, (out, inp), generator=gen, dtype=torch.int8)
    zeros = None
    if bits == 4 and draw(st.booleans()):
        z_lo, z_hi = ((-8, 7) if signed else (0, 15))
        zeros = torch.randint(z_lo, z_hi + 1, (out, groups), generator=gen, dtype=torch.int8)
    if bits == 8 and not a8 and draw(st.booleans()):
        zeros = torch.randint(-20, 20, (out, groups), generator=gen, dtype=torch.int8)
    scales = (torch.rand(out, groups, generator=gen) + 0.01).to(torch.float16)
    if draw(st.booleans()):
        scales = scales.float()  # exactly float16: converted on packing
    if draw(st.booleans()):
        q = q.t().contiguous().t()  # strided levels (column-major)
    g_idx = None
    if not a8 and groups > 1 and draw(st.booleans()):
        perm = torch.randperm(inp, generator=gen)
        g_idx = (torch.arange(inp) // gs)[perm]
        q = q[:, perm]
    return QuantizedWeight(q, scales, zeros, gs, bits, g_idx=g_idx,
                           act_block=32 if a8 else None)


@settings(max_examples=150, deadline=None)
@given(weight=quantized_weights())
def test_the_operator_packs_what_the_reference_packs(weight):
    try:
        want = _reference(weight)
    except QuantizationError:  # e.g. signed zero points drawn where no level came out signed
        with pytest.raises(QuantizationError):
            _pack(weight)
        return
    _assert_same(_pack(weight), want)


@pytest.mark.parametrize("scheme", ["int8", "int8:channel", "int4", "int4:zp", "int4:g128:zp",
                                    "w8a8", "w4a8", "w4a8:zp"])
def test_scheme_weights_of_model_shapes_pack_alike(scheme):
    # The shapes the models have, from the schemes themselves (their level ranges and group
    # sizes), with a ragged last tile.
    w = torch.randn(1030, 1024, generator=torch.Generator().manual_seed(1))
    weight = resolve_scheme(scheme).quantize(w)
    _assert_same(_pack(weight), _reference(weight))


@pytest.mark.parametrize("act_block", [None, 32])
@pytest.mark.parametrize("bad", ["int4 level 16", "int4 level -9", "int4 zero past int8",
                                 "odd groups", "int4 group 4"])
def test_bad_weights_are_refused_by_both(bad, act_block):
    out, inp = 16, 64
    q = torch.zeros(out, inp, dtype=torch.int8)
    zeros, gs, bits = None, 32, 4
    if bad == "int4 level 16":
        q[3, 5] = 16
    elif bad == "int4 level -9":
        q[3, 5] = -9
    elif bad == "int4 zero past int8":  # signed levels: zero 127 moves to 135
        q[0, 0] = -1
        zeros = torch.full((out, 2), 127, dtype=torch.int8)
    elif bad == "odd groups":
        gs = 7
    elif bad == "int4 group 4":
        gs = 4
    weight = QuantizedWeight(q, torch.ones(out, -(-inp // gs), dtype=torch.float16), zeros, gs,
                             bits, act_block=act_block)
    for pack in (_pack, _reference):
        with pytest.raises(QuantizationError):
            pack(weight)
