"""The token embedding, whole for one process and split by vocabulary across ranks."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from qwen3core.parallel.layout import ParallelLayout
from qwen3core.spec import Qwen3Spec


class VocabParallelEmbedding(nn.Module):
    """Rows ``[start, stop)`` of the embedding. Each rank looks up the ids it holds, writes zeros
    for the others, and the ranks' results are summed: exactly one rank contributes each row,
    so the sum is the whole table's lookup bit for bit."""

    def __init__(self, layout: ParallelLayout, start: int, stop: int, hidden_size: int, *,
                 dtype: torch.dtype, device: torch.device):
        super().__init__()
        self.layout, self.start, self.stop = layout, start, stop
        self.weight = nn.Parameter(torch.empty(stop - start, hidden_size, dtype=dtype,
                                               device=device))

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return lookup_held_rows(input_ids, self.start, self.stop, self.layout,
                                lambda ids: F.embedding(ids, self.weight))

    def extra_repr(self) -> str:
        return f"rows {self.start}..{self.stop}, hidden={self.weight.shape[1]}"


def lookup_held_rows(input_ids: torch.Tensor, start: int, stop: int, layout: ParallelLayout,
                     rows: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """The embedding of ``input_ids`` when this rank holds rows ``[start, stop)``, read with
    ``rows(local ids)``: each rank looks up the ids it holds, writes zeros for the others, and
    the ranks' results are summed (exactly one rank contributes each row)."""
    local = input_ids - start
    held = (local >= 0) & (local < stop - start)
    found = rows(torch.where(held, local, 0))
    return layout.all_reduce(torch.where(held[..., None], found, 0))


def token_embedding(spec: Qwen3Spec, layout: ParallelLayout, *, dtype: torch.dtype,
                    device: torch.device) -> nn.Module:
    """``model.embed_tokens``: a plain ``nn.Embedding`` for one process, else this rank's rows."""
    vocab_size, hidden_size = spec.vocab_size, spec.hidden_size
    if layout.is_parallel:
        span = layout.vocab(spec)
        return VocabParallelEmbedding(layout, span.start, span.stop, hidden_size, dtype=dtype,
                                      device=device)
    # Given its tensor, nn.Embedding skips its random init: weights are always loaded or
    # initialised later, and on meta that init would import torch._dynamo (seconds).
    return nn.Embedding(vocab_size, hidden_size, _weight=torch.empty(
        vocab_size, hidden_size, dtype=dtype, device=device))
