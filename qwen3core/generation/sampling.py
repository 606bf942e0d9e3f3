"""Choosing the next token from logits: greedy, or temperature / top-k / top-p sampling.

The filters are applied in the usual order (temperature, then top-k, then top-p on what top-k
left), and sampling draws from each row's own ``torch.Generator``, so a row's tokens depend only
on its seed and its logits, never on which other rows share the batch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from qwen3core.errors import GenerationError


@dataclass(frozen=True)
class SamplingParams:
    """How to pick tokens. ``temperature == 0`` means greedy (top-k, top-p and seed unused).

    ``top_k == 0`` and ``top_p == 1.0`` switch those filters off. ``seed`` makes sampling
    reproducible; None draws a fresh one from the operating system.
    """

    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.temperature, (int, float)) or self.temperature < 0 \
                or self.temperature != self.temperature:
            raise GenerationError(
                f"temperature must be a number >= 0 (0 means greedy), got {self.temperature!r}")
        if not isinstance(self.top_k, int) or isinstance(self.top_k, bool) or self.top_k < 0:
            raise GenerationError(
                f"top_k must be an integer >= 0 (0 switches it off), got {self.top_k!r}")
        if not isinstance(self.top_p, (int, float)) or not 0 < self.top_p <= 1:
            raise GenerationError(
                f"top_p must be in (0, 1] (1 switches it off), got {self.top_p!r}")
        if self.seed is not None and (not isinstance(self.seed, int) or self.seed < 0):
            raise GenerationError(f"seed must be a non-negative integer, got {self.seed!r}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def generators(self, rows: int, device: torch.device) -> list[torch.Generator] | None:
        """One generator per row, seeded ``seed + row`` (so row 0 of a batch draws exactly what
        the same prompt alone would); None when greedy."""
        if self.greedy:
            return None
        base = self.seed if self.seed is not None else int.from_bytes(os.urandom(7), "little")
        return [torch.Generator(device=device).manual_seed(base + row) for row in range(rows)]


def filter_top_k(logits: torch.Tensor, k: int) -> torch.Tensor:
    """logits [B, V] -> the same with everything below each row's k-th largest set to -inf."""
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    kth = torch.topk(logits, k, dim=-1).values[:, -1:]  # [B, 1]
    return logits.masked_fill(logits < kth, float("-inf"))


def filter_top_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    """logits [B, V] -> the same with all but the smallest set of most likely tokens whose
    probability mass reaches ``p`` set to -inf.

    A token is kept iff the mass of the tokens ranked above it is still below ``p``; the most
    likely token is therefore always kept.
    """
    if p >= 1.0:
        return logits
    probs = torch.softmax(logits, dim=-1)
    sorted_probs, order = probs.sort(dim=-1, descending=True)  # [B, V]
    cumulative = sorted_probs.cumsum(dim=-1)
    mass_above = torch.cat((torch.zeros_like(cumulative[:, :1]), cumulative[:, :-1]), dim=-1)
    drop_sorted = mass_above >= p
    drop = torch.empty_like(drop_sorted).scatter_(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def sample_next(logits: torch.Tensor, params: SamplingParams,
                generators: list[torch.Generator] | None) -> torch.Tensor:
    """logits [B, V] -> next token ids [B] (int64); ``generators`` holds one per row."""
    if params.greedy:
        return logits.argmax(dim=-1)
    work_dtype = torch.promote_types(logits.dtype, torch.float32)
    scaled = logits.to(work_dtype) / params.temperature
    scaled = filter_top_p(filter_top_k(scaled, params.top_k), params.top_p)
    probs = torch.softmax(scaled, dim=-1)  # [B, V]
    assert generators is not None and len(generators) == probs.shape[0]
    picks = [torch.multinomial(probs[row], 1, generator=gen)
             for row, gen in enumerate(generators)]
    return torch.cat(picks)
