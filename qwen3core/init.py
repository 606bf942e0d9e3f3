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
"""

from __future__ import annotations

import math

import torch
from torch import nn


def _draw(name: str, shape: torch.Size, hidden_size: int, gen: torch.Generator) -> torch.Tensor:
    if name.endswith("norm.weight"):
        return torch.empty(shape).uniform_(0.8, 1.2, generator=gen)
    if name.endswith("embed_tokens.weight") or name == "lm_head.weight":
        return torch.randn(shape, generator=gen) * (4.0 / math.sqrt(hidden_size))
    if len(shape) >= 2:
        return torch.randn(shape, generator=gen) * (2.0 / math.sqrt(shape[-1]))
    return torch.randn(shape, generator=gen) * 0.02


@torch.no_grad()
def initialize_random(model: nn.Module, seed: int, hidden_size: int) -> None:
    """Fill every parameter of ``model`` (tied ones once) from ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    seen: set[int] = set()
    for name, param in model.named_parameters(remove_duplicate=False):
        if id(param) in seen:
            continue
        seen.add(id(param))
        param.copy_(_draw(name, param.shape, hidden_size, gen))
