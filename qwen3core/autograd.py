"""Gradients: who supports them, and a clear refusal where a selection does not.

Kernels registered without an autograd formula (the ``cpu`` and ``cuda`` backends' operators,
stacked expert copies) make ``loss.backward()`` run and leave ``.grad`` empty, with at most a
torch warning. Every :class:`~qwen3core.contracts.Implementation` therefore declares
``supports_autograd``; a model whose selection holds one that does not gets a forward pre-hook
that raises :class:`AutogradUnsupportedError` when a forward pass would need gradients (grad
mode on and a parameter requiring them). ``load(..., training=True)`` selects only
implementations that support autograd and leaves parameters requiring gradients; an inference
load (the default) turns them off, so plain ``model(ids)`` builds no graph.
"""

from __future__ import annotations

import torch
from torch import nn

from qwen3core.contracts import Selection
from qwen3core.errors import BackendSelectionError
from qwen3core.spec import Qwen3Spec


class AutogradUnsupportedError(BackendSelectionError):
    """A forward pass needs gradients through an implementation that does not provide them."""


#: The components a forward pass without a cache (a training step) runs through; kv_cache
#: storage and the runner only take part in generation.
FORWARD_COMPONENTS = ("attention", "norm", "rope", "linear", "mlp", "moe")


def without_autograd(selection: Selection, spec: Qwen3Spec) -> dict[str, str]:
    """component -> implementation name, for the selected ones a forward pass of ``spec``
    runs through that do not support autograd."""
    used = [c for c in FORWARD_COMPONENTS if c != "moe" or spec.is_moe]
    return {c: selection[c].name for c in used
            if c in selection and not selection[c].supports_autograd}


def install_guard(model: nn.Module, selection: Selection, spec: Qwen3Spec) -> None:
    """Make ``model`` refuse a forward pass that needs gradients it cannot give."""
    lacking = without_autograd(selection, spec)
    if not lacking:
        return
    listed = ", ".join(f"{c}={n!r}" for c, n in lacking.items())

    def refuse_gradients(module: nn.Module, args: object) -> None:
        if not torch.is_grad_enabled():
            return
        if any(p.requires_grad for p in module.parameters()):
            raise AutogradUnsupportedError(
                f"this forward pass needs gradients, but the selected {listed} do(es) not "
                f"support autograd (their gradients would be silently missing). Load with "
                f"qwen3core.load(..., training=True) to select implementations that do, or "
                f"run under torch.no_grad() / with requires_grad_(False) for inference")

    model.register_forward_pre_hook(refuse_gradients)


def set_training(model: nn.Module, training: bool) -> None:
    """Parameters require gradients only for a training load."""
    model.requires_grad_(training)
    if training:
        model.train()
