"""One batch row's progress: its tokens, its text, when it stops, and its timings."""

from __future__ import annotations

from typing import Any

from qwen3core.generation.results import FinishReason, GenerationResult, StreamEvent, Timings
from qwen3core.generation.stop_strings import StopStringMatcher


class RowText:
    """Incremental detokenisation (the tokenizer's stream decoder) followed by stop strings."""

    def __init__(self, tokenizer: Any, stops: tuple[str, ...]):
        self.decoder = tokenizer.stream_decoder()
        self.matcher = StopStringMatcher(stops)

    def push(self, token_id: int) -> tuple[str, str | None]:
        """-> (text to release, stop string found or None)."""
        return self.matcher.feed(self.decoder.push([token_id]))

    def finish(self) -> tuple[str, str | None]:
        """The row ends: decode what the decoder still holds and release everything."""
        released, stop = self.matcher.feed(self.decoder.flush())
        if stop is None:
            released += self.matcher.flush()
        return released, stop


class RowState:
    def __init__(self, row: int, prompt_tokens: int, max_new_tokens: int,
                 eos_token_ids: frozenset[int], text: RowText | None, started: float):
        self.row = row
        self.prompt_tokens = prompt_tokens
        self.max_new_tokens = max_new_tokens
        self.eos_token_ids = eos_token_ids
        self.text = text
        self.started = started  # perf_counter() when the request arrived
        self.token_ids: list[int] = []
        self.pieces: list[str] = []
        self.finish_reason: FinishReason | None = None
        self.stop_string: str | None = None
        self.first_token_at = self.last_token_at = 0.0

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None

    def accept(self, token_id: int, now: float) -> StreamEvent:
        """Record one generated token (sampled at time ``now``) and say what it produced."""
        if not self.token_ids:
            self.first_token_at = now
        self.last_token_at = now
        self.token_ids.append(token_id)
        piece, stop = "", None
        if token_id in self.eos_token_ids:
            self.finish_reason = "stop"  # the eos token itself is not part of the text
            if self.text is not None:
                piece, stop = self.text.finish()
        elif self.text is not None:
            piece, stop = self.text.push(token_id)
        if stop is not None:
            self.finish_reason, self.stop_string = "stop", stop
        elif not self.finished and len(self.token_ids) >= self.max_new_tokens:
            self.finish_reason = "length"
            if self.text is not None:
                tail, stop = self.text.finish()
                piece += tail
                if stop is not None:
                    self.finish_reason, self.stop_string = "stop", stop
        self.pieces.append(piece)
        return StreamEvent(self.row, [token_id], piece, self.finish_reason)

    def result(self, prefill_s: float) -> GenerationResult:
        decode_s = self.last_token_at - self.first_token_at
        later_tokens = len(self.token_ids) - 1
        return GenerationResult(
            token_ids=list(self.token_ids),
            text="".join(self.pieces) if self.text is not None else None,
            finish_reason=self.finish_reason or "length",
            prompt_tokens=self.prompt_tokens,
            timings=Timings(
                prefill_s=prefill_s,
                time_to_first_token_s=self.first_token_at - self.started,
                decode_s=decode_s,
                decode_tokens_per_s=later_tokens / decode_s if later_tokens and decode_s > 0
                else None),
            stop_string=self.stop_string)
