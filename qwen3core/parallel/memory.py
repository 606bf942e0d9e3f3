"""How many bytes of weights each tensor-parallel rank holds, from shapes alone."""

from __future__ import annotations

import torch

from qwen3core.contracts import Selection
from qwen3core.parallel.layout import ParallelLayout
from qwen3core.parallel.plan import ELSEWHERE, Shard, shard_for
from qwen3core.spec import Qwen3Spec


def weight_bytes_per_rank(spec: Qwen3Spec, selection: Selection, dtype: torch.dtype,
                          world_size: int) -> list[int]:
    """Bytes of (unique) parameters on each of ``world_size`` ranks, by the shard plan applied
    to the one-process model's parameters (built on ``meta``: no memory)."""
    from qwen3core.build import build_skeleton

    whole = build_skeleton(spec, selection, dtype)
    size = torch.empty((), dtype=dtype).element_size()
    out = []
    for rank in range(world_size):
        layout = ParallelLayout(rank, world_size)
        if layout.is_parallel:
            layout.check(spec)
        total = 0
        for name, param in whole.named_parameters():
            shard = shard_for(name, spec, layout)
            if shard == ELSEWHERE:
                continue
            n = param.numel()
            if isinstance(shard, Shard):
                n = n // shard.full * shard.span.size
            total += n
        out.append(total * size)
    return out
