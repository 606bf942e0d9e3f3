"""Fusing linear layers that read the same input, where their implementation offers it.

A linear implementation may give its module class a ``fuse(layers)`` classmethod (see
:class:`~qwen3core.contracts.FusedLinear`). Memory-bound decode profits: one call streams the
q, k and v weights (or gate and up) back to back instead of three calls that each pay a start
and a ramp-up. Implementations without it are called one by one, as before.
"""

from __future__ import annotations

from torch import nn

from qwen3core.contracts import FusedLinear


def fuse_linears(*layers: nn.Module) -> FusedLinear | None:
    """The layers' fused callable, or None when their class has no ``fuse``, they are of
    different classes or input sizes, or ``fuse`` declines."""
    kind = type(layers[0])
    fuse = getattr(kind, "fuse", None)
    if fuse is None or any(type(layer) is not kind for layer in layers):
        return None
    if len({_in_features(layer) for layer in layers}) != 1:
        return None
    return fuse(layers)


def _in_features(layer: nn.Module) -> int:
    # A layer holding a quantized weight (load_quantized) has no dense ``weight``.
    found = getattr(layer, "in_features", None)
    return found if isinstance(found, int) else layer.weight.shape[1]
