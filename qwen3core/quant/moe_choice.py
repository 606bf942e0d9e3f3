"""Which moe implementation holds quantized experts when the user names none.

The default moe (``grouped``) stacks dense experts and takes no quantized weights, so a
quantized model (``quantize=``, or a checkpoint stored quantized) gets, where the user did not
choose, the first of :data:`QUANTIZED_MOE` that is available on the device and dtype: the cpu
backend's block (a layer's chosen experts in one operator), else the eager block (each expert
through the selected quantized linear). A named choice is kept as it is: it gets its own clear
error if it cannot hold quantized experts.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from qwen3core.errors import BackendSelectionError
from qwen3core.registry import Registry

QUANTIZED_MOE = ("cpu", "eager")


def with_quantized_moe(backends: Mapping[str, str] | None, registry: Registry,
                       device: torch.device, dtype: torch.dtype) -> dict[str, str]:
    chosen = dict(backends or {})
    if "moe" in chosen:
        return chosen
    for name in QUANTIZED_MOE:
        try:
            impl = registry.get("moe", name)
        except BackendSelectionError:  # not installed (a plugin blocked)
            continue
        if impl.unavailable_reason(device, dtype) is None:
            return {**chosen, "moe": name}
    return chosen
