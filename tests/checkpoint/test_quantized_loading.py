"""Loading AWQ, GPTQ and FP8 checkpoints end to end: each checkpoint is written by the tests in
its published layout (``qwen3core.testing.quant_formats``), beside a dense checkpoint of the
weights it stands for (dequantized by the writer's own formula). Loaded with the eager
components, both must hold the same weights, bit for bit, and give the same logits (up to
BLAS rounding: the dense reference's weights are memory-mapped from its file, the dequantized
ones freshly allocated, and MKL's blocking can depend on alignment).

Includes a sharded checkpoint (a layer's parts dealt into different files) and a
Qwen3-30B-A3B-shaped MoE (all layers sparse, per-expert keys, 32 query / 4 KV heads) with two
layers and eight experts.
"""

import json
from typing import ClassVar

import pytest
import torch

import qwen3core
from qwen3core import CheckpointError
from qwen3core.testing.quant_formats import quantize_checkpoint

DENSE = ("dense", {"num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                   "tie_word_embeddings": False})
# Qwen3-30B-A3B's structure (every layer MoE, normalised top-k, 32/4 heads, untied) shrunk
MOE_30B_A3B = ("moe", {"num_hidden_layers": 2, "num_attention_heads": 32,
                       "num_key_value_heads": 4, "head_dim": 16, "hidden_size": 128,
                       "num_experts": 8, "num_experts_per_tok": 2, "moe_intermediate_size": 48,
                       "norm_topk_prob": True, "decoder_sparse_step": 1, "mlp_only_layers": [],
                       "tie_word_embeddings": False})

CASES = {
    "awq-g32": (DENSE, {"method": "awq", "group_size": 32}),
    "awq-g16-sharded": (DENSE, {"method": "awq", "group_size": 16, "shards": 3}),
    "gptq4-sym-v1": (DENSE, {"method": "gptq", "bits": 4, "sym": True}),
    "gptq4-asym-descact-v1-sharded": (DENSE, {"method": "gptq", "bits": 4, "desc_act": True,
                                              "shards": 2}),
    "gptq8-asym-v2": (DENSE, {"method": "gptq", "bits": 8, "v1": False, "group_size": 16}),
    "gptq8-sym-descact": (DENSE, {"method": "gptq", "bits": 8, "sym": True, "desc_act": True}),
    "fp8-block32x16": (DENSE, {"method": "fp8", "block": (32, 16)}),
    "moe30b-gptq4-sharded": (MOE_30B_A3B, {"method": "gptq", "bits": 4, "group_size": 16,
                                           "shards": 3}),
    "moe30b-awq": (MOE_30B_A3B, {"method": "awq", "group_size": 16}),
    # Act-order: every expert's gate, up and down has its own column order.
    "moe30b-gptq4-descact": (MOE_30B_A3B, {"method": "gptq", "bits": 4, "group_size": 16,
                                           "desc_act": True}),
}


def _write(tmp_path, ref, case):
    (kind, overrides), options = CASES[case]
    source = ref.write_hf_checkpoint(tmp_path / "source", kind, overrides, seed=1)
    quantize_checkpoint(source, tmp_path / "quantized", tmp_path / "dense", **options)
    return tmp_path / "quantized", tmp_path / "dense"


def _weights_as_dense(model):
    """The state dict, with each linear that holds a quantized weight (the eager reference's
    ``quantized_weight()``) contributing that weight dequantized, under its dense key."""
    state = dict(model.state_dict())
    for name, module in model.named_modules():
        held = getattr(module, "quantized_weight", lambda: None)()
        if held is not None:
            state[f"{name}.weight"] = held.dequantize()
    return state


def _ids(vocab=512):
    return torch.randint(0, vocab, (2, 10), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("case", list(CASES))
def test_quantized_checkpoint_loads_as_the_dense_model_it_stands_for(case, tmp_path, ref):
    quantized, dense = _write(tmp_path, ref, case)
    if CASES[case][1].get("shards", 1) > 1:
        index = json.loads((quantized / "model.safetensors.index.json").read_text())
        files = {index["weight_map"][f"model.layers.0.self_attn.q_proj.{part}"]
                 for part in ("qweight", "qzeros", "scales")}
        assert len(files) > 1, "a layer's parts should be spread over shards"
    ours = qwen3core.load(str(quantized), device="cpu", backends=ref.EAGER)
    reference = qwen3core.load(str(dense), device="cpu", backends=ref.EAGER)
    assert ours.dtype == reference.dtype == torch.float32
    theirs = reference.model.state_dict()
    mine = _weights_as_dense(ours.model)
    assert sorted(mine) == sorted(theirs)
    assert [k for k, v in mine.items() if not torch.equal(v, theirs[k])] == []
    with torch.no_grad():
        got, want = ours.model(_ids()), reference.model(_ids())
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    # and the quantized weights are not a no-op: the dense source checkpoint differs
    source = qwen3core.load(str(tmp_path / "source"), device="cpu", backends=ref.EAGER)
    with torch.no_grad():
        assert not torch.equal(source.model(_ids()), want)


def test_stacked_experts_take_the_dequantized_weights(tmp_path, ref):
    """moe_grouped stacks the experts itself (no linear module per expert), so its experts
    load the dequantized weights through the ordinary per-expert keys."""
    quantized, dense = _write(tmp_path, ref, "moe30b-gptq4-sharded")
    backends = {**ref.EAGER, "moe": "grouped"}
    ours = qwen3core.load(str(quantized), device="cpu", backends=backends)
    reference = qwen3core.load(str(dense), device="cpu", backends=backends)
    with torch.no_grad():
        torch.testing.assert_close(ours.model(_ids()), reference.model(_ids()),
                                   rtol=1e-5, atol=1e-5)
        eager = qwen3core.load(str(dense), device="cpu", backends=ref.EAGER).model(_ids())
    torch.testing.assert_close(ours.model(_ids()), eager, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("case", ["awq-g16-sharded", "gptq4-asym-descact-v1-sharded",
                                  "gptq8-asym-v2", "moe30b-gptq4-sharded"])
def test_cpu_kernels_run_the_published_formats(case, tmp_path, ref):
    """The cpu backend's quantized kernels take the unpacked levels (load_quantized) and agree
    with the eager quantized reference on the same checkpoint."""
    quantized, _ = _write(tmp_path, ref, case)
    eager = qwen3core.load(str(quantized), device="cpu", backends=ref.EAGER)
    cpu = qwen3core.load(str(quantized), device="cpu", backends={**ref.EAGER, "linear": "cpu"})
    spec = cpu.spec
    packed = [m for m in cpu.model.modules() if getattr(m, "quant", None) is not None]
    assert len(packed) == spec.num_hidden_layers * (
        4 + 3 * (spec.num_experts if spec.num_experts else 1))
    with torch.no_grad():
        torch.testing.assert_close(cpu.model(_ids()), eager.model(_ids()),
                                   rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("case", ["moe30b-gptq4-sharded", "moe30b-awq", "moe30b-gptq4-descact"])
def test_cpu_moe_runs_the_published_formats_and_is_their_default(case, tmp_path, ref):
    """The cpu moe block (a layer's experts stacked, one operator) holds the published formats'
    experts quantized, act-order column orders included, agrees with the eager quantized
    reference, and is what a quantized MoE checkpoint gets when no moe is named."""
    quantized, _ = _write(tmp_path, ref, case)
    eager = qwen3core.load(str(quantized), device="cpu", backends=ref.EAGER)
    default = qwen3core.load(str(quantized), device="cpu")
    assert default.selection["moe"].name == "cpu"
    cpu = qwen3core.load(str(quantized), device="cpu", backends={**ref.EAGER, "moe": "cpu"})
    block = cpu.model.model.layers[0].mlp
    if CASES[case][1].get("desc_act"):
        assert block.gate_up_q.perms is not None  # the column orders went into the stack
    with torch.no_grad():
        want = eager.model(_ids())
        torch.testing.assert_close(cpu.model(_ids()), want, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(default.model(_ids()), want, rtol=1e-4, atol=1e-4)


def _config(directory):
    return json.loads((directory / "config.json").read_text())


def _set_quantization(directory, **changes):
    config = _config(directory)
    config["quantization_config"].update(changes)
    (directory / "config.json").write_text(json.dumps(config))


@pytest.fixture(scope="module")
def awq_dir(tmp_path_factory, ref):
    return _write(tmp_path_factory.mktemp("awq"), ref, "awq-g32")[0]


@pytest.mark.parametrize("changes, match", [
    ({"quant_method": "bitsandbytes"},
     r"quantization method 'bitsandbytes' is not supported\. qwen3core reads awq, gptq, fp8"),
    ({"version": "gemv"},
     r"unsupported AWQ quantization_config \(version 'gemv'.*supported: AWQ: bits 4, version"),
    ({"version": "exllama"}, r"version 'exllama'"),
    ({"bits": 3}, r"unsupported AWQ quantization_config \(bits 3\)"),
    ({"zero_point": False}, r"zero_point false"),
    ({"quant_method": "gptq", "bits": 2}, r"unsupported GPTQ quantization_config \(bits 2\)"),
    ({"quant_method": "gptq", "checkpoint_format": "marlin"}, r"checkpoint_format 'marlin'"),
    ({"quant_method": "gptq", "pack_dtype": "int16"}, r"pack_dtype 'int16'"),
    ({"quant_method": "fp8", "activation_scheme": "static"}, r"activation_scheme 'static'"),
    ({"quant_method": "fp8"}, r"weight_block_size None \(per-tensor FP8 has none\)"),
])
def test_unsupported_quantization_config_names_what_is_supported(awq_dir, tmp_path, ref,
                                                                 changes, match):
    import shutil

    copy = shutil.copytree(awq_dir, tmp_path / "c")
    _set_quantization(copy, **changes)
    with pytest.raises(CheckpointError, match=match):
        qwen3core.load(str(copy), device="cpu", backends=ref.EAGER)


def test_info_reads_a_quantized_config(awq_dir):
    spec, _ = qwen3core.checkpoint.read_spec(str(awq_dir))
    assert spec.num_hidden_layers == 2


def test_config_and_weights_that_disagree(tmp_path, ref):
    dense = ref.write_hf_checkpoint(tmp_path / "m", "dense", DENSE[1])
    config = _config(dense)
    config["quantization_config"] = {"quant_method": "awq", "bits": 4, "group_size": 32,
                                     "version": "gemm", "zero_point": True}
    (dense / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"declares awq quantization but no tensor ends "
                                              r"in '\.qweight'"):
        qwen3core.load(str(dense), device="cpu", backends=ref.EAGER)


def test_a_quantized_layer_missing_a_part(awq_dir, tmp_path, ref):
    import shutil

    from safetensors.torch import load_file, save_file

    copy = shutil.copytree(awq_dir, tmp_path / "c")
    tensors = load_file(str(copy / "model.safetensors"))
    del tensors["model.layers.1.mlp.down_proj.scales"]
    save_file(tensors, str(copy / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"quantized layer model\.layers\.1\.mlp\."
                                              r"down_proj has qweight but no scales"):
        qwen3core.load(str(copy), device="cpu", backends=ref.EAGER)


def test_a_quantized_layer_stored_in_the_wrong_dtype(awq_dir, tmp_path, ref):
    import shutil

    from safetensors.torch import load_file, save_file

    copy = shutil.copytree(awq_dir, tmp_path / "c")
    tensors = load_file(str(copy / "model.safetensors"))
    key = "model.layers.0.self_attn.o_proj.qweight"
    tensors[key] = tensors[key].float()
    save_file(tensors, str(copy / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"o_proj\.qweight is torch\.float32, but awq "
                                              r"stores qweight as int32"):
        qwen3core.load(str(copy), device="cpu", backends=ref.EAGER)


def test_a_quantized_layer_of_the_wrong_shape_is_a_mismatch(awq_dir, tmp_path, ref):
    import shutil

    config = _config(awq_dir)
    copy = shutil.copytree(awq_dir, tmp_path / "c")
    config["intermediate_size"] = 256  # the stored MLP is 128 wide
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"mlp\.up_proj\.weight .* is \[128, 64\], the "
                                              r"model needs \[256, 64\]"):
        qwen3core.load(str(copy), device="cpu", backends=ref.EAGER)


class LevelsLinear(torch.nn.Module):
    """A linear that takes its weight quantized (``QuantizedLinearModule``) and keeps only the
    levels, dequantizing on every call: the contract a quantized scheme's linear implements."""

    adopted: ClassVar[list] = []  # every QuantizedWeight handed over, across instances

    def __init__(self, in_features, out_features, *, dtype, device):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.empty(out_features, in_features, dtype=dtype,
                                                     device=device))
        self.quantized = None

    def load_quantized(self, weight):
        del self.weight  # the levels replace the dense weight: one copy only
        self.quantized = weight
        LevelsLinear.adopted.append(weight)

    def forward(self, x):
        w = self.weight if self.quantized is None else self.quantized.dequantize(x.dtype)
        return torch.nn.functional.linear(x, w)


class LevelsLinearPlugin:
    @qwen3core.hookimpl
    def qwen3core_linear(self):
        return qwen3core.Implementation(
            "linear", "levels-test",
            lambda ctx, i, o: LevelsLinear(i, o, dtype=ctx.dtype, device=ctx.device),
            summary="test: keeps quantized levels")


@pytest.mark.parametrize("case, expect_quantized", [
    ("gptq4-asym-descact-v1-sharded", True), ("moe30b-awq", True), ("fp8-block32x16", False)])
def test_a_quantized_linear_module_receives_the_levels(case, expect_quantized, tmp_path, ref):
    quantized, dense = _write(tmp_path, ref, case)
    LevelsLinear.adopted.clear()
    ours = qwen3core.load(str(quantized), device="cpu", backends={**ref.EAGER,
                          "linear": "levels-test"}, plugins=[LevelsLinearPlugin()])
    reference = qwen3core.load(str(dense), device="cpu", backends=ref.EAGER)
    spec = reference.spec
    per_layer = 4 + (3 * spec.num_experts if spec.num_experts else 3)
    assert len(LevelsLinear.adopted) == (spec.num_hidden_layers * per_layer
                                         if expect_quantized else 0)
    theirs = reference.model.state_dict()
    for name, module in ours.model.named_modules():
        if isinstance(module, LevelsLinear) and module.quantized is not None:
            assert "weight" not in module._parameters
            assert torch.equal(module.quantized.dequantize(), theirs[f"{name}.weight"])
    with torch.no_grad():
        torch.testing.assert_close(ours.model(_ids()), reference.model(_ids()),
                                   rtol=1e-5, atol=1e-5)


def test_quantizing_a_published_quantized_checkpoint_again_is_refused(awq_dir, ref):
    with pytest.raises(CheckpointError, match=r"is quantized already \(awq\); load it without "
                                              r"quantize="):
        qwen3core.load(str(awq_dir), device="cpu", backends=ref.EAGER, quantize="int8")
