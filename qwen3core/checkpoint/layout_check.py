"""The checkpoint's outline against the spec, before the skeleton is built.

Building the ``meta`` skeleton costs time and memory in proportion to what ``config.json``
claims (``num_hidden_layers: 10**7`` is minutes and gigabytes of Python objects), so the claims
that drive that cost are checked first against the safetensors headers: how many decoder layers
the checkpoint holds, how many experts, and the embedding's shape. These are Hugging Face's own
key names, which every Qwen3 checkpoint uses whatever layout a backend converts them to; the
full check, key by key and shape by shape, follows on the skeleton (:mod:`.strict`).
"""

from __future__ import annotations

import re

from qwen3core.checkpoint.files import WeightFiles
from qwen3core.errors import CheckpointError
from qwen3core.spec import Qwen3Spec

_LAYER = re.compile(r"^model\.layers\.(\d+)\.")
_EXPERT = re.compile(r"^model\.layers\.\d+\.mlp\.experts\.(\d+)\.")
EMBEDDING = "model.embed_tokens.weight"


def check_outline(spec: Qwen3Spec, weights: WeightFiles, where: str) -> None:
    """Raise :class:`CheckpointError` when the checkpoint's layers, experts or embedding
    contradict ``spec``; the message names the config field."""
    problems = []
    layers = {int(m.group(1)) for key in weights.tensors if (m := _LAYER.match(key))}
    if layers != set(range(spec.num_hidden_layers)):
        held = _describe(layers)
        problems.append(f"config.json says num_hidden_layers={spec.num_hidden_layers} but the "
                        f"checkpoint holds {held}")
    experts = {int(m.group(1)) for key in weights.tensors if (m := _EXPERT.match(key))}
    if experts and experts != set(range(spec.num_experts)):
        problems.append(f"config.json says num_experts={spec.num_experts} but the checkpoint "
                        f"holds {_describe(experts, 'expert')} per layer")
    embedding = weights.tensors.get(EMBEDDING)
    if embedding is not None and embedding.shape != (spec.vocab_size, spec.hidden_size):
        problems.append(f"config.json says vocab_size={spec.vocab_size}, hidden_size="
                        f"{spec.hidden_size} but {EMBEDDING} is {list(embedding.shape)}")
    if problems:
        raise CheckpointError(f"{where}: " + "; ".join(problems) + ". Check that config.json "
                              "and the *.safetensors files come from the same model")


def _describe(indices: set[int], noun: str = "layer") -> str:
    if not indices:
        return f"no {noun}s"
    ordered = sorted(indices)
    if ordered == list(range(len(ordered))):
        return f"{len(ordered)} {noun}s (0..{len(ordered) - 1})"
    return f"{noun}s {', '.join(map(str, ordered[:8]))}{' ...' if len(ordered) > 8 else ''}"
