"""The AWQ, GPTQ and FP8 unpackers against the formats' specifications: literal words worked
out by hand from the published packing, and round trips through the writers' own loops
(``qwen3core.testing.quant_formats``), a second formula beside the vectorised readers."""

import pytest
import torch

from qwen3core.errors import CheckpointError
from qwen3core.quant.formats import dequantize_fp8, unpack_awq, unpack_gptq
from qwen3core.quant.formats.awq import AwqFormat
from qwen3core.quant.formats.fp8 import Fp8Format
from qwen3core.quant.formats.gptq import GptqFormat
from qwen3core.testing.quant_formats import (
    desc_act_g_idx,
    pack_awq,
    pack_gptq,
    quantize_fp8,
    rtn_quantize,
)


def _weight(out=24, inp=64, seed=0):
    return torch.randn(out, inp, generator=torch.Generator().manual_seed(seed))


def test_awq_word_layout_by_hand():
    # Output columns 0..7 hold levels 1..8 (row 0). AutoAWQ puts column order_map[k] =
    # (0, 2, 4, 6, 1, 3, 5, 7)[k] into nibble k: nibbles low->high 1,3,5,7,2,4,6,8.
    word = torch.tensor([[0x86427531]], dtype=torch.int64)
    word = torch.where(word >= 2**31, word - 2**32, word).to(torch.int32)  # as stored: int32
    zeros = torch.tensor([[0x11111111]], dtype=torch.int32)
    qw = unpack_awq(word, zeros, torch.ones(1, 8, dtype=torch.float16), group_size=1)
    assert qw.qweight[:, 0].tolist() == [1, 2, 3, 4, 5, 6, 7, 8]
    assert qw.dequantize()[:, 0].tolist() == [0, 1, 2, 3, 4, 5, 6, 7]


def test_gptq_word_layout_by_hand():
    # Input rows 0..7 of output column 0 hold levels 1..8, packed in order: 0x87654321.
    # v1 stores zero - 1: 0x77777777 is a zero of 8 everywhere, i.e. symmetric 4-bit.
    word = torch.tensor([[0x87654321 - 2**32]], dtype=torch.int32)
    zeros = torch.tensor([[0x77777777]], dtype=torch.int32)
    scales = torch.ones(1, 8, dtype=torch.float16)
    qw = unpack_gptq(word.expand(1, 8).contiguous(), zeros, scales, None, bits=4,
                     group_size=-1, zero_offset=1)
    assert qw.zeros is None  # all zeros at the midpoint: the symmetric form
    assert qw.dequantize()[0].tolist() == [-7, -6, -5, -4, -3, -2, -1, 0]
    v2 = unpack_gptq(word.expand(1, 8).contiguous(), zeros, scales, None, bits=4,
                     group_size=-1, zero_offset=0)
    assert v2.dequantize()[0].tolist() == [-6, -5, -4, -3, -2, -1, 0, 1]


@pytest.mark.parametrize("group_size", [16, 64])
def test_awq_round_trip_through_autoawq_packing(group_size):
    levels = rtn_quantize(_weight(), bits=4, group_size=group_size, sym=False)
    qw = unpack_awq(**pack_awq(levels), group_size=group_size)
    assert torch.equal(qw.qweight.long(), levels.levels)
    assert torch.equal(qw.zeros.long(), levels.zeros)
    assert torch.equal(qw.dequantize(), levels.dequantize())


def test_reading_awq_in_plain_order_is_caught():
    """The interleave matters: reading AWQ words in GPTQ-style sequential order (no reorder)
    gives a different weight, so the round trip above would fail for a wrong nibble order."""
    levels = rtn_quantize(_weight(), bits=4, group_size=32, sym=False)
    packed = pack_awq(levels)
    from qwen3core.quant.formats.bits import unpack_int32

    plain = unpack_int32(packed["qweight"], 4, dim=1).t()
    assert not torch.equal(plain, levels.levels)


