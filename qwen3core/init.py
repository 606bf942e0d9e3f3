"""Random initialisation that gives a usable random model.

The usual 0.02 normal init makes a random Qwen3 greedily repeat one token forever, which would
blind every equivalence test (all backends would "agree" on a constant). Scaling each linear
by ``2/sqrt(fan_in)`` makes each layer change the residual stream substantially (with gain 1
the tiny presets still fell into one repeated token for some seeds), and embeddings / head at
``4/sqrt(hidden)`` give logits of standard deviation ~4: varied greedy tokens with top-1/top-2
margins wide enough to survive bfloat16 rounding most of the time. tests/test_init.py checks
the variety. Norm weights are
drawn around 1 so that a loader or backend that ignores them is caught.

Values are drawn in float32 from a seeded CPU generator and then cast, so the same seed gives
the same model (up to rounding) in every dtype and on every device.

Speed: drawing every value of a 0.6B model one by one takes ~15 s on a CPU core, for weights
that only exist to be benchmarked. So large matrices (``WINDOW_THRESHOLD`` values or more) are
filled from one pool of 2**24 normal values drawn once: each row is a window of the pool at a
random offset (a single gather, ~1 s for 0.6B). Rows remain normally distributed with the same
scale; rows of different matrices are unrelated except by rare overlapping windows. Smaller
tensors (all of the tiny presets) are still drawn value by value, exactly as before.
"""

from __future__ import annotations

import math

import torch
from torch import nn

WINDOW_THRESHOLD = 1 << 20  # values; below this every value is drawn on its own
POOL_SIZE = 1 << 24


def _scale(name: str, shape: torch.Size, hidden_size: int) -> float:
    if name.endswith("embed_tokens.weight") or name == "lm_head.weight":
        return 4.0 / math.sqrt(hidden_size)
    return 2.0 / math.sqrt(shape[-1])


def _draw(name: str, shape: torch.Size, hidden_size: int, gen: torch.Generator) -> torch.Tensor:
    if name.endswith("norm.weight"):
        return torch.empty(shape).uniform_(0.8, 1.2, generator=gen)
    if len(shape) >= 2 or name.endswith("embed_tokens.weight") or name == "lm_head.weight":
        return torch.randn(shape, generator=gen) * _scale(name, shape, hidden_size)
    return torch.randn(shape, generator=gen) * 0.02


class _WindowPool:
    """Rows of large matrices as windows of one pool of standard normal values."""

    def __init__(self, gen: torch.Generator):
        self.gen = gen
        self.pool: torch.Tensor | None = None  # drawn on first use: tiny models never need it
        self.scaled: dict[tuple, torch.Tensor] = {}  # a handful of (scale, dtype, device)

    def fill(self, param: torch.Tensor, scale: float) -> None:
        if self.pool is None:
            self.pool = torch.randn(POOL_SIZE, generator=self.gen)
        cols = param.shape[-1]
        rows = param.numel() // cols
        offsets = torch.randint(0, POOL_SIZE - cols + 1, (rows,), generator=self.gen)
        key = (scale, param.dtype, param.device)
        if key not in self.scaled:
            self.scaled[key] = (self.pool * scale).to(device=param.device, dtype=param.dtype)
        scaled = self.scaled[key]
        windows = scaled.as_strided((POOL_SIZE - cols + 1, cols), (1, 1))  # no copy
        torch.index_select(windows, 0, offsets.to(param.device), out=param.view(rows, cols))


@torch.no_grad()
def initialize_random(model: nn.Module, seed: int, hidden_size: int) -> None:
    """Fill every parameter of ``model`` (tied ones once) from ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    windows = _WindowPool(gen)
    seen: set[int] = set()
    for name, param in model.named_parameters(remove_duplicate=False):
        if id(param) in seen:
            continue
        seen.add(id(param))
        if param.numel() >= WINDOW_THRESHOLD and param.dim() >= 2 and param.is_contiguous():
            windows.fill(param, _scale(name, param.shape, hidden_size))
        else:
            param.copy_(_draw(name, param.shape, hidden_size, gen))
