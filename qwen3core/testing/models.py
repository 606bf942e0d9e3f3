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
                    seed: int = 0, quantize: str | None = None) -> Qwen3Model:
    """The eager model with random weights (cached: examples that share a spec share it).

    ``quantize`` names a scheme (``"int4"``, ``"int8:channel"``, ...): the projections and the
    LM head then hold that scheme's quantization of the same float32 draws, whatever ``dtype``
    (so the float64 model of a quantized example has the very same levels)."""
    selection = get_registry().select(reference_names(), device=device, dtype=dtype)
    if quantize is not None:
        from qwen3core.quant import resolve_scheme
        from qwen3core.quant.apply import build_random_quantized

        return build_random_quantized(spec, selection, dtype=dtype, device=torch.device(device),
                                      seed=seed, scheme=resolve_scheme(quantize),
                                      quantize_head=True)
    return build_random(spec, selection, dtype=dtype, device=torch.device(device), seed=seed)


def candidate_model(reference: Qwen3Model, selection: Selection | Mapping[str, str],
                    registry: Registry | None = None) -> Qwen3Model:
    """A model with ``selection``'s implementations and the reference's weights."""
    if not isinstance(selection, Selection):
        registry = registry or get_registry()
        selection = registry.select(selection, device=reference.device, dtype=reference.dtype)
    model = build_skeleton(reference.spec, selection, reference.dtype)
    model.to_empty(device=reference.device)
    _copy_quantized(reference, model)
    model.tie_weights()
    model.load_state_dict(reference.state_dict())
    model.tie_weights()
    model.prepare_weights()
    return model.eval()


def _copy_quantized(reference: Qwen3Model, model: Qwen3Model) -> None:
    """Hand every quantized weight of the reference to the candidate's module of that name
    (its ``load_quantized``: the path checkpoint loaders take)."""
    from qwen3core.errors import BackendSelectionError
    from qwen3core.quant import QuantizedLinearModule

    modules = dict(model.named_modules())
    for name, ref_module in reference.named_modules():
        held = getattr(ref_module, "quantized_weight", None)
        weight = held() if held is not None else None
        if weight is None:
            continue
        target = modules.get(name)
        if not isinstance(target, QuantizedLinearModule):
            raise BackendSelectionError(
                f"{name} of the candidate ({type(target).__name__}) cannot hold a quantized "
                "weight (no load_quantized)")
        target.load_quantized(weight)
