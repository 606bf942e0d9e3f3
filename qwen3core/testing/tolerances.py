"""How close a backend's greedy run must be to the eager reference's, per dtype.

Two implementations of the same maths differ by rounding. Let ``scale`` be the largest
absolute reference logit at a step (at least 1). A candidate's logits must be within
``tolerance * scale`` of the reference's at every compared step (infinity norm). If they
are, its argmax cannot differ from the reference's wherever the reference's top-1/top-2 margin
exceeds ``2 * tolerance * scale`` (each of the two logits can move by at most the tolerance),
so at those steps the tokens must be identical. At the first step whose margin is smaller, a
different token is legitimate and the sequences may part; comparison of that row stops there.

The numbers were measured on the suite's own specs (``qwen3core.testing.strategies.specs``,
60 examples, eager vs sdpa/static/grouped and vs float64; docs/backends.md has the command):

* float64: rounding differences are ~3e-14 absolute, so ties are never legitimate: every token
  must match (no margin exemption) and logits agree to 1e-9 relative.
* float32: largest difference between eager float32 and exact (float64) logits 1.3e-6
  relative, between eager and other float32 backends 1.0e-6. The tolerance 1e-4 leaves ~100x
  headroom for longer reductions; a wrong mask or slot moves logits by O(scale).
* bfloat16: every intermediate tensor is rounded to 8 significant bits, and the eager
  reference itself lands up to 0.080 (relative) away from the exact logits; a backend that
  rounds differently (sdpa keeps float32 between softmax and the value matmul) may land as far
  on the other side (0.028 measured). The tolerance 0.125 covers that with 1.5x headroom;
  bfloat16 therefore checks tokens only at clear-cut steps and catches gross errors, while
  float32 and float64 catch subtle ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Tolerance:
    relative: float  # allowed |candidate - reference| as a fraction of max(1, |reference|_inf)
    margin_exempt: bool  # whether a step with a small margin may pick a different token

    def allowed(self, reference_logits: torch.Tensor) -> float:
        return self.relative * max(1.0, float(reference_logits.abs().max()))


TOLERANCES: dict[torch.dtype, Tolerance] = {
    torch.float64: Tolerance(1e-9, margin_exempt=False),
    torch.float32: Tolerance(1e-4, margin_exempt=True),
    torch.bfloat16: Tolerance(0.125, margin_exempt=True),
    torch.float16: Tolerance(0.0625, margin_exempt=True),  # 3 more mantissa bits than bf16
}


def tolerance_for(dtype: torch.dtype) -> Tolerance:
    try:
        return TOLERANCES[dtype]
    except KeyError:
        raise ValueError(f"no equivalence tolerance is defined for {dtype}; use one of "
                         f"{', '.join(str(d) for d in TOLERANCES)}") from None
