"""Rotary position embedding ("rotate half": the two halves of each head pair up).

With ``spec.rope_scaling`` (see :mod:`qwen3core.rope_scaling`) the frequencies are those of the
scaling type and cos/sin are multiplied by its ``cos_sin_scale``, in transformers' order: the
float32 cos/sin are scaled, then cast to the activation dtype.
"""

import math

import torch

from qwen3core.rope_scaling import RopeScaling


def rotary_inv_freq(head_dim: int, theta: float, device: torch.device,
                    scaling: RopeScaling | None = None) -> torch.Tensor:
    """[D/2] float32 angular frequencies; the kernel backends use this expression too, so the
    angles agree bit for bit with the reference."""
    exponent = torch.arange(0, head_dim, 2, dtype=torch.int64, device=device)
    pos_freqs = theta ** (exponent.to(torch.float32) / head_dim)
    inv_freq = 1.0 / pos_freqs
    if scaling is None:
        return inv_freq
    if scaling.rope_type == "linear":
        return inv_freq / scaling.factor
    return _yarn_inv_freq(head_dim, theta, pos_freqs, scaling)


def _yarn_inv_freq(head_dim: int, theta: float, pos_freqs: torch.Tensor,
                   scaling: RopeScaling) -> torch.Tensor:
    """Dimensions whose wavelength fits ``beta_fast`` or more turns into the original context
    keep their frequency (extrapolation), those fitting ``beta_slow`` or fewer are divided by
    the factor (interpolation), with a linear ramp between the two."""
    original = scaling.original_max_position_embeddings

    def correction_dim(rotations: float) -> float:
        # The dimension whose frequency makes ``rotations`` full turns over the original context.
        return (head_dim * math.log(original / (rotations * 2 * math.pi))) / (2 * math.log(theta))

    low, high = correction_dim(scaling.resolved_beta_fast), correction_dim(
        scaling.resolved_beta_slow)
    if scaling.truncate:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, head_dim - 1)
    if low == high:
        high += 0.001  # a ramp of width zero would divide by zero
    ramp = ((torch.arange(head_dim // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)
    extrapolation = (1 - ramp).to(pos_freqs.device)  # 1: keep the frequency, 0: interpolate
    inv_freq_extrapolation = 1.0 / pos_freqs
    inv_freq_interpolation = 1.0 / (scaling.factor * pos_freqs)
    return (inv_freq_interpolation * (1 - extrapolation)
            + inv_freq_extrapolation * extrapolation)


def cos_sin_scale(scaling: RopeScaling | None) -> float:
    return 1.0 if scaling is None else scaling.cos_sin_scale


def rotary_cos_sin(positions: torch.Tensor, head_dim: int, theta: float,
                   dtype: torch.dtype, scaling: RopeScaling | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """positions [B, S] -> cos, sin [B, S, D], computed in float32 then cast to ``dtype``."""
    inv_freq = rotary_inv_freq(head_dim, theta, positions.device, scaling)  # [D/2]
    freqs = positions.to(torch.float32)[..., None] * inv_freq  # [B, S, D/2]
    emb = torch.cat((freqs, freqs), dim=-1)  # [B, S, D]
    cos, sin = emb.cos(), emb.sin()
    scale = cos_sin_scale(scaling)
    if scale != 1.0:
        cos, sin = cos * scale, sin * scale
    return cos.to(dtype), sin.to(dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class EagerRotary:
    """Callable ``(q, k, positions) -> (q, k)``; q/k are [B, H, S, D]."""

    def __init__(self, head_dim: int, theta: float, scaling: RopeScaling | None = None):
        self.head_dim = head_dim
        self.theta = theta
        self.scaling = scaling

    def __call__(self, q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        cos, sin = rotary_cos_sin(positions, self.head_dim, self.theta, q.dtype, self.scaling)
        cos, sin = cos[:, None], sin[:, None]  # [B, 1, S, D] broadcast over heads
        return q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