@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("sym", [True, False])
@pytest.mark.parametrize("desc_act", [False, True])
@pytest.mark.parametrize("v1", [True, False])
def test_gptq_round_trip_through_autogptq_packing(bits, sym, desc_act, v1):
    inp, group_size = 64, 16
    g_idx = desc_act_g_idx(inp, group_size, seed=3) if desc_act else None
    levels = rtn_quantize(_weight(inp=inp), bits=bits, group_size=group_size, sym=sym,
                          g_idx=g_idx, min_zero=1 if v1 else 0)
    qw = GptqFormat(bits, group_size, desc_act, 1 if v1 else 0).unpack(
        pack_gptq(levels, v1=v1), "w")
    assert torch.equal(qw.dequantize(), levels.dequantize())
    assert (qw.zeros is None) == sym
    assert (qw.g_idx is not None) == desc_act
    assert qw.qweight.dtype == torch.int8 and qw.bits == bits


def test_gptq_v1_zero_offset_matters():
    levels = rtn_quantize(_weight(), bits=4, group_size=32, sym=False, min_zero=1)
    packed = pack_gptq(levels, v1=True)
    wrong = GptqFormat(4, 32, False, zero_offset=0).unpack(packed, "w")
    assert not torch.equal(wrong.dequantize(), levels.dequantize())


def test_gptq_per_channel_group():
    levels = rtn_quantize(_weight(), bits=8, group_size=64, sym=False)
    qw = GptqFormat(8, -1, False, 0).unpack(pack_gptq(levels, v1=False, with_g_idx=False), "w")
    assert qw.group_size == 64 and qw.scales.shape == (24, 1)
    assert torch.equal(qw.dequantize(), levels.dequantize())


@pytest.mark.parametrize("block", [(32, 32), (16, 64), (128, 128)])
def test_fp8_against_transformers_dequantizer(block):
    """transformers' own FP8 dequantizer (what it runs on CPU) is the second source; it needs
    whole blocks, so partial ones (128 over 24x64) are checked against the formula alone."""
    weight = _weight(out=64, inp=128) if block != (128, 128) else _weight()
    parts = quantize_fp8(weight, block)
    ours = dequantize_fp8(parts["weight"], parts["weight_scale_inv"], block)
    expanded = torch.empty_like(ours)
    for o in range(weight.shape[0]):
        for i in range(weight.shape[1]):
            expanded[o, i] = parts["weight_scale_inv"][o // block[0], i // block[1]]
    assert torch.equal(ours, parts["weight"].float() * expanded)
    if block != (128, 128):
        fp8 = pytest.importorskip("transformers.integrations.finegrained_fp8")
        theirs = fp8.Fp8Dequantize(None)._dequantize_one(
            parts["weight"], parts["weight_scale_inv"], torch.float32)
        assert torch.equal(ours, theirs)
    assert (ours - weight).abs().max() < 0.07 * weight.abs().max()  # it is the weight


@pytest.mark.parametrize("shapes, match", [
    ({"qweight": (64, 3), "qzeros": (2, 3), "scales": (2, 25)},
     r"scales is \[2, 25\], expected \[2, 24\]"),
    ({"qweight": (64, 3), "qzeros": (4, 3), "scales": (2, 24)}, r"qzeros is \[4, 3\]"),
])
def test_awq_inconsistent_shapes_are_named(shapes, match):
    with pytest.raises(CheckpointError, match=match):
        AwqFormat(32).dense_shape(shapes, "model.layers.0.mlp.up_proj")


def test_fp8_scale_grid_mismatch_is_named():
    with pytest.raises(CheckpointError, match=r"weight_scale_inv is \[1, 1\].*needs \[1, 2\]"):
        Fp8Format((128, 128)).dense_shape({"weight": (24, 200), "weight_scale_inv": (1, 1)},
                                          "w")


def test_gptq_desc_act_without_g_idx_is_an_error():
    with pytest.raises(CheckpointError, match=r"desc_act true but .* no g_idx"):
        GptqFormat(4, 16, True, 1).dense_shape({"qweight": (8, 24), "qzeros": (4, 3),
                                                "scales": (4, 24)}, "w")
