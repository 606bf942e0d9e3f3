"""A request's place in the scheduler: its cache while it prefills, its sampler and its text."""

from __future__ import annotations

import time

import torch

from qwen3core.cache import Cache
from qwen3core.generation.rows import RowState, RowText
from qwen3core.generation.sampling import TokenHistory
from qwen3core.serving.request import ServeRequest


class ServeRow:
    """Prefill progress (``prefilled`` prompt tokens are in ``cache``), the row's own sampling
    generator, and its :class:`~qwen3core.generation.rows.RowState` (stopping and text)."""

    def __init__(self, request: ServeRequest, device: torch.device, vocab_size: int):
        self.request = request
        self.cache: Cache | None = None  # own cache until the row joins the running batch
        self.prefilled = 0
        text = RowText(request.tokenizer, request.stop) if request.tokenizer is not None \
            else None
        self.state = RowState(0, len(request.prompt), request.max_new_tokens,
                              request.eos_token_ids, text, time.perf_counter())
        sampling = request.sampling
        self.generator = None
        if not sampling.greedy:
            # Seeded as row ``seed_offset`` of an offline batch is.
            self.generator = sampling.generators(request.seed_offset + 1, device)[-1]
        self.history = None  # what the penalties count, only when they are on
        if sampling.has_penalties:
            self.history = TokenHistory([request.prompt], vocab_size, device)

    @property
    def plain_greedy(self) -> bool:
        """Argmax of the logits as they are (no sampling, no penalty)."""
        return self.generator is None and self.history is None

    @property
    def finished(self) -> bool:
        return self.state.finished
