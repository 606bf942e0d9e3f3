"""Rotary scaling: how a checkpoint stretches RoPE past the context it was trained on.

A property of the spec (``Qwen3Spec.rope_scaling``; None means plain RoPE), so every rope
implementation receives it and must honour it; the equivalence suite draws scaled specs to hold
them to that. The types are those Qwen3 checkpoints use, with transformers' meaning (see
``transformers/modeling_rope_utils.py``):

* ``linear``: every frequency divided by ``factor`` (positions interpolated).
* ``yarn``: frequencies of dimensions that turn fewer than ``beta_slow`` times over the original
  context are interpolated (divided by ``factor``), those turning more than ``beta_fast`` times
  are kept, with a linear ramp between; cos and sin are scaled by ``attention_factor``
  (``0.1 ln(factor) + 1`` unless given). Qwen3's model cards give
  ``{"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}``.

Not implemented, and refused when a config asks for it: ``dynamic`` (NTK), whose frequencies
depend on the longest sequence a model has seen so far in the process (transformers keeps that
as mutable state), and the types Qwen3 does not use (``longrope``, ``llama3``, ...).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from qwen3core.errors import SpecError

IMPLEMENTED_TYPES = ("linear", "yarn")


@dataclass(frozen=True)
class RopeScaling:
    rope_type: str
    factor: float
    #: yarn: the context the model was trained on (the frequency ramp is placed from it).
    original_max_position_embeddings: int | None = None
    #: yarn: scale of cos/sin; None means derived from factor (and mscale/mscale_all_dim).
    attention_factor: float | None = None
    beta_fast: float | None = None  # yarn; None means 32
    beta_slow: float | None = None  # yarn; None means 1
    mscale: float | None = None  # yarn, for the derived attention_factor
    mscale_all_dim: float | None = None
    truncate: bool = True  # yarn: round the ramp's ends outwards to whole dimensions

    def __post_init__(self) -> None:
        if self.rope_type not in IMPLEMENTED_TYPES:
            raise SpecError(f"rope scaling type {self.rope_type!r} is not implemented "
                            f"(implemented: {', '.join(IMPLEMENTED_TYPES)})")
        if not self.factor > 0:
            raise SpecError(f"rope scaling factor must be positive, got {self.factor}")
        if self.rope_type == "yarn":
            omax = self.original_max_position_embeddings
            if not isinstance(omax, int) or omax <= 0:
                raise SpecError("yarn rope scaling needs original_max_position_embeddings, a "
                                f"positive integer; got {omax!r}")
            if self.resolved_beta_fast < self.resolved_beta_slow:
                raise SpecError(f"yarn beta_fast ({self.beta_fast}) must be at least beta_slow "
                                f"({self.beta_slow})")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> RopeScaling:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise SpecError(f"rope scaling has keys qwen3core does not implement: {unknown} "
                            f"(known: {sorted(known)})")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """The fields that are set, in the ``rope_scaling`` form transformers reads."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    # -- derived values (transformers' defaults) ------------------------------------------------
    @property
    def resolved_beta_fast(self) -> float:
        return self.beta_fast or 32

    @property
    def resolved_beta_slow(self) -> float:
        return self.beta_slow or 1

    @property
    def cos_sin_scale(self) -> float:
        """The factor cos and sin are multiplied by (1.0 for linear)."""
        if self.rope_type != "yarn":
            return 1.0
        if self.attention_factor is not None:
            return float(self.attention_factor)

        def mscale_of(scale: float, m: float = 1.0) -> float:
            return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0

        if self.mscale and self.mscale_all_dim:
            return float(mscale_of(self.factor, self.mscale)
                         / mscale_of(self.factor, self.mscale_all_dim))
        return mscale_of(self.factor)


def as_rope_scaling(value: RopeScaling | Mapping[str, Any] | None) -> RopeScaling | None:
    """A spec field value from a :class:`RopeScaling`, its dict form, or None."""
    if value is None or isinstance(value, RopeScaling):
        return value
    if isinstance(value, Mapping):
        return RopeScaling.from_dict(value)
    raise SpecError(f"rope_scaling must be a mapping or None, got {type(value).__name__}")
