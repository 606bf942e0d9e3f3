"""Quantize-on-load from Hugging Face checkpoints, and ``qwen3 quantize`` round trips.

On checkpoints transformers wrote (dense sharded, tied, MoE): each projection holds exactly the
scheme's quantization of the stored weight; a checkpoint written by ``qwen3 quantize`` loads
back with no flag into the very model quantize-on-load builds (same logits, eager and cpu);
and asking to quantize it again is a clear error.
"""

from __future__ import annotations

import pytest
import torch

import qwen3core
from qwen3core.cli import main as cli_main
from qwen3core.errors import CheckpointError
from qwen3core.quant import resolve_scheme

EAGER = {"linear": "eager", "moe": "eager"}
IDS = torch.tensor([[3, 1, 4, 1, 5, 9, 2, 6]])


def _logits(loaded) -> torch.Tensor:
    with torch.no_grad():
        return loaded.model(IDS)


@pytest.mark.parametrize("case", ["dense-untied-gqa2-sharded", "moe-normtopk-mlponly-sharded"])
def test_quantize_on_load_quantizes_each_stored_weight(hf_checkpoint, case):
    directory = hf_checkpoint(case)
    dense = qwen3core.load(str(directory), backends=EAGER)
    quant = qwen3core.load(str(directory), backends=EAGER, quantize="int4:g32")
    scheme = resolve_scheme("int4:g32")
    checked = 0
    for name, module in quant.model.named_modules():
        if name.endswith(("q_proj", "o_proj", "gate_proj", "down_proj")):
            held = module.quantized_weight()
            expected = scheme.quantize(dense.model.get_submodule(name).weight)
            assert torch.equal(held.qweight, expected.qweight), name
            assert torch.equal(held.zeros, expected.zeros), name
            checked += 1
    assert checked > 4
    assert quant.model.lm_head.quantized_weight() is None  # the head follows the checkpoint
    assert (_logits(quant) - _logits(dense)).abs().max() > 0


@pytest.mark.parametrize("case,scheme,extra", [
    ("dense-tied-gqa1", "int4", ["--group-size", "64", "--head"]),
    ("moe-normtopk-mlponly-sharded", "int8", []),
])
def test_qwen3_quantize_writes_what_load_reads_back(hf_checkpoint, tmp_path, case, scheme,
                                                   extra):
    source = hf_checkpoint(case)
    out = tmp_path / "quantized"
    assert cli_main(["quantize", str(source), str(out), "--scheme", scheme, *extra]) == 0
    head = "--head" in extra
    name = scheme + (":g64" if "64" in extra else "")
    expected = qwen3core.load(str(source), backends=EAGER, quantize=name, quantize_head=head)
    back = qwen3core.load(str(out), backends=EAGER)
    assert torch.equal(_logits(back), _logits(expected))
    assert (back.model.lm_head.quantized_weight() is not None) == head
    with pytest.raises(CheckpointError, match="quantized already"):
        qwen3core.load(str(out), backends=EAGER, quantize="int8")


def test_quantized_checkpoint_on_the_cpu_kernels(hf_checkpoint, tmp_path):
    from qwen3core_backends import cpu as cpu_backend

    reason = cpu_backend._check(torch.device("cpu"), torch.float32)
    if reason is not None:
        pytest.skip(f"cpu kernels unavailable here: {reason}")
    out = tmp_path / "q"
    assert cli_main(["quantize", str(hf_checkpoint("dense-tied-gqa4")), str(out),
                     "--scheme", "int4"]) == 0
    eager = _logits(qwen3core.load(str(out), backends=EAGER))
    kernel = _logits(qwen3core.load(str(out), backends={"linear": "cpu", "moe": "eager"}))
    torch.testing.assert_close(kernel, eager, rtol=1e-4, atol=1e-4)


def test_quantize_a_random_preset(tmp_path):
    out = tmp_path / "tiny-int8"
    assert cli_main(["quantize", "random:tiny", str(out), "--scheme", "int8"]) == 0
    back = qwen3core.load(str(out), backends=EAGER)  # stored in bfloat16
    expected = qwen3core.load("random:tiny", backends=EAGER, quantize="int8", dtype="bfloat16")
    assert back.model.model.layers[0].self_attn.q_proj.quantized_weight() is not None
    assert torch.equal(_logits(back), _logits(expected))
