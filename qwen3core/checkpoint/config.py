"""Reading a checkpoint's ``config.json`` into a :class:`~qwen3core.spec.Qwen3Spec`.

The checkpoint's config always wins: every architecture field comes from it. Configs written by
transformers 4.x and 5.x name a few things differently (``rope_theta`` at the top level or under
``rope_parameters``; ``num_experts`` or ``num_local_experts``), so those are normalised here; rope
settings are read in :mod:`.rope`, as transformers reads them. A config that asks for something
this framework does not implement (another architecture, a rope type, sliding windows, a
quantization format not in :mod:`.quantized`) is rejected instead of being run wrongly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from qwen3core.checkpoint.config_fields import normalise
from qwen3core.dtypes import parse_dtype
from qwen3core.errors import CheckpointError, Qwen3CoreError, SpecError
from qwen3core.spec import Qwen3Spec

from .rope import RopeConfigError, rope_settings

CONFIG_FILE = "config.json"
GENERATION_CONFIG_FILE = "generation_config.json"

QWEN3_MODEL_TYPES = {"qwen3": "Qwen3ForCausalLM", "qwen3_moe": "Qwen3MoeForCausalLM"}


def read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path} is not readable JSON ({exc}); re-download it") from None
    if not isinstance(value, dict):
        raise CheckpointError(f"{path} holds a JSON {type(value).__name__}, expected an object")
    return value


def read_config(directory: Path) -> dict[str, Any]:
    path = directory / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(
            f"{directory} has no {CONFIG_FILE}, so it is not a Hugging Face model directory. "
            "Pass the directory that holds config.json and the *.safetensors weights "
            "(for a hub model, the snapshot folder or simply its id, e.g. Qwen/Qwen3-0.6B)")
    return read_json(path)


def read_generation_config(directory: Path) -> dict[str, Any]:
    path = directory / GENERATION_CONFIG_FILE
    return read_json(path) if path.is_file() else {}


def spec_from_config(config: dict[str, Any], where: str) -> Qwen3Spec:
    """The spec ``config`` describes; ``where`` (a path or hub id) is named in errors."""
    _check_is_qwen3(config, where)
    from qwen3core.checkpoint.quantized import checkpoint_format

    checkpoint_format(config, where)  # an unsupported quantization_config fails here, by name
    values = dict(config)
    try:
        values["rope_theta"], values["rope_scaling"] = rope_settings(config)
    except RopeConfigError as exc:
        raise CheckpointError(f"{where}/{CONFIG_FILE}: {exc}") from None
    if values.get("num_experts") is None and values.get("num_local_experts") is not None:
        values["num_experts"] = values["num_local_experts"]  # transformers 5 spelling
    values = normalise(values, moe=config["model_type"] == "qwen3_moe", where=where)
    try:
        return Qwen3Spec.from_dict(values)
    except (SpecError, TypeError) as exc:
        raise CheckpointError(f"{where}/{CONFIG_FILE} does not describe a buildable Qwen3 "
                              f"model: {exc}") from None


def stored_dtype(config: dict[str, Any], where: str) -> torch.dtype | None:
    """The dtype the weights were saved in, as the config declares it (None if it does not)."""
    value = config.get("dtype", config.get("torch_dtype"))
    if value is None:
        return None
    try:
        return parse_dtype(str(value))
    except Qwen3CoreError:
        raise CheckpointError(f"{where}/{CONFIG_FILE} declares dtype {value!r}, which is not "
                              "a float type qwen3core can load (float32, bfloat16, float16, "
                              "float64)") from None


def _check_is_qwen3(config: dict[str, Any], where: str) -> None:
    model_type = config.get("model_type")
    architectures = config.get("architectures") or []
    if not (isinstance(architectures, list) and all(isinstance(a, str) for a in architectures)):
        raise CheckpointError(f"{where}/{CONFIG_FILE}: architectures must be a list of class "
                              f"names, got {architectures!r}"[:300])
    if not isinstance(model_type, str) or model_type not in QWEN3_MODEL_TYPES:
        raise CheckpointError(
            f"{where}/{CONFIG_FILE} describes a {model_type or 'model without a model_type'!s} "
            f"model ({', '.join(architectures) or 'no architectures listed'}), not Qwen3; "
            f"qwen3core loads model_type {' or '.join(QWEN3_MODEL_TYPES)} only")
    expected = QWEN3_MODEL_TYPES[model_type]
    if architectures and expected not in architectures:
        raise CheckpointError(
            f"{where}/{CONFIG_FILE} has model_type {model_type!r} but architectures "
            f"{architectures}; a Qwen3 causal LM checkpoint lists {expected!r}")
    unsupported = []
    if config.get("use_sliding_window"):
        unsupported.append("sliding-window attention (use_sliding_window=true)")
    if config.get("hidden_act") not in (None, "silu"):
        unsupported.append(f"activation {config['hidden_act']!r} (Qwen3 uses silu)")
    if unsupported:
        raise CheckpointError(f"{where}/{CONFIG_FILE} asks for what qwen3core does not "
                              f"implement: {'; '.join(unsupported)}")

