"""Every architecture field of a Qwen3 ``config.json``: its type, its range, and what a missing
one means.

A field that decides a weight's shape is **required**: no default can guess it, and guessing
would only move the error to a list of mismatched weights. Every other field is **optional** and
takes the default transformers' ``Qwen3Config`` / ``Qwen3MoeConfig`` use (checked against
transformers 5; ``docs/checkpoints.md`` has the same table):

==========================  ==========================  =========================================
field                       dense (``qwen3``)           MoE (``qwen3_moe``)
==========================  ==========================  =========================================
vocab_size                  required                    required
hidden_size                 required                    required
num_hidden_layers           required                    required
num_attention_heads         required                    required
num_key_value_heads         required                    required
intermediate_size           required                    required if a layer is dense, else 6144
head_dim                    required                    hidden_size // num_attention_heads
num_experts                 (0: dense)                  required (or num_local_experts)
moe_intermediate_size       —                           required
num_experts_per_tok         —                           8
norm_topk_prob              —                           false
decoder_sparse_step         —                           1
mlp_only_layers             —                           []
rms_norm_eps                1e-6                        1e-6
rope_theta                  10000.0                     10000.0
max_position_embeddings     32768                       32768
tie_word_embeddings         false                       false
attention_bias              false                       false
bos_token_id                null                        null
eos_token_id                null                        null
==========================  ==========================  =========================================

Types are strict: ``hidden_size: 64.0`` is an error, not 64, because a writer that emits floats
for sizes is broken in ways that a silent conversion would hide.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from qwen3core.errors import CheckpointError

# The largest size any field may name; far above every real model (the memory check refuses
# what does not fit long before), it keeps the arithmetic on sizes from running away.
MAX_SIZE = 2**40

POSITIVE_INTS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                 "num_key_value_heads", "intermediate_size", "head_dim",
                 "max_position_embeddings", "moe_intermediate_size", "num_experts_per_tok",
                 "decoder_sparse_step")
POSITIVE_FLOATS = ("rms_norm_eps", "rope_theta")
BOOLS = ("tie_word_embeddings", "attention_bias", "norm_topk_prob")

REQUIRED = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
            "num_key_value_heads")
REQUIRED_DENSE = ("intermediate_size", "head_dim")
REQUIRED_MOE = ("num_experts", "moe_intermediate_size")

DEFAULTS: dict[str, Any] = {  # transformers' Qwen3Config / Qwen3MoeConfig class defaults
    "rms_norm_eps": 1e-6,
    "rope_theta": 10000.0,
    "max_position_embeddings": 32768,
    "tie_word_embeddings": False,
    "attention_bias": False,
    "bos_token_id": None,
    "eos_token_id": None,
}
DEFAULTS_MOE: dict[str, Any] = {
    "intermediate_size": 6144,
    "num_experts_per_tok": 8,
    "norm_topk_prob": False,
    "decoder_sparse_step": 1,
    "mlp_only_layers": [],
}


def normalise(config: Mapping[str, Any], *, moe: bool, where: str) -> dict[str, Any]:
    """The spec's fields from ``config`` (already Qwen3-checked, rope and expert spellings
    normalised), type- and range-checked, with the defaults above filled in. Raises one
    :class:`CheckpointError` naming every bad or missing field."""
    values = dict(config)
    problems: list[str] = []
    required = REQUIRED + (REQUIRED_MOE if moe else REQUIRED_DENSE)
    missing = [name for name in required if values.get(name) is None]
    if moe and values.get("intermediate_size") is None and _has_dense_layer(values):
        missing.append("intermediate_size")
    if missing:
        problems.append(f"missing required field{'s' * (len(missing) > 1)} "
                        f"{', '.join(missing)} (they decide the weights' shapes)")
    for name, default in {**DEFAULTS, **(DEFAULTS_MOE if moe else {})}.items():
        if values.get(name) is None:
            values[name] = default
    if moe and values.get("head_dim") is None:
        heads, hidden = values.get("num_attention_heads"), values.get("hidden_size")
        if _is_int(heads) and _is_int(hidden) and heads > 0:
            values["head_dim"] = hidden // heads
    if not moe:
        values["num_experts"] = 0
        values.pop("mlp_only_layers", None)
    for name in POSITIVE_INTS:
        if values.get(name) is not None:
            problems += _check_int(name, values[name], minimum=1)
    if moe and values.get("num_experts") is not None:
        problems += _check_int("num_experts", values["num_experts"], minimum=1)
    for name in POSITIVE_FLOATS:
        problems += _check_float(name, values[name])
    for name in BOOLS:
        if name in values and not isinstance(values[name], bool):
            problems.append(f"{name} must be true or false, got {values[name]!r}")
    problems += _check_token_ids(values)
    if moe:
        layers = values.get("mlp_only_layers")
        if not (isinstance(layers, list) and all(_is_int(i) and 0 <= i < MAX_SIZE
                                                 for i in layers)):
            problems.append(f"mlp_only_layers must be a list of layer indices, got "
                            f"{_short(layers)}")
        else:
            values["mlp_only_layers"] = tuple(layers)
    if problems:
        raise CheckpointError(f"{where}/config.json: " + "; ".join(problems))
    return values


def _has_dense_layer(values: Mapping[str, Any]) -> bool:
    step = values.get("decoder_sparse_step", 1)
    return bool(values.get("mlp_only_layers")) or (step is not None and step != 1)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_int(name: str, value: Any, *, minimum: int) -> list[str]:
    if not _is_int(value):
        return [f"{name} must be an integer, got {_short(value)}"]
    if not minimum <= value <= MAX_SIZE:
        return [f"{name} must be in {minimum}..{MAX_SIZE}, got {value}"]
    return []


def _check_float(name: str, value: Any) -> list[str]:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return [f"{name} must be a number, got {_short(value)}"]
    if not (math.isfinite(value) and value > 0):
        return [f"{name} must be a positive finite number, got {value!r}"]
    return []


def _check_token_ids(values: dict[str, Any]) -> list[str]:
    problems = []
    bos = values.get("bos_token_id")
    if bos is not None and not (_is_int(bos) and bos >= 0):
        problems.append(f"bos_token_id must be a token id or null, got {_short(bos)}")
    eos = values.get("eos_token_id")
    if isinstance(eos, list):
        if not all(_is_int(t) and t >= 0 for t in eos):
            problems.append(f"eos_token_id must be token ids, got {_short(eos)}")
        else:
            values["eos_token_id"] = tuple(eos)
    elif eos is not None and not (_is_int(eos) and eos >= 0):
        problems.append(f"eos_token_id must be a token id, a list of them or null, got "
                        f"{_short(eos)}")
    return problems


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
