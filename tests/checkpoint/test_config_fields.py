"""config.json fields: required ones named when missing, optional ones default like
transformers, strict types, and the outline checked before the skeleton (issue 18 items 2, 3)."""

import json
import shutil
import time

import pytest
import torch

import qwen3core
from qwen3core import CheckpointError
from qwen3core.checkpoint.config import spec_from_config
from qwen3core.checkpoint.config_fields import REQUIRED, REQUIRED_DENSE, REQUIRED_MOE

transformers = pytest.importorskip("transformers", reason="transformers is the reference for "
                                   "the default values")

DENSE = {"model_type": "qwen3", "vocab_size": 96, "hidden_size": 32, "num_hidden_layers": 2,
         "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 48,
         "head_dim": 8}
MOE = {"model_type": "qwen3_moe", "vocab_size": 96, "hidden_size": 32, "num_hidden_layers": 2,
       "num_attention_heads": 4, "num_key_value_heads": 2, "num_experts": 16,
       "moe_intermediate_size": 16}


@pytest.fixture
def small(hf_checkpoint, tmp_path):
    directory = tmp_path / "model"
    shutil.copytree(hf_checkpoint("dense-tied-gqa1"), directory)
    return directory


def _edit(directory, drop=(), **changes):
    path = directory / "config.json"
    config = json.loads(path.read_text())
    for key in drop:
        config.pop(key, None)
    config.update(changes)
    path.write_text(json.dumps(config))


@pytest.mark.parametrize("field", REQUIRED + REQUIRED_DENSE)
def test_a_missing_required_dense_field_is_named(field):
    config = {k: v for k, v in DENSE.items() if k != field}
    with pytest.raises(CheckpointError, match=f"missing required field {field} "):
        spec_from_config(config, "model")


@pytest.mark.parametrize("field", REQUIRED + REQUIRED_MOE)
def test_a_missing_required_moe_field_is_named(field):
    config = {k: v for k, v in MOE.items() if k != field}
    with pytest.raises(CheckpointError, match=f"missing required field {field} "):
        spec_from_config(config, "model")


def test_a_moe_config_with_dense_layers_requires_intermediate_size():
    with pytest.raises(CheckpointError, match="missing required field intermediate_size"):
        spec_from_config({**MOE, "mlp_only_layers": [0]}, "model")


@pytest.mark.parametrize("kind", ["dense", "moe"])
def test_optional_fields_default_to_what_transformers_uses(kind):
    given = DENSE if kind == "dense" else MOE
    cls = transformers.Qwen3Config if kind == "dense" else transformers.Qwen3MoeConfig
    reference = cls(**{k: v for k, v in given.items() if k != "model_type"})
    spec = spec_from_config(dict(given), "model")
    assert spec.rope_theta == reference.rope_parameters["rope_theta"] == 10000.0
    for field in ("rms_norm_eps", "max_position_embeddings", "tie_word_embeddings",
                  "bos_token_id", "eos_token_id"):
        assert getattr(spec, field) == getattr(reference, field), field
    assert spec.head_dim == getattr(reference, "head_dim", None) or (
        spec.head_dim == reference.hidden_size // reference.num_attention_heads)
    if kind == "moe":
        for field in ("num_experts_per_tok", "norm_topk_prob", "decoder_sparse_step"):
            assert getattr(spec, field) == getattr(reference, field), field
        assert list(spec.mlp_only_layers) == reference.mlp_only_layers


@pytest.mark.parametrize("field, value, complaint", [
    ("hidden_size", 64.0, "hidden_size must be an integer, got 64.0"),
    ("num_hidden_layers", True, "num_hidden_layers must be an integer"),
    ("vocab_size", "512", "vocab_size must be an integer"),
    ("head_dim", 0, "head_dim must be in 1.."),
    ("rope_theta", -1.0, "rope_theta must be a positive finite number"),
    ("rms_norm_eps", "tiny", "rms_norm_eps must be a number"),
    ("tie_word_embeddings", "yes", "tie_word_embeddings must be true or false"),
    ("eos_token_id", [1, "2"], "eos_token_id must be token ids"),
])
def test_a_value_of_the_wrong_type_or_range_is_named(field, value, complaint):
    with pytest.raises(CheckpointError, match=complaint.replace(".", r"\.").replace("(", r"\(")):
        spec_from_config({**DENSE, field: value}, "model")


def test_a_checkpoint_without_hidden_size_blames_the_field_not_the_weights(small, ref):
    _edit(small, drop=["hidden_size"])
    with pytest.raises(CheckpointError) as info:
        qwen3core.load(small, device="cpu", backends=ref.EAGER)
    assert "missing required field hidden_size" in str(info.value)
    assert "wrong shape" not in str(info.value) and "proj" not in str(info.value)


def test_ten_million_layers_in_config_fail_before_the_skeleton_is_built(small, ref):
    _edit(small, num_hidden_layers=10**7)
    started = time.monotonic()
    with pytest.raises(CheckpointError, match=r"num_hidden_layers=10000000 but the checkpoint "
                                              r"holds 2 layers \(0\.\.1\)"):
        qwen3core.load(small, device="cpu", backends=ref.EAGER)
    assert time.monotonic() - started < 30  # was minutes; the skeleton would be 10**7 layers


def test_a_wrong_vocab_size_is_named_against_the_embedding(small, ref):
    _edit(small, vocab_size=1000)
    with pytest.raises(CheckpointError, match=r"vocab_size=1000.*model.embed_tokens.weight is "
                                              r"\[512, 64\]"):
        qwen3core.load(small, device="cpu", backends=ref.EAGER)


def test_a_config_without_rope_theta_matches_transformers_outputs(small, ref):
    _edit(small, drop=["rope_theta", "rope_parameters", "rope_scaling"])
    ours = qwen3core.load(small, device="cpu", backends=ref.EAGER, dtype="float32")
    theirs = transformers.Qwen3ForCausalLM.from_pretrained(small, dtype=torch.float32,
                                                           attn_implementation="eager").eval()
    assert ours.spec.rope_theta == 10000.0
    ids = torch.tensor([[1, 5, 9, 30, 200, 7]])
    with torch.no_grad():
        torch.testing.assert_close(ours.model(ids), theirs(ids).logits, atol=1e-4, rtol=1e-4)
