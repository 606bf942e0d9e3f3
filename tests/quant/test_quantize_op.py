"""The cpu backend's quantize-on-load equals the schemes' readable reference, bit for bit.

``qwen3core_cpu::quantize_groups`` (``csrc/quantize_op.cpp``) is the first-party schemes'
:meth:`QuantScheme.quantize` in one C++ pass; ``CpuLinear.load_quantized_rows`` quantizes and
packs a weight a chunk of rows at a time with it. Both must give exactly what the reference
path gives: ``scheme.quantize`` of the whole weight, packed whole. Drawn: bits, group sizes
(per channel, short last groups), zero points or not, float32 / bfloat16 / float16 and strided
weights, magnitudes from float16-subnormal scales to ones past float16's range, all-zero
groups, and values on exact rounding ties.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from qwen3core_backends import cpu as cpu_backend

from qwen3core.quant import QuantizedWeight, apply, resolve_scheme
from qwen3core.quant.schemes import QuantizationError, QuantScheme

_missing = cpu_backend._check(torch.device("cpu"), torch.float32)
pytestmark = pytest.mark.skipif(_missing is not None,
                                reason=f"cpu kernels unavailable here: {_missing}")


def _fast(scheme: QuantScheme, w: torch.Tensor) -> QuantizedWeight:
    from qwen3core_backends.cpu.quantize_load import quantize
    return quantize(scheme, w)


def _assert_same(got: QuantizedWeight, want: QuantizedWeight) -> None:
    assert got.qweight.dtype == want.qweight.dtype == torch.int8
    assert torch.equal(got.qweight, want.qweight)
    assert got.scales.dtype == want.scales.dtype == torch.float16
    assert torch.equal(got.scales.view(torch.int16), want.scales.view(torch.int16))
    assert (got.zeros is None) == (want.zeros is None)
    assert got.zeros is None or torch.equal(got.zeros, want.zeros)
    assert (got.group_size, got.bits, got.act_block, got.g_idx) == (
        want.group_size, want.bits, want.act_block, want.g_idx)


@st.composite
def schemes(draw) -> QuantScheme:
    bits = draw(st.sampled_from([4, 8]))
    zero_point = bits == 4 and draw(st.booleans())
    group = draw(st.one_of(st.none(), st.integers(1, 40).map(lambda n: 2 * n)))
    return QuantScheme("drawn", bits, group, zero_point, draw(st.sampled_from([None, 32])))


@st.composite
def weights(draw) -> torch.Tensor:
    out, inp = draw(st.integers(1, 40)), draw(st.integers(1, 200))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    magnitude = draw(st.sampled_from([1e-7, 1e-3, 0.05, 1.0, 300.0, 1e6]))
    w = torch.randn(out, inp, generator=gen) * magnitude
    kind = draw(st.sampled_from(["plain", "zeros", "ties", "offset"]))
    if kind == "zeros":
        w[:, : inp // 2] = 0.0  # whole groups of zeros: a zero scale
    elif kind == "ties":  # halves of a power-of-two step: round-half-to-even decides
        w = (torch.randint(-30, 30, (out, inp), generator=gen) + 0.5) * 0.125
    elif kind == "offset":
        w = w + magnitude * 3  # all of one sign: the zero point at an end of its range
    dtype = draw(st.sampled_from([torch.float32, torch.bfloat16, torch.float16]))
    if dtype == torch.float16:
        w = w.clamp(-6e4, 6e4)
    w = w.to(dtype)
    if draw(st.booleans()):
        w = w.t().contiguous().t()  # strided (column-major) rows
    return w


@settings(max_examples=200, deadline=None)
@given(scheme=schemes(), w=weights())
def test_the_operator_quantizes_as_the_reference(scheme, w):
    _assert_same(_fast(scheme, w), scheme.quantize(w))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_a_weight_with_no_levels_is_refused_by_both(bad):
    w = torch.randn(4, 64)
    w[2, 17] = bad
    for quantize in (_fast, lambda s, w: s.quantize(w)):
        with pytest.raises(QuantizationError, match="NaN or an infinity"):
            quantize(resolve_scheme("int4"), w)


class _OwnScheme(QuantScheme):
    """A plugin's scheme with numbers of its own: quantized by itself, never by the operator."""

    def quantize(self, weight):
        base = super().quantize(weight)
        return QuantizedWeight(base.qweight // 2, base.scales, base.zeros, base.group_size,
                               base.bits, act_block=base.act_block)


def test_a_scheme_with_its_own_quantize_keeps_it():
    scheme = _OwnScheme("own", 8, 32, False)
    w = torch.randn(16, 64)
    _assert_same(_fast(scheme, w), scheme.quantize(w))


def _cpu_linear(out: int, inp: int):
    from qwen3core_backends.cpu.linear import CpuLinear
    return CpuLinear(inp, out, dtype=torch.float32, device=torch.device("cpu"))


def _assert_same_packed(got, want) -> None:
    for name in ("levels", "scales", "zeros"):
        assert torch.equal(getattr(got, name).view(torch.uint8),
                           getattr(want, name).view(torch.uint8)), name
    assert (got.bits, got.group_size, got.zero_const, got.act_block, got.perm) == (
        want.bits, want.group_size, want.zero_const, want.act_block, want.perm)


@pytest.mark.parametrize("scheme", ["int8", "int8:channel", "int4", "int4:sym", "w8a8", "w4a8"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rows_in_chunks_pack_as_the_whole_weight(scheme, dtype, monkeypatch):
    out, inp = 1300, 96  # 256-row chunks: five whole ones and a short last one
    monkeypatch.setattr(apply, "CHUNK_BYTES", 256 * inp * 4)
    whole = torch.empty(out, inp)
    from qwen3core.init import fill_random
    fill_random(whole, "lm_head.weight", 5, inp)
    stored = whole.to(dtype)
    by_rows, reference = _cpu_linear(out, inp), _cpu_linear(out, inp)
    handed = []

    def rows(index: slice) -> torch.Tensor:
        handed.append(index.indices(out)[:2])
        return stored[index]

    by_rows.load_quantized_rows(resolve_scheme(scheme), rows)
    assert len(handed) == 6  # a chunk at a time, not the whole weight
    reference.load_quantized(resolve_scheme(scheme).quantize(stored))
    _assert_same_packed(by_rows.quant, reference.quant)
    x = torch.randn(3, inp)
    assert torch.equal(by_rows(x), reference(x))


def test_chunks_in_different_layouts_pack_the_whole_weight(monkeypatch):
    # Symmetric int4: a first chunk of zeros has no negative level and packs without the +8
    # offset the others need; the whole weight is quantized and packed at once instead.
    out, inp = 512, 64
    monkeypatch.setattr(apply, "CHUNK_BYTES", 256 * inp * 4)
    w = torch.randn(out, inp, generator=torch.Generator().manual_seed(3))
    w[:256] = 0.0
    scheme = resolve_scheme("int4:sym")
    by_rows, reference = _cpu_linear(out, inp), _cpu_linear(out, inp)
    by_rows.load_quantized_rows(scheme, w.__getitem__)
    reference.load_quantized(scheme.quantize(w))
    _assert_same_packed(by_rows.quant, reference.quant)
    assert by_rows.quant.zero_const == 8.0
