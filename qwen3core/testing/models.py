"""Reference and candidate models that share one set of random weights.

The reference is built from every component's implementation in the ``eager`` plugin. A
candidate is built with its own selection and loaded from the reference's state dict: the same
checkpoint-key contract a real checkpoint goes through, so a backend that keeps its weights in
a layout of its own (stacked, fused, packed) is exercised through its loading path too.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache

import torch

from qwen3core.build import build_random, build_skeleton
from qwen3core.contracts import COMPONENTS, Selection
from qwen3core.model import Qwen3Model
from qwen3core.registry import Registry, get_registry
from qwen3core.spec import Qwen3Spec

REFERENCE_PLUGIN = "eager"


def reference_names(registry: Registry | None = None) -> dict[str, str]:
    """component -> the name of the eager plugin's implementation (the reference)."""
    registry = registry or get_registry()
    names = {}
    for component in COMPONENTS:
        found = [i.name for i in registry.implementations(component)
                 if i.plugin == REFERENCE_PLUGIN]
        if not found:
            raise RuntimeError(f"the reference plugin {REFERENCE_PLUGIN!r} provides no "
                               f"{component}; is it blocked (QWEN3CORE_BLOCK_PLUGINS)?")
        names[component] = found[0]
    return names


@lru_cache(maxsize=32)
def reference_model(spec: Qwen3Spec, dtype: torch.dtype, device: str = "cpu",
                    seed: int = 0) -> Qwen3Model:
    """The eager model with random weights (cached: examples that share a spec share it)."""
    selection = get_registry().select(reference_names(), device=device, dtype=dtype)
    return build_random(spec, selection, dtype=dtype, device=torch.device(device), seed=seed)


def candidate_model(reference: Qwen3Model, selection: Selection | Mapping[str, str],
                    registry: Registry | None = None) -> Qwen3Model:
    """A model with ``selection``'s implementations and the reference's weights."""
    if not isinstance(selection, Selection):
        registry = registry or get_registry()
        selection = registry.select(selection, device=reference.device, dtype=reference.dtype)
    model = build_skeleton(reference.spec, selection, reference.dtype)
    model.to_empty(device=reference.device)
    model.tie_weights()
    model.load_state_dict(reference.state_dict())
    model.tie_weights()
    model.prepare_weights()
    return model.eval()
