"""One request as the scheduler runs it: prompt, limits, sampling, and where its tokens go."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from qwen3core.generation.sampling import SamplingParams

_ids = itertools.count()


@dataclass(frozen=True)
class TokenLogprobs:
    """The chosen token's log-probability under the model, and the ``top`` most likely."""

    logprob: float
    top: list[tuple[int, float]]  # (token id, logprob), most likely first


@dataclass(frozen=True)
class ServeEvent:
    """One generated token of one request (or its end): what a stream sends on."""

    token_id: int | None  # None for an event that only ends the request (cancelled, error)
    text: str  # text released by this token ("" while a stop string may still be matching)
    finish_reason: str | None  # "stop", "length", "cancelled", "error" or None while running
    logprobs: TokenLogprobs | None = None
    logits: torch.Tensor | None = None  # [vocab] float64 on the CPU, with ``record_logits``
    error: str | None = None


@dataclass(eq=False)
class ServeRequest:
    """``emit`` is called on the scheduler's thread for every token, in order, and once with
    a ``finish_reason``; it must not block (the server hands events to its event loop)."""

    prompt: list[int]
    max_new_tokens: int
    emit: Callable[[ServeEvent], None]
    sampling: SamplingParams = field(default_factory=SamplingParams)
    eos_token_ids: frozenset[int] = frozenset()
    stop: tuple[str, ...] = ()
    tokenizer: Any = None  # for text and stop strings; None: token ids only
    top_logprobs: int | None = None  # None: no logprobs; 0: the chosen token's only
    #: Hand every step's logits to ``emit`` (the equivalence tests compare them).
    record_logits: bool = False
    #: Offset added to ``sampling.seed`` (the n-th choice of one API request draws seed + n,
    #: as the n-th prompt of an offline batch does).
    seed_offset: int = 0
    id: int = field(default_factory=lambda: next(_ids))
    _cancelled: threading.Event = field(default_factory=threading.Event, repr=False)

    def cancel(self) -> None:
        """Thread-safe: the row leaves the batch at the next step boundary."""
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()
