"""The command line's quantization options: generate --quantize, info's sizes per scheme."""

from __future__ import annotations

import json

import torch

from qwen3core.cli import main as cli_main
from qwen3core.quant import resolve_scheme
from qwen3core.quant.sizes import weight_bytes
from qwen3core.spec import preset


def test_generate_with_quantize(capsys):
    assert cli_main(["generate", "--model", "random:tiny", "--quantize", "int4:g64",
                     "--quantize-head", "--prompt-ids", "1,2,3", "--max-new-tokens", "3",
                     "--json", "--backend", "linear=eager"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["token_ids"]) == 3


def test_bad_scheme_is_one_line_error(capsys):
    assert cli_main(["generate", "--model", "random:tiny", "--quantize", "int5",
                     "--prompt-ids", "1", "--max-new-tokens", "1"]) == 2
    assert "unknown quantization scheme 'int5'" in capsys.readouterr().err


def test_info_lists_bytes_per_token_per_scheme(capsys):
    assert cli_main(["info", "--model", "random:0.6B", "--dtype", "bfloat16", "--json"]) == 0
    schemes = json.loads(capsys.readouterr().out)["schemes"]
    assert set(schemes) == {"bfloat16", "int8", "int8 + head", "int4", "int4 + head", "w8a8",
                            "w8a8 + head", "w4a8", "w4a8 + head"}
    per_token = {k: v["bytes_per_token"] for k, v in schemes.items()}
    # Activation quantization changes no weight byte.
    assert per_token["w8a8 + head"] == per_token["int8 + head"]
    assert per_token["w4a8"] == per_token["int4"]
    assert per_token["int4 + head"] < per_token["int4"] < per_token["int8"] < per_token["bfloat16"]
    # bfloat16: every weight read once per token, the tied head once, one embedding row.
    spec = preset("0.6B")
    assert per_token["bfloat16"] == 2 * (spec.parameter_count(count_tied_twice=False)
                                         + spec.hidden_size)


def test_moe_per_token_bytes_count_the_active_experts_only():
    spec = preset("30B-A3B")
    int4 = resolve_scheme("int4")
    sizes = weight_bytes(spec, torch.bfloat16, int4)
    assert sizes.per_token < sizes.resident / 5
