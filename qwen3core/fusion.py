"""Fusing components that run back to back, where their implementation offers it.

A linear implementation may give its module class a ``fuse(layers)`` classmethod (see
:class:`~qwen3core.contracts.FusedLinear`). Memory-bound decode profits: one call streams the
q, k and v weights (or gate and up) back to back instead of three calls that each pay a start
and a ramp-up. Implementations without it are called one by one, as before.

A rope implementation may offer ``fuse_norms(q_norm, k_norm)``: the per-head q/k RMSNorms and
the rotation as one callable (see docs/hooks.md). At decode sizes each call costs more in
dispatch than in arithmetic, so three calls per layer become one.

A norm implementation may offer ``fuse_layer(layer)``: a whole decoder layer's step as one
callable (a :data:`LayerStep`), asked of the layer's input norm once every part of the layer
is prepared. It must compute what the layer's modules compute and may decline any step (it
returns None: the modules run). The cpu backend's runs a decode step's layer in two operator
calls instead of ~60 (docs/hooks.md).

A fused layer step may offer ``fuse_stack(layers)``: every layer of the model as one callable
of the same signature, asked of the first layer's step when every layer has one. The cpu
backend's runs a decode step through all the model's layers (its MoE blocks included) in one
operator call.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
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


#: ``(q, k, positions) -> (q, k)``: the q and k projections as they come, [B, S, H_q * D] and
#: [B, S, H_kv * D], in; normed per head and rotated, [B, H_q, S, D] and [B, H_kv, S, D], out.
NormRotary = Callable[[torch.Tensor, torch.Tensor, torch.Tensor],
                      tuple[torch.Tensor, torch.Tensor]]


def fuse_norms_and_rotary(q_norm: nn.Module, k_norm: nn.Module, rotary) -> NormRotary | None:
    """``rotary(q_norm(q), k_norm(k), positions)`` as one callable, or None when the rotary
    implementation has no ``fuse_norms`` or declines these norm modules."""
    fuse = getattr(rotary, "fuse_norms", None)
    return None if fuse is None else fuse(q_norm, k_norm)


#: ``(x, residual, batch, storage) -> (x, residual)``, as
#: :meth:`qwen3core.model.DecoderLayer.forward` computes it, or None where it declines the step.
LayerStep = Callable[..., "tuple[torch.Tensor, torch.Tensor] | None"]


def fuse_decoder_layer(layer: nn.Module) -> LayerStep | None:
    """The layer's step as one callable, or None when its input norm's implementation has no
    ``fuse_layer`` or declines this layer (its other parts are not ones it can run)."""
    fuse = getattr(layer.input_layernorm, "fuse_layer", None)
    return None if fuse is None else fuse(layer)


def fuse_decoder_stack(layers) -> LayerStep | None:
    """All ``layers`` as one callable, or None unless every layer has a fused step and the
    first one's offers ``fuse_stack`` (and it accepts these layers)."""
    steps = [layer.step for layer in layers]
    if not steps or any(step is None for step in steps):
        return None
    fuse = getattr(steps[0], "fuse_stack", None)
    return None if fuse is None else fuse(layers)
