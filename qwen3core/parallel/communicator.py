"""The collective operations a tensor-parallel forward pass needs, and nothing else.

Both are deterministic: every rank receives the same bits whatever the timing, and the result
does not depend on which rank finished first. ``all_reduce_sum`` is therefore an all-gather
followed by a sum in rank order rather than ``dist.all_reduce``: a native all-reduce may split
and order its additions by algorithm and message size (NCCL picks rings or trees at run time),
while replicated computations downstream (norms, the MoE router's top-k) must see identical
inputs on every rank, or ranks could route a token differently and disagree forever after.
Partial sums are added in at least float32 (float64 stays float64): a bfloat16 partial rounded
once more by the addition would add a rounding step one process does not have.
"""

from __future__ import annotations

from typing import Protocol

import torch


class Communicator(Protocol):
    def all_reduce_sum(self, x: torch.Tensor) -> torch.Tensor:
        """The sum over ranks of each rank's ``x`` (same shape everywhere), identical on all."""

    def all_gather_last(self, x: torch.Tensor, sizes: list[int]) -> torch.Tensor:
        """Each rank's ``x`` [..., sizes[rank]] concatenated in rank order along the last dim."""


class ProcessGroupCommunicator:
    """Collectives over a ``torch.distributed`` process group (gloo on CPU, NCCL on GPUs)."""

    def __init__(self, group: object | None = None):
        import torch.distributed as dist

        self._dist = dist
        self.group = group
        self.world_size = dist.get_world_size(group)

    def _gather(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = x.contiguous()
        parts = [torch.empty_like(x) for _ in range(self.world_size)]
        self._dist.all_gather(parts, x, group=self.group)
        return parts

    def all_reduce_sum(self, x: torch.Tensor) -> torch.Tensor:
        parts = self._gather(x)
        accumulate = torch.promote_types(x.dtype, torch.float32)
        total = parts[0].to(accumulate)
        for part in parts[1:]:  # rank order: the same additions on every rank
            total = total + part.to(accumulate)
        return total.to(x.dtype)

    def all_gather_last(self, x: torch.Tensor, sizes: list[int]) -> torch.Tensor:
        widest = max(sizes)
        if x.shape[-1] < widest:  # collectives need equal shapes: pad, then trim
            x = torch.nn.functional.pad(x, (0, widest - x.shape[-1]))
        parts = self._gather(x)
        return torch.cat([part[..., :size] for part, size in zip(parts, sizes, strict=True)],
                         dim=-1)
