"""`qwen3 bench`'s read floor: the bytes a batch-1 decode step reads, the share of the floor each
combination reaches, and the read rate measured with the cpu backend's read loop."""

from __future__ import annotations

import json

import pytest
import torch

from qwen3core.bench.floor import ReadRate, decode_bytes_per_token, floor_lines
from qwen3core.quant.registry import resolve_scheme
from qwen3core.quant.sizes import kv_cache_bytes_per_token, weight_bytes
from qwen3core.spec import preset


def test_a_step_reads_the_weights_of_a_token_and_the_kv_cache_at_the_mean_position():
    spec = preset("0.6B")
    got, why = decode_bytes_per_token("random:0.6B", torch.bfloat16, None, False, 16, 64)
    assert why == ""
    # 16 prompt tokens; the 63 timed steps sit at positions 16..78, 47 on average.
    kv = kv_cache_bytes_per_token(spec, torch.bfloat16)
    assert kv == 28 * 2 * 8 * 128 * 2  # layers x (K, V) x KV heads x head_dim x bytes
    assert got == weight_bytes(spec, torch.bfloat16).per_token + kv * 47
    assert 1.19e9 < got < 1.20e9  # the 0.6B's 1.192 GB of weights, as qwen3 info prints
    quantized, _ = decode_bytes_per_token("random:0.6B", torch.bfloat16, "int4", True, 16, 64)
    assert quantized == (weight_bytes(spec, torch.bfloat16, resolve_scheme("int4"), True)
                         .per_token + kv * 47)


def test_a_checkpoint_reads_its_config_and_a_prequantized_one_is_not_guessed(tmp_path):
    config = {k: v for k, v in preset("tiny").to_dict().items()
              if v is not None and k not in ("num_experts", "num_experts_per_tok",
                                             "moe_intermediate_size", "norm_topk_prob",
                                             "decoder_sparse_step", "mlp_only_layers")}
    config.update(model_type="qwen3", torch_dtype="float32")  # a dense config.json
    (tmp_path / "config.json").write_text(json.dumps(config))
    got, _ = decode_bytes_per_token(str(tmp_path), torch.float32, None, False, 5, 6)
    want, _ = decode_bytes_per_token("random:tiny", torch.float32, None, False, 5, 6)
    assert got == want
    config["quantization_config"] = {"quant_method": "awq", "bits": 4}
    (tmp_path / "config.json").write_text(json.dumps(config))
    got, why = decode_bytes_per_token(str(tmp_path), torch.float32, None, False, 5, 6)
    assert got is None and "prequantized" in why


def test_each_row_gets_the_share_of_its_own_floor():
    table = [{"combination": "auto", "decode_b1_tok_s": 30.0},
             {"combination": "broken", "error": "it failed"},
             {"combination": "transformers", "decode_b1_tok_s": 10.0}]
    lines = floor_lines(ReadRate(40e9), table, (int(0.5e9), ""), (int(1e9), ""))
    # auto reads 0.5 GB a token (quantized): at most 80 tok/s; transformers the dense 1 GB: 40.
    assert table[0]["read_floor_b1_tok_s"] == pytest.approx(80.0)
    assert table[0]["decode_b1_share_of_floor"] == pytest.approx(30 / 80)
    assert table[2]["decode_b1_share_of_floor"] == pytest.approx(10 / 40)
    assert "broken" not in " ".join(lines)
    assert lines[0].startswith("read floor: 40.0 GB/s")
    assert "auto decode b=1: 38 % of its read floor" in lines[1]
    unknown = floor_lines(ReadRate(40e9), [dict(table[0])], (None, "a prequantized checkpoint"),
                          (None, ""))
    assert unknown[1] == "auto: no floor (a prequantized checkpoint)"
    assert floor_lines(ReadRate(None, "no compiler"), table, (1, ""), (1, "")) == [
        "read floor: not measured (no compiler)"]
