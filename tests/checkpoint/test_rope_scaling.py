"""Rope settings are read as transformers reads them, and scaled RoPE computes what it computes.

One small checkpoint (one layer, trained context 128) is saved by transformers; each case edits
its config.json the way configs are found in the wild (transformers 5's ``rope_parameters``,
4.x's top-level ``rope_theta`` with ``rope_scaling``, and both at once: a transformers-5 config
to which the model card's YaRN block was pasted) and loads it into qwen3core and into
transformers. ``original_max_position_embeddings`` is 32 so that prompts of 100 tokens and
decode steps past position 32 are cheap and exercise the interpolated frequencies.
"""

import json
import shutil

import pytest
import torch

import qwen3core
from qwen3core import CheckpointError
from qwen3core.rope_scaling import RopeScaling

CARD_YARN = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32}

# name -> (changes to config.json (None deletes a key), the rope scaling qwen3core must read)
CASES = {
    "yarn in rope_parameters (transformers 5)": (
        {"rope_parameters": {**CARD_YARN, "rope_theta": 1e6}}, RopeScaling(**CARD_YARN)),
    "yarn pasted beside a plain rope_parameters": (
        {"rope_scaling": CARD_YARN}, RopeScaling(**CARD_YARN)),
    "yarn as transformers 4.x writes it": (
        {"rope_parameters": None, "rope_theta": 1e6,
         "rope_scaling": {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32}},
        RopeScaling(**CARD_YARN)),
    "yarn with every option": (
        {"rope_parameters": {"rope_type": "yarn", "rope_theta": 1e6, "factor": 8.0,
                             "original_max_position_embeddings": 24, "beta_fast": 16.0,
                             "beta_slow": 2.0, "truncate": False, "attention_factor": 1.25}},
        RopeScaling("yarn", 8.0, 24, attention_factor=1.25, beta_fast=16.0, beta_slow=2.0,
                    truncate=False)),
    "yarn with mscale": (
        {"rope_parameters": {**CARD_YARN, "rope_theta": 1e6, "mscale": 1.0,
                             "mscale_all_dim": 0.5}},
        RopeScaling(**CARD_YARN, mscale=1.0, mscale_all_dim=0.5)),
    "linear": ({"rope_parameters": {"rope_type": "linear", "factor": 2.0, "rope_theta": 1e6}},
               RopeScaling("linear", 2.0)),
}
PROMPT = torch.randint(0, 512, (1, 100), generator=torch.Generator().manual_seed(3))


@pytest.fixture(scope="module")
def base(tmp_path_factory, ref):
    directory = tmp_path_factory.mktemp("rope-base")
    return ref.write_hf_checkpoint(directory, "dense", {
        "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 2,
        "tie_word_embeddings": True, "max_position_embeddings": 128,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1e6}})


def _edited(base, tmp_path, changes):
    directory = tmp_path / "model"
    shutil.copytree(base, directory)
    path = directory / "config.json"
    config = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    path.write_text(json.dumps(config))
    return directory


def _rope_names():
    names = ["eager"]
    from qwen3core.registry import get_registry

    if get_registry().get("rope", "cpu").unavailable_reason(torch.device("cpu"),
                                                           torch.float32) is None:
        names.append("cpu")
    return names


@pytest.mark.parametrize("case", CASES)
def test_scaled_rope_matches_transformers_past_the_original_context(case, base, tmp_path, ref):
    changes, expected = CASES[case]
    directory = _edited(base, tmp_path, changes)
    reference = ref.load_reference(directory, torch.float32)
    assert reference.config.rope_parameters["rope_type"] == expected.rope_type  # the premise
    with torch.no_grad():
        theirs = reference(PROMPT).logits
    for rope in _rope_names():
        loaded = qwen3core.load(str(directory), device="cpu", backends={**ref.EAGER, "rope": rope})
        assert loaded.spec.rope_scaling == expected
        assert loaded.spec.rope_theta == reference.config.rope_parameters["rope_theta"]
        with torch.no_grad():
            ours = loaded.model(PROMPT)
        assert (ours - theirs).abs().max().item() <= 1e-4, rope
        # Decode steps through the KV cache, at positions 40..47 (past the original 32).
        prompt = PROMPT[:, :40]
        theirs_tokens, _ = ref.reference_greedy(reference, prompt, 8)
        assert ref.qwen3core_greedy(loaded.model, prompt, 8) == theirs_tokens, rope


def test_pasted_yarn_block_wins_as_in_transformers(base, tmp_path):
    """The issue's case: a plain ``rope_parameters`` and a YaRN ``rope_scaling``. transformers
    applies YaRN (and, as the pasted block names no theta, its default theta 10000)."""
    directory = _edited(base, tmp_path, {"rope_scaling": CARD_YARN})
    spec = qwen3core.load(str(directory), device="cpu", backends={"rope": "eager"}).spec
    assert spec.rope_scaling == RopeScaling(**CARD_YARN)
    assert spec.rope_theta == 10_000.0


@pytest.mark.parametrize("changes, expected", [
    ({"rope_scaling": {"rope_type": "dynamic", "factor": 2.0}},
     r"rope_scaling\.rope_type='dynamic' asks for rope scaling qwen3core does not implement"),
    ({"rope_scaling": {"type": "longrope", "factor": 2.0}}, r"rope_scaling\.rope_type='longrope'"),
    ({"rope_parameters": {"rope_type": "llama3", "factor": 8.0, "rope_theta": 1e6}},
     r"rope_parameters\.rope_type='llama3'"),
    ({"rope_parameters": {"rope_type": "default", "rope_theta": 1e6,
                          "partial_rotary_factor": 0.5}},
     r"partial_rotary_factor=0\.5 is not implemented"),
    ({"rope_parameters": {"rope_type": "yarn", "rope_theta": 1e6, "factor": 0.0}},
     r"rope_parameters is not a valid yarn rope scaling: .*factor must be positive"),
    ({"rope_parameters": {"full_attention": {"rope_type": "default", "rope_theta": 1e6}}},
     r"rope_parameters holds one rope block per layer type"),
])
def test_rope_settings_that_are_not_implemented_are_refused(base, tmp_path, changes, expected):
    directory = _edited(base, tmp_path, changes)
    with pytest.raises(CheckpointError, match=expected):
        qwen3core.load(str(directory), device="cpu", backends={"rope": "eager"})


def test_info_shows_the_rope_scaling(base, tmp_path, capsys):
    from qwen3core.cli import main

    directory = _edited(base, tmp_path, {"rope_scaling": CARD_YARN})
    assert main(["info", "--model", str(directory)]) == 0
    out = capsys.readouterr().out
    assert "rope theta 10000, context 128 (yarn rope scaling, factor 4, original context 32)" \
        in out
