"""Shared fixtures: Hugging Face checkpoints written by ``transformers`` (the reference
implementation) from small configs, and greedy decoding on both sides.

Weights are drawn wider than transformers' 0.02 default (projections ``2/sqrt(fan_in)``,
embeddings ``4/sqrt(hidden)``, norms around 1, as qwen3core's own random init) so that greedy
continuations vary from token to token and a loader that drops or transposes anything shows.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers", reason="transformers is the reference the "
                                   "checkpoint tests compare against (pip install -e .[test])")

EAGER = {"attention": "eager", "norm": "eager", "rope": "eager", "kv_cache": "dynamic",
         "linear": "eager", "mlp": "eager", "moe": "eager", "runner": "eager"}

SMALL = {"vocab_size": 512, "hidden_size": 64, "intermediate_size": 128, "head_dim": 16,
             "max_position_embeddings": 512, "rms_norm_eps": 1e-6}

# name -> (model kind, config overrides, max_shard_size or None)
CASES = {
    "dense-tied-gqa1": ("dense", {"num_hidden_layers": 2, "num_attention_heads": 4,
                                      "num_key_value_heads": 4, "tie_word_embeddings": True}, None),
    "dense-untied-gqa2-sharded": ("dense", {"num_hidden_layers": 3, "num_attention_heads": 4,
                                                "num_key_value_heads": 2,
                                                "tie_word_embeddings": False}, "60KB"),
    # Qwen3's real vocabulary, so the official tokenizer fits (one narrow layer: ~10M values).
    "dense-real-vocab": ("dense", {"num_hidden_layers": 1, "num_attention_heads": 4,
                                   "num_key_value_heads": 2, "tie_word_embeddings": True,
                                   "vocab_size": 151936}, None),
    "dense-tied-gqa4": ("dense", {"num_hidden_layers": 2, "num_attention_heads": 8,
                                      "num_key_value_heads": 2, "tie_word_embeddings": True,
                                      "rope_theta": 1_000_000.0}, None),
    "moe-normtopk-mlponly-sharded": ("moe", {
        "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2, "num_experts": 8,
        "num_experts_per_tok": 2, "moe_intermediate_size": 32, "norm_topk_prob": True,
        "decoder_sparse_step": 1, "mlp_only_layers": [0], "tie_word_embeddings": False}, "40KB"),
    "moe-rawtopk-step2-gqa4": ("moe", {
        "num_hidden_layers": 4, "num_attention_heads": 8, "num_key_value_heads": 2, "num_experts": 8,
        "num_experts_per_tok": 2, "moe_intermediate_size": 32, "norm_topk_prob": False,
        "decoder_sparse_step": 2, "mlp_only_layers": [3], "tie_word_embeddings": True}, None),
}


def hf_classes(kind: str):
    if kind == "moe":
        return transformers.Qwen3MoeConfig, transformers.Qwen3MoeForCausalLM
    return transformers.Qwen3Config, transformers.Qwen3ForCausalLM


@torch.no_grad()
def widen_init(model: torch.nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    hidden = model.config.hidden_size
    for name, param in model.named_parameters():
        if name.endswith("norm.weight"):
            value = torch.empty(param.shape).uniform_(0.8, 1.2, generator=gen)
        elif "embed_tokens" in name or name.startswith("lm_head"):
            value = torch.randn(param.shape, generator=gen) * (4.0 / math.sqrt(hidden))
        else:  # [out, in] linears and transformers' fused [experts, out, in] expert weights
            value = torch.randn(param.shape, generator=gen) * (2.0 / math.sqrt(param.shape[-1]))
        param.copy_(value)


def write_hf_checkpoint(directory: Path, kind: str, overrides: dict, *, seed: int = 0,
                        dtype: torch.dtype = torch.float32, max_shard_size: str | None = None
                        ) -> Path:
    config_cls, model_cls = hf_classes(kind)
    model = model_cls(config_cls(**{**SMALL, **overrides}))
    widen_init(model, seed)
    model = model.to(dtype)
    kwargs = {"max_shard_size": max_shard_size} if max_shard_size else {}
    model.save_pretrained(directory, **kwargs)
    return directory


@pytest.fixture(scope="session")
def hf_checkpoint(tmp_path_factory):
    """``hf_checkpoint(case, dtype=torch.float32)`` -> directory written by transformers."""
    made: dict[tuple, Path] = {}

    def make(case: str, dtype: torch.dtype = torch.float32) -> Path:
        key = (case, dtype)
        if key not in made:
            kind, overrides, shard = CASES[case]
            root = tmp_path_factory.mktemp(f"{case}-{str(dtype).split('.')[-1]}")
            made[key] = write_hf_checkpoint(root, kind, overrides, dtype=dtype,
                                            max_shard_size=shard)
        return made[key]

    return make


def load_reference(directory: Path, dtype: torch.dtype):
    """transformers loading the same directory, with its readable eager attention."""
    kind = "moe" if "Moe" in (directory / "config.json").read_text() else "dense"
    _, model_cls = hf_classes(kind)
    return model_cls.from_pretrained(directory, dtype=dtype, attn_implementation="eager").eval()


@torch.no_grad()
def reference_greedy(model, prompt: torch.Tensor, steps: int
                     ) -> tuple[list[int], list[float]]:
    """transformers' greedy tokens (``generate``) and, per step, its own top-1 minus top-2
    logit margin."""
    out = model.generate(prompt, do_sample=False, max_new_tokens=steps, min_new_tokens=steps,
                         output_logits=True, return_dict_in_generate=True, pad_token_id=0)
    tokens = out.sequences[0, prompt.shape[1]:].tolist()
    margins = []
    for logits in out.logits:  # one [1, vocab] per step
        top2 = logits[0].float().topk(2).values
        margins.append(float(top2[0] - top2[1]))
    return tokens, margins


def qwen3core_greedy(model, prompt: torch.Tensor, steps: int) -> list[int]:
    """Greedy tokens through the generation steps (prefill, then decode_one) and a KV cache."""
    from qwen3core.generation.steps import Steps

    runner = Steps(model)
    cache = model.new_cache(prompt.shape[0], prompt.shape[1] + steps)
    logits = runner.prefill(prompt, None, cache)  # [1, vocab]
    tokens = []
    for _ in range(steps):
        token = logits.argmax(-1, keepdim=True)  # [1, 1]
        tokens.append(int(token))
        logits = runner.decode_one(token, cache)
    return tokens


@pytest.fixture(scope="session")
def ref():
    """The helpers above, for test modules (importlib mode cannot import a conftest)."""
    import types

    return types.SimpleNamespace(
        EAGER=EAGER, CASES=CASES, SMALL=SMALL, write_hf_checkpoint=write_hf_checkpoint,
        load_reference=load_reference, reference_greedy=reference_greedy,
        qwen3core_greedy=qwen3core_greedy)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """These shapes are tiny: a second thread only adds synchronisation, and on a shared
    2-core machine the oversubscription made the tests ~10x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
