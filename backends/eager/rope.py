"""Rotary position embedding ("rotate half": the two halves of each head pair up)."""

import torch


def rotary_inv_freq(head_dim: int, theta: float, device: torch.device) -> torch.Tensor:
    """[D/2] float32 angular frequencies; the kernel backends use this expression too, so the
    angles agree bit for bit with the reference."""
    exponent = torch.arange(0, head_dim, 2, dtype=torch.int64, device=device)
    return 1.0 / (theta ** (exponent.to(torch.float32) / head_dim))


def rotary_cos_sin(positions: torch.Tensor, head_dim: int, theta: float,
                   dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """positions [B, S] -> cos, sin [B, S, D], computed in float32 then cast to ``dtype``."""
    inv_freq = rotary_inv_freq(head_dim, theta, positions.device)  # [D/2]
    freqs = positions.to(torch.float32)[..., None] * inv_freq  # [B, S, D/2]
    emb = torch.cat((freqs, freqs), dim=-1)  # [B, S, D]
    return emb.cos().to(dtype), emb.sin().to(dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class EagerRotary:
    """Callable ``(q, k, positions) -> (q, k)``; q/k are [B, H, S, D]."""

    def __init__(self, head_dim: int, theta: float):
        self.head_dim = head_dim
        self.theta = theta

    def __call__(self, q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        cos, sin = rotary_cos_sin(positions, self.head_dim, self.theta, q.dtype)
        cos, sin = cos[:, None], sin[:, None]  # [B, 1, S, D] broadcast over heads
        return q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
