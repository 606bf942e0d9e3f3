"""Running one API request's ``n`` choices through the engine, and shaping what comes back.

:class:`Choice` accumulates one choice's events (text, tokens, logprobs, finish reason);
:class:`ChoiceRun` submits the choices and yields ``(choice, event)`` pairs as the worker
produces them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from qwen3core.errors import GenerationError
from qwen3core.serving.engine import Engine, event_queue
from qwen3core.serving.errors import ApiError
from qwen3core.serving.params import OutputParams
from qwen3core.serving.request import ServeEvent, ServeRequest
from qwen3core.serving.scheduler import QueueFullError


@dataclass
class Choice:
    index: int
    tokens: int = 0
    text: str = ""
    finish_reason: str | None = None
    logprobs: list[tuple[int, Any]] = field(default_factory=list)  # (token id, TokenLogprobs)


def api_finish_reason(reason: str | None) -> str | None:
    return reason if reason in ("stop", "length") else None


class ChoiceRun:
    """One API request's ``n`` choices in the engine.

    :meth:`submit` queues them (raising ApiError 400/429 while a plain error response can
    still be sent); :meth:`events` yields ``(choice, event)`` for every event until all
    choices finish, and cancels the unfinished ones when its consumer stops (a client that
    disconnects, an error), so their rows leave the batch at the next step. ``disconnected``
    (an async callable) is polled while waiting, for responses that send nothing until the
    end."""

    def __init__(self, engine: Engine, tokenizer: Any, prompt: list[int],
                 params: OutputParams, max_tokens: int,
                 disconnected: Callable[[], Any] | None = None):
        self.engine = engine
        self.prompt = prompt
        self.params = params
        self.disconnected = disconnected
        self.queue: asyncio.Queue = asyncio.Queue()
        loop = asyncio.get_running_loop()
        self.requests = [
            ServeRequest(prompt=prompt, max_new_tokens=max_tokens,
                         emit=event_queue(loop, self.queue, i), sampling=params.sampling,
                         eos_token_ids=frozenset(tokenizer.eos_token_ids), stop=params.stop,
                         tokenizer=tokenizer, top_logprobs=params.top_logprobs, seed_offset=i)
            for i in range(params.n)]
        self.choices = [Choice(i) for i in range(params.n)]
        self.submitted: list[ServeRequest] = []

    def submit(self) -> None:
        try:
            for request in self.requests:
                self.engine.submit(request)
                self.submitted.append(request)
        except QueueFullError as exc:
            self.cancel()
            raise ApiError(429, str(exc), type="rate_limit_error", code="queue_full") from None
        except GenerationError as exc:
            self.cancel()
            raise ApiError(400, str(exc), code="context_length_exceeded"
                           if "context" in str(exc) else None) from None

    def cancel(self) -> None:
        for request in self.submitted:
            request.cancel()  # a no-op for finished ones; the others leave the batch
        self.engine.wake()

    async def events(self) -> AsyncIterator[tuple[Choice, ServeEvent]]:
        try:
            async for item in self._events():
                yield item
        finally:
            self.cancel()

    async def _events(self) -> AsyncIterator[tuple[Choice, ServeEvent]]:
        metrics = self.engine.metrics
        pending = len(self.choices)
        started = time.perf_counter()
        last = [started] * pending
        checked = started
        while pending:
            try:
                index, event = await asyncio.wait_for(self.queue.get(), timeout=0.25)
            except asyncio.TimeoutError:
                event = None
            now = time.perf_counter()
            if self.disconnected is not None and now - checked >= 0.25:
                checked = now  # polled at most every 0.25 s, busy or not
                if await self.disconnected():
                    return
            if event is None:
                continue
            choice = self.choices[index]
            if event.finish_reason == "error":
                raise ApiError(500, event.error or "generation failed", type="server_error")
            if event.finish_reason == "cancelled":
                return
            if event.token_id is not None:
                now = time.perf_counter()
                metrics.observe_latency(metrics.time_to_first_token if choice.tokens == 0
                                        else metrics.inter_token, now - last[index])
                last[index] = now
                choice.tokens += 1
                choice.text += event.text
                if event.logprobs is not None:
                    choice.logprobs.append((event.token_id, event.logprobs))
            if event.finish_reason is not None:
                choice.finish_reason = event.finish_reason
                pending -= 1
            yield choice, event
        metrics.observe_tokens(len(self.prompt) * len(self.choices),
                               sum(c.tokens for c in self.choices))
        metrics.observe_latency(metrics.request_seconds, time.perf_counter() - started)
