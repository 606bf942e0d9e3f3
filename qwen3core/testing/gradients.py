"""The gradient property: an implementation that declares ``supports_autograd`` gives every
parameter the gradient the eager reference gives it.

Like the forward property, a candidate model is the reference's weights loaded into another
selection (:func:`qwen3core.testing.models.candidate_model`); both run the same forward pass,
the same weighted sum of the logits is differentiated, and each parameter's gradient is compared
by name. A parameter the reference leaves without a gradient (an expert no token was routed to)
counts as zero on both sides. The error measure is the gradient difference's norm relative to
the reference gradient's norm, per parameter.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from qwen3core.model import Qwen3Model
from qwen3core.testing.models import candidate_model, reference_model, reference_names

#: Relative error allowed per parameter gradient: float64 runs must agree to rounding, float32
#: runs to the accumulated differences of other summation orders (fused or tiled kernels).
GRADIENT_TOLERANCE = {torch.float64: 1e-9, torch.float32: 2e-3}


@dataclass(frozen=True)
class GradientMismatch:
    parameter: str
    relative_error: float  # inf: the candidate has no such parameter

    def __str__(self) -> str:
        return f"{self.parameter}: relative error {self.relative_error:.3g}"


def gradients(model: Qwen3Model, input_ids: torch.Tensor, weights: torch.Tensor
              ) -> dict[str, torch.Tensor | None]:
    """d(sum(logits * weights))/d(parameter) for every parameter, by name."""
    model.zero_grad(set_to_none=True)
    model.requires_grad_(True)
    with torch.enable_grad():
        (model(input_ids) * weights).sum().backward()
    out = {name: (p.grad.detach().clone() if p.grad is not None else None)
           for name, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    model.requires_grad_(False)
    return out


def compare_gradients(reference: Mapping[str, torch.Tensor | None],
                      candidate: Mapping[str, torch.Tensor | None],
                      shapes: Mapping[str, torch.Size], tolerance: float
                      ) -> list[GradientMismatch]:
    mismatches = []
    for name, want in reference.items():
        if name not in candidate:
            mismatches.append(GradientMismatch(name, float("inf")))
            continue
        got = candidate[name]
        zeros = torch.zeros(shapes[name], dtype=torch.float64)
        want64 = zeros if want is None else want.double().cpu()
        got64 = zeros if got is None else got.double().cpu()
        scale = float(want64.norm())
        error = float((got64 - want64).norm()) / scale if scale > 0 else float(got64.norm())
        if not error <= tolerance:
            mismatches.append(GradientMismatch(name, error))
    return mismatches


def gradient_mismatches(spec, dtype: torch.dtype, selection: Mapping[str, str],
                        input_ids: torch.Tensor, seed: int = 0) -> list[GradientMismatch]:
    """Mismatches between the eager reference's gradients and those of the reference with
    ``selection``'s implementations swapped in (other components stay eager)."""
    reference = reference_model(spec, dtype, "cpu")
    candidate = candidate_model(reference, {**reference_names(), **selection})
    generator = torch.Generator().manual_seed(seed)
    weights = torch.randn((*input_ids.shape, spec.vocab_size), generator=generator,
                          dtype=torch.float64).to(dtype)
    want = gradients(reference, input_ids, weights)
    got = gradients(candidate, input_ids, weights)
    shapes = {name: p.shape for name, p in reference.named_parameters()}
    return compare_gradients(want, got, shapes, GRADIENT_TOLERANCE[dtype])
