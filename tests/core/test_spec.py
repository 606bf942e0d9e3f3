import dataclasses
import math

import pytest

from qwen3core import PRESETS, Qwen3Spec, SpecError, preset
from qwen3core.rope_scaling import RopeScaling


def test_from_dict_ignores_unknown_keys_and_reads_moe_fields():
    spec = Qwen3Spec.from_dict({
        "hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
        "num_hidden_layers": 3, "intermediate_size": 96, "vocab_size": 100,
        "num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 24,
        "norm_topk_prob": True, "decoder_sparse_step": 2, "mlp_only_layers": [3],
        "architectures": ["Qwen3MoeForCausalLM"], "torch_dtype": "bfloat16", "unrelated": 1,
    })
    assert spec.num_experts == 4 and spec.mlp_only_layers == (3,)
    assert spec.norm_topk_prob is True
    assert not hasattr(spec, "unrelated")


def test_sparse_layer_rule_follows_reference():
    spec = PRESETS["tiny-moe"].replace(num_hidden_layers=6, decoder_sparse_step=2,
                                       mlp_only_layers=(3,))
    # (i + 1) % 2 == 0 -> 1, 3, 5; 3 is forced dense.
    assert [spec.is_sparse_layer(i) for i in range(6)] == [False, True, False, False, False, True]
    assert not any(PRESETS["tiny"].is_sparse_layer(i) for i in range(2))


def test_spec_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        PRESETS["tiny"].hidden_size = 3  # type: ignore[misc]


@pytest.mark.parametrize("changes, message", [
    ({"num_attention_heads": 6, "num_key_value_heads": 4}, "multiple of num_key_value_heads"),
    ({"head_dim": 15}, "head_dim must be even"),
    ({"num_experts": 4, "num_experts_per_tok": 5, "moe_intermediate_size": 8},
     "num_experts_per_tok"),
    ({"hidden_size": 0}, "hidden_size must be positive"),
])
def test_invalid_specs_say_what_is_wrong(changes, message):
    with pytest.raises(SpecError, match=message):
        PRESETS["tiny"].replace(**changes)


def test_published_parameter_counts():
    # REFERENCE.md: 0.6B has 751,632,384 parameters with the tied head counted twice.
    spec = preset("0.6B")
    assert spec.parameter_count(count_tied_twice=True) == 751_632_384
    assert spec.parameter_count(count_tied_twice=False) == 596_049_920
    # The MoE presets: ~30.5B total / ~3.3B active, ~235B / ~22B (the published names).
    moe = preset("30B-A3B")
    assert 30.0e9 < moe.parameter_count() < 31.0e9
    assert 3.0e9 < moe.active_parameter_count() < 3.6e9
    big = preset("235B-A22B")
    assert 234e9 < big.parameter_count() < 236e9
    assert 21e9 < big.active_parameter_count() < 23e9


def test_every_published_size_has_a_preset():
    for name in ["0.6B", "1.7B", "4B", "8B", "14B", "32B", "30B-A3B", "235B-A22B", "tiny",
                 "tiny-moe"]:
        assert preset(name) is PRESETS[name]
    assert preset("0.6b") is PRESETS["0.6B"]
    with pytest.raises(SpecError, match="known presets"):
        preset("7B")


def test_round_trip_through_dict():
    spec = PRESETS["tiny-moe"].replace(mlp_only_layers=(1,))
    assert Qwen3Spec.from_dict(spec.to_dict()) == spec


def test_rope_scaling_is_a_frozen_field_that_round_trips():
    yarn = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32}
    spec = PRESETS["tiny"].replace(rope_scaling=yarn)  # a dict becomes the dataclass
    assert spec.rope_scaling == RopeScaling(**yarn)
    assert spec.to_dict()["rope_scaling"] == {**yarn, "truncate": True}  # unset: left out
    assert Qwen3Spec.from_dict(spec.to_dict()) == spec
    assert hash(spec) == hash(Qwen3Spec.from_dict(spec.to_dict()))
    assert PRESETS["tiny"].to_dict()["rope_scaling"] is None


@pytest.mark.parametrize("scaling, message", [
    ({"rope_type": "dynamic", "factor": 2.0}, r"'dynamic' is not implemented"),
    ({"rope_type": "yarn", "factor": 4.0}, r"needs original_max_position_embeddings"),
    ({"rope_type": "linear", "factor": -1.0}, r"factor must be positive"),
    ({"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 8,
      "beta_fast": 1.0, "beta_slow": 2.0}, r"beta_fast \(1.0\) must be at least beta_slow"),
    ({"rope_type": "linear", "factor": 2.0, "low_freq_factor": 1.0},
     r"keys qwen3core does not implement: \['low_freq_factor'\]"),
])
def test_rope_scaling_refuses_what_is_not_implemented(scaling, message):
    with pytest.raises(SpecError, match=message):
        PRESETS["tiny"].replace(rope_scaling=scaling)


def test_yarn_attention_factor_follows_transformers_defaults():
    assert RopeScaling("linear", 4.0).cos_sin_scale == 1.0
    assert RopeScaling("yarn", 4.0, 32).cos_sin_scale == pytest.approx(0.1 * math.log(4) + 1)
    assert RopeScaling("yarn", 4.0, 32, attention_factor=1.5).cos_sin_scale == 1.5
    both = RopeScaling("yarn", 4.0, 32, mscale=1.0, mscale_all_dim=0.5)
    assert both.cos_sin_scale == pytest.approx((0.1 * math.log(4) + 1)
                                               / (0.05 * math.log(4) + 1))
