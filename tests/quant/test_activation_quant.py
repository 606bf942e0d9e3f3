"""The w8a8 / w4a8 schemes: int8/int4 weights times int8 activations quantized per block of 32.

The reference's activation quantization on hand-made blocks (ties, zero blocks, padding, the
largest magnitude); the schemes' weights and checkpoint tensors being int8's / int4's with the
activation block recorded in ``quantization_config``; ``qwen3 quantize --scheme w4a8`` read
back with no flag. The integer-kernel tests are in test_cpu_a8.py.
"""

from __future__ import annotations

import json

import pytest
import torch
from qwen3core_backends.eager.linear import Linear, quantized_reference

import qwen3core
from qwen3core.cli import main as cli_main
from qwen3core.errors import CheckpointError
from qwen3core.quant import QuantizationError, QuantizedWeight, resolve_scheme
from qwen3core.quant.activations import fake_quantize_activations, quantize_activations
from qwen3core.quant.apply import scheme_from_config

EAGER = {"linear": "eager", "moe": "eager"}


def test_ties_round_to_even_when_the_scale_is_one():
    # amax 127 -> s = 1 exactly, so x / s = x and the halves are exact ties.
    x = torch.tensor([127.0, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 3.49, -126.5] + [0.0] * 23)
    q, s = quantize_activations(x)
    assert s.tolist() == [1.0]
    assert q[:9].tolist() == [127, 0, 2, 2, 0, -2, -2, 3, -126]


def test_the_largest_magnitude_is_level_127_and_the_scale_is_one_float32_division():
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(5, 96, generator=gen) * torch.tensor([1e-3, 1.0, 7.0, 1e4, 0.3])[:, None]
    q, s = quantize_activations(x)
    blocks = x.view(5, 3, 32)
    amax = blocks.abs().amax(-1)
    assert torch.equal(s, amax / torch.tensor(127.0))  # float32 division, nothing else
    at_max = blocks.abs() == amax[..., None]
    assert (q.view(5, 3, 32)[at_max].abs() == 127).all()
    assert q.abs().max() <= 127
    # Each level is the float32 quotient rounded half to even.
    assert torch.equal(q.view(5, 3, 32).float(), torch.round(blocks / s[..., None]))


def test_zero_blocks_get_scale_one_and_padding_is_zero():
    x = torch.zeros(2, 40)
    x[1, 35] = -2.0  # the second block holds 8 real inputs and 24 of padding
    q, s = quantize_activations(x)
    assert q.shape == (2, 64) and s.shape == (2, 2)
    assert s[0].tolist() == [1.0, 1.0] and (q[0] == 0).all()
    assert s[1, 0] == 1.0 and s[1, 1] == torch.tensor(2.0) / 127
    assert q[1, 35] == -127 and q[1].abs().sum() == 127  # the padding stays 0
    assert torch.equal(fake_quantize_activations(x)[1, 35], torch.tensor(-127 * (2.0 / 127)))
    assert fake_quantize_activations(x).shape == (2, 40)


def test_an_underflowing_scale_becomes_one():
    x = torch.zeros(32)
    x[0] = torch.finfo(torch.float32).smallest_normal * 2.0**-22  # amax / 127 underflows
    q, s = quantize_activations(x)
    assert s.item() == 1.0 and (q == 0).all()


def test_bfloat16_rows_are_quantized_from_their_exact_float32_values():
    x = torch.randn(3, 64, generator=torch.Generator().manual_seed(4)).to(torch.bfloat16)
    q16, s16 = quantize_activations(x)
    q32, s32 = quantize_activations(x.float())
    assert torch.equal(q16, q32) and torch.equal(s16, s32)


@pytest.mark.parametrize("name,base", [("w8a8", "int8"), ("w4a8", "int4"),
                                       ("w8a8:channel", "int8:channel"),
                                       ("w4a8:g128:sym", "int4:g128:sym")])
def test_weights_are_the_base_schemes_and_the_product_quantizes_x(name, base):
    w = torch.randn(24, 200, generator=torch.Generator().manual_seed(5))
    a8, plain = resolve_scheme(name), resolve_scheme(base)
    qa, qp = a8.quantize(w), plain.quantize(w)
    assert qa.act_block == 32 and qp.act_block is None
    assert torch.equal(qa.qweight, qp.qweight) and torch.equal(qa.scales, qp.scales)
    stored = a8.to_checkpoint(qa)
    for key, value in plain.to_checkpoint(qp).items():
        assert torch.equal(stored[key], value), key  # the same checkpoint tensors
    back = a8.from_checkpoint(stored, 200)
    assert back.act_block == 32 and torch.equal(back.qweight, qa.qweight)
    x = torch.randn(3, 200, generator=torch.Generator().manual_seed(6))
    layer = Linear(200, 24, dtype=torch.float32, device=torch.device("cpu"))
    layer.load_quantized(qa)
    expected = fake_quantize_activations(x) @ qa.dequantize().T
    torch.testing.assert_close(layer(x), expected, rtol=0, atol=1e-5)
    assert not torch.allclose(layer(x), quantized_reference(x, qp), rtol=0, atol=1e-5)
    assert "int8 activations per 32" in repr(layer)


def test_a_weight_of_one_scheme_is_refused_by_the_other():
    w = torch.randn(8, 64)
    with pytest.raises(QuantizationError, match="activation blocks"):
        resolve_scheme("int8").to_checkpoint(resolve_scheme("w8a8").quantize(w))
    with pytest.raises(ValueError, match="g_idx"):
        QuantizedWeight(torch.zeros(4, 64, dtype=torch.int8), torch.ones(4, 2), None, 32, 8,
                        g_idx=torch.arange(64) // 32, act_block=32)
    with pytest.raises(QuantizationError, match="block of 32"):
        from qwen3core.quant import QuantScheme
        QuantScheme("w8a8", 8, 32, False, act_block=16)


def test_quantization_config_records_the_activations():
    config = resolve_scheme("w4a8:g64").quantization_config(head=True)
    assert config["activations"] == {"bits": 8, "block_size": 32, "symmetric": True,
                                     "dynamic": True}
    assert scheme_from_config(config, "here") == resolve_scheme("w4a8:g64")
    assert "activations" not in resolve_scheme("int4").quantization_config(head=False)
    bad = {**config, "activations": {**config["activations"], "symmetric": False}}
    with pytest.raises(CheckpointError, match="activation"):
        scheme_from_config(bad, "here")


def test_qwen3_quantize_w4a8_reads_back_with_no_flag(tmp_path):
    out = tmp_path / "w4a8"
    assert cli_main(["quantize", "random:tiny", str(out), "--scheme", "w4a8", "--head"]) == 0
    config = json.loads((out / "config.json").read_text())["quantization_config"]
    assert config["scheme"] == "w4a8" and config["activations"]["block_size"] == 32
    back = qwen3core.load(str(out), backends=EAGER)
    expected = qwen3core.load("random:tiny", backends=EAGER, quantize="w4a8",
                              quantize_head=True)
    head = back.model.lm_head.quantized_weight()
    assert head is not None and head.act_block == 32
    ids = torch.tensor([[3, 1, 4, 1, 5, 9]])
    with torch.no_grad():
        assert torch.equal(back.model(ids), expected.model(ids))
