"""Rotary embeddings through the CUDA kernel: q and k rotated in one launch."""

import torch

from .ops import rotary


class CudaRotary:
    """Callable ``(q, k, positions) -> (q, k)``; q/k are [B, H, S, D], positions [B, S]."""

    def __init__(self, head_dim: int, theta: float):
        self.head_dim = head_dim
        self.theta = theta
        self._inv_freq: dict[torch.device, torch.Tensor] = {}

    def inv_freq(self, device: torch.device) -> torch.Tensor:
        """[D/2] float32, by the eager backend's expression, so the angles agree bit for bit."""
        cached = self._inv_freq.get(device)
        if cached is None:
            exponent = torch.arange(0, self.head_dim, 2, dtype=torch.int64, device=device)
            cached = 1.0 / (self.theta ** (exponent.to(torch.float32) / self.head_dim))
            self._inv_freq[device] = cached
        return cached

    def __call__(self, q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        return rotary(q, k, positions, self.inv_freq(q.device))
