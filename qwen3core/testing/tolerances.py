"""How close a backend's greedy run must be to the eager reference's, per dtype.

Two implementations of the same maths differ by rounding. At each step let ``scale`` be the
largest absolute reference logit (at least 1) and ``own`` the reference's own error, the
largest difference between its logits and the exact (float64) model's along the same tokens.
A candidate's logits must be within

    allowed = max(relative * scale, error_factor * own)

of the reference's (infinity norm): a fixed floor, or, where the reference itself is far from
the exact answer, up to ``error_factor - 1`` times as far on the other side. If they are, the
argmax cannot differ from the reference's wherever the reference's top-1/top-2 margin exceeds
``2 * allowed`` (each of the two logits can move by at most ``allowed``), so at those steps the
tokens must be identical. At the first step with a smaller margin a different token is
legitimate and the sequences may part; comparison of that row stops there.

Mixture-of-Experts routing is discontinuous: a token whose k-th and (k+1)-th router logits
are within rounding of each other may go to another expert in another correct implementation,
and from then on the logits legitimately differ by O(scale). The exact run records each real
token's routing margin (that gap over max(1, largest |router logit|)); from the first step at
which a row has run a token with margin ``<= 2 * relative``, that row is not compared.

float64 is the exact reference: every token must match (no margin exemption) and logits agree
to 1e-9 relative (rounding differences are ~3e-14 absolute).

The floors were set from ``python -m qwen3core.testing.noise --examples 300`` (the suite's own
specs and batches; each other implementation swapped in alone, and the default selection),
which prints the largest difference from the eager reference over the steps the suite compares:

* float32: at most 2.8e-6 of scale (eager float32 itself is 1.5e-6 from exact); the floor
  1e-4 uses at most 0.028 of what is allowed. A wrong mask or a lost slot moves logits by
  O(scale).
* bfloat16: every intermediate tensor is rounded to 8 significant bits; the eager reference is
  up to 0.062 of scale from exact, backends that round differently (sdpa and chunked keep
  float32 between softmax and the value matmul) up to 0.040 from eager. With the floor 1/16
  and factor 3 the largest use of the allowance was 0.50. bfloat16 therefore checks tokens
  only at clear-cut steps and catches gross errors; float32 and float64 catch subtle ones.

Schemes that quantize activations (``w8a8``, ``w4a8``) round each activation to one of 255
levels of its block's largest magnitude: a step of 1/127 of it, coarser than bfloat16's
rounding, and discontinuous. Two correct implementations whose inputs to a linear differ in
float32's last bit (another norm kernel) can land on either side of a rounding boundary and
move one activation a whole level; measured, float32 logits then differ by 0.005-0.023 of
scale (50-230 times float32's floor; ~1 in 300 drawn examples of the cpu selection). Those schemes
are therefore compared under bfloat16's rule in float32 too. That rule catches wrong kernels
(a lost offset, swapped nibbles) but not a linear that skips the activation quantization
altogether (0.014-0.044 of scale on the suite's specs, while flips alone reached 0.023 under
a trial floor of 1/64): that is the job of
:func:`qwen3core.testing.quant_linear.check_quantized_linear`, whose inputs are identical, so
the levels must agree bit for bit and the products to float32 rounding. float64 keeps its
exact rule: a float64 difference moves a level only at an exact tie.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Tolerance:
    #: Allowed |candidate - reference| as a fraction of ``scale`` = max(1, |reference|_inf).
    relative: float
    #: Whether a step with a small margin may pick a different token.
    margin_exempt: bool
    #: With the exact (float64) logits along the same tokens, also allow this many times the
    #: reference's own error |reference - exact|_inf: a candidate up to (factor - 1) times as
    #: far from the exact answer as the reference, on the other side.
    error_factor: float = 0.0

    def allowed(self, reference_logits: torch.Tensor,
                exact_logits: torch.Tensor | None = None) -> float:
        bound = self.relative * max(1.0, float(reference_logits.abs().max()))
        if exact_logits is not None and self.error_factor:
            own_error = float((reference_logits - exact_logits).abs().max())
            bound = max(bound, self.error_factor * own_error)
        return bound


TOLERANCES: dict[torch.dtype, Tolerance] = {
    torch.float64: Tolerance(1e-9, margin_exempt=False),
    torch.float32: Tolerance(1e-4, margin_exempt=True, error_factor=3.0),
    torch.bfloat16: Tolerance(1 / 16, margin_exempt=True, error_factor=3.0),
    # Not measured: bfloat16's rule with half its floor (3 more mantissa bits).
    torch.float16: Tolerance(1 / 32, margin_exempt=True, error_factor=3.0),
}


def tolerance_for(dtype: torch.dtype, quantize: str | None = None) -> Tolerance:
    """The rule for ``dtype``; with ``quantize`` (a scheme name) that quantizes activations,
    at least bfloat16's (see the module docstring)."""
    try:
        tolerance = TOLERANCES[dtype]
    except KeyError:
        raise ValueError(f"no equivalence tolerance is defined for {dtype}; use one of "
                         f"{', '.join(str(d) for d in TOLERANCES)}") from None
    if quantize is not None and dtype != torch.float64 and _quantizes_activations(quantize):
        coarse = TOLERANCES[torch.bfloat16]
        if coarse.relative > tolerance.relative:
            return coarse
    return tolerance


def _quantizes_activations(scheme: str) -> bool:
    from qwen3core.quant import resolve_scheme

    return resolve_scheme(scheme).act_block is not None
