"""What generation hands back: per-prompt results, their timings, and streamed events."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

FinishReason = Literal["stop", "length"]


@dataclass(frozen=True)
class Timings:
    """Wall-clock seconds, measured with the device synchronised at each step.

    ``prefill_s`` is the prompt forward pass (the whole batch's, shared by its rows);
    ``time_to_first_token_s`` runs from the call (prompt encoding included) to this row's first
    token; ``decode_s`` from the first token to this row's last, so ``decode_tokens_per_s`` counts
    the tokens after the first (None when there was only one).
    """

    prefill_s: float
    time_to_first_token_s: float
    decode_s: float
    decode_tokens_per_s: float | None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class GenerationResult:
    """One prompt's completion.

    ``token_ids`` are the generated tokens only (the eos token that ended the row included).
    ``text`` is their decoded text without that eos token, cut before a matched stop string
    (None without a tokenizer). ``finish_reason`` is "stop" (eos or stop string) or "length"
    (``max_new_tokens`` reached).
    """

    token_ids: list[int]
    text: str | None
    finish_reason: FinishReason
    prompt_tokens: int
    timings: Timings
    stop_string: str | None = None  # which stop string ended the row, if one did

    def to_dict(self) -> dict:
        out = asdict(self)
        out["timings"] = self.timings.to_dict()
        return out


@dataclass(frozen=True)
class StreamEvent:
    """New output of one row: its ``token_ids`` and ``text`` since the previous event.

    The row's last event carries its ``finish_reason``. Concatenating a row's ``text`` pieces
    gives exactly the result's ``text``; text that might start a stop string is held back until
    it is known not to, so it can lag the ids by a few tokens.
    """

    row: int  # index of the prompt in the request
    token_ids: list[int] = field(default_factory=list)
    text: str = ""
    finish_reason: FinishReason | None = None
