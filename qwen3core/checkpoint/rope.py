"""A config's rope settings (theta and scaling), read as transformers 5 reads them.

Configs spell them three ways: transformers 4.x writes ``rope_theta`` at the top level and the
scaling as ``rope_scaling`` (with ``type`` or ``rope_type``); transformers 5 writes one
``rope_parameters`` block holding ``rope_theta`` and ``rope_type``; and a transformers-5 config
to which a user pasted a model card's YaRN block holds both. transformers 5 resolves them so
(``PreTrainedConfig.convert_rope_params_to_dict`` and ``standardize_rope_params``):

* a non-empty ``rope_scaling`` *replaces* ``rope_parameters`` as a whole;
* theta is the chosen block's ``rope_theta``, else the top-level ``rope_theta``, else 10000
  (so a pasted YaRN block without ``rope_theta`` drops the theta of ``rope_parameters``:
  that is what transformers runs, and what parity with it requires);
* ``rope_type`` falls back to ``type``, then to ``default``;
* yarn's ``original_max_position_embeddings`` falls back to ``max_position_embeddings``, and
  its ``factor``, if null, to ``max_position_embeddings / original_max_position_embeddings``.

Whatever this framework does not implement (a rope type, a partial rotary factor, per-layer
rope blocks) is refused with the key that asks for it; nothing runs plain RoPE instead.
"""

from __future__ import annotations

from typing import Any

from qwen3core.errors import SpecError
from qwen3core.rope_scaling import IMPLEMENTED_TYPES, RopeScaling
from qwen3core.spec import Qwen3Spec

#: transformers' ``PreTrainedConfig.default_theta``: the theta of a config that names none.
DEFAULT_THETA = 10_000.0

#: Keys of a rope block that are not scaling settings (or that transformers ignores).
_NOT_SCALING = {"rope_theta", "rope_type", "type"}

#: Keys a scaling type uses; others in the block are ignored, as transformers ignores them.
_KEYS = {
    "linear": {"factor"},
    "yarn": {"factor", "original_max_position_embeddings", "attention_factor", "beta_fast",
             "beta_slow", "mscale", "mscale_all_dim", "truncate"},
}


class RopeConfigError(SpecError):
    """A config's rope settings that cannot be run as written."""


def rope_settings(config: dict[str, Any]) -> tuple[float, RopeScaling | None]:
    """``(rope_theta, rope_scaling)`` for the spec from a ``config.json`` dict."""
    key, block = _chosen_block(config)
    theta = block.get("rope_theta", config.get("rope_theta"))
    theta = DEFAULT_THETA if theta is None else float(theta)
    rope_type = block.get("rope_type", block.get("type")) or "default"
    partial = block.get("partial_rotary_factor", config.get("partial_rotary_factor"))
    if partial not in (None, 1, 1.0):
        raise RopeConfigError(f"partial_rotary_factor={partial!r} is not implemented "
                              "(Qwen3 rotates the whole head)")
    if rope_type == "default":
        return theta, None
    if rope_type not in IMPLEMENTED_TYPES:
        raise RopeConfigError(
            f"{key}.rope_type={rope_type!r} asks for rope scaling qwen3core does not "
            f"implement (implemented: {', '.join(IMPLEMENTED_TYPES)}); remove {key} (or set "
            "rope_type to default) to run at the trained context length")
    values = {k: v for k, v in block.items() if k in _KEYS[rope_type]}
    max_positions = config.get("max_position_embeddings",
                               Qwen3Spec.__dataclass_fields__["max_position_embeddings"].default)
    if rope_type == "yarn":
        original = values.setdefault("original_max_position_embeddings", max_positions)
        if values.get("factor") is None and original:
            values["factor"] = max_positions / original
        if values.get("truncate") is None:
            values.pop("truncate", None)
    if values.get("factor") is None:
        raise RopeConfigError(f"{key} asks for {rope_type} rope scaling without a factor")
    try:
        return theta, RopeScaling(rope_type=rope_type, **values)
    except (SpecError, TypeError) as exc:
        raise RopeConfigError(f"{key} is not a valid {rope_type} rope scaling: {exc}") from None


def _chosen_block(config: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The rope block transformers uses, with the key it came from."""
    for key in ("rope_scaling", "rope_parameters"):  # rope_scaling, when set, wins
        value = config.get(key)
        if value is None or value == {}:
            continue
        if not isinstance(value, dict):
            raise RopeConfigError(f"{key} must be a JSON object, got {type(value).__name__}")
        nested = [k for k, v in value.items() if isinstance(v, dict)]
        if nested:
            raise RopeConfigError(f"{key} holds one rope block per layer type ({nested}); "
                                  "qwen3core implements one rope for every layer")
        return key, value
    return "rope_parameters", {}
