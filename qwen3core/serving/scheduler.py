"""Continuous batching: requests join the running decode batch at step boundaries.

One :meth:`Scheduler.step` is a step boundary:

1. cancelled rows leave (the running batch's cache drops them with ``Cache.reorder``);
2. waiting requests are admitted while the batch has room (``max_batch`` rows, counting the
   one being prefilled);
3. requests in the prefill line run up to ``prefill_chunk`` prompt tokens in all, each in a
   cache of its own (a long prompt takes several steps); after its last chunk a request
   samples its first token and joins the running batch (``Cache.extend``: it keeps its own
   cache positions);
4. every running row decodes one token; finished rows leave at once.

A long prompt is thus prefilled a chunk per step while the running streams keep producing a
token per step. Each row's tokens depend only on its own prompt, sampler and seed: under
greedy decoding a request's output equals the same request generated alone (the property
``tests/serving/test_scheduler_equivalence.py`` holds it to). The scheduler is not thread-safe
except for :meth:`submit` and ``ServeRequest.cancel``; :class:`~qwen3core.serving.engine.Engine`
calls :meth:`step` from one worker thread.
"""

from __future__ import annotations

import threading
import time
from collections import deque

import torch

from qwen3core.cache import Cache
from qwen3core.errors import GenerationError, Qwen3CoreError
from qwen3core.generation.greedy import greedy_tokens
from qwen3core.generation.sampling import sample_next
from qwen3core.generation.steps import steps_for
from qwen3core.model import Qwen3Model
from qwen3core.serving.logprobs import token_logprobs
from qwen3core.serving.request import ServeEvent, ServeRequest
from qwen3core.serving.row import ServeRow


class QueueFullError(Qwen3CoreError):
    """The scheduler's waiting queue is full; the caller should retry later (HTTP 429)."""


class Scheduler:
    def __init__(self, model: Qwen3Model, *, max_batch: int = 8, max_waiting: int = 64,
                 prefill_chunk: int = 512, max_context: int | None = None):
        if max_batch < 1 or max_waiting < 0 or prefill_chunk < 1:
            raise GenerationError("max_batch and prefill_chunk must be >= 1, max_waiting >= 0")
        self.model = model
        self.steps = steps_for(model)
        self.max_batch = max_batch
        self.max_waiting = max_waiting
        self.prefill_chunk = prefill_chunk
        #: Slots per row: every row's cache has this capacity, so caches can be joined.
        self.max_context = min(max_context or model.spec.max_position_embeddings,
                               model.spec.max_position_embeddings)
        self._lock = threading.Lock()  # guards ``_waiting`` (submit runs on other threads)
        self._waiting: deque[ServeRow] = deque()
        self._prefilling: deque[ServeRow] = deque()
        self._running: list[ServeRow] = []  # one per row of ``_cache``, in order
        self._cache: Cache | None = None
        self._next_ids = torch.empty(0, dtype=torch.int64, device=model.device)
        self.steps_run = 0

    # -- what callers see ------------------------------------------------------------------

    def submit(self, request: ServeRequest) -> None:
        """Queue ``request``; raises GenerationError for one that can never run and
        QueueFullError when ``max_waiting`` requests already wait."""
        needed = len(request.prompt) + request.max_new_tokens
        if not request.prompt:
            raise GenerationError("the prompt is empty")
        if needed > self.max_context:
            raise GenerationError(
                f"the prompt has {len(request.prompt)} tokens and max_tokens is "
                f"{request.max_new_tokens}: {needed} positions exceed the server's context of "
                f"{self.max_context}; shorten the prompt or lower max_tokens")
        vocab = self.model.spec.vocab_size
        if any(not 0 <= t < vocab for t in request.prompt):
            raise GenerationError(f"the prompt has token ids outside 0..{vocab - 1}")
        row = ServeRow(request, self.model.device, vocab)
        with self._lock:
            if len(self._waiting) >= self.max_waiting:
                raise QueueFullError(f"{len(self._waiting)} requests are waiting already; "
                                     f"retry later")
            self._waiting.append(row)

    @property
    def waiting(self) -> int:
        with self._lock:
            return len(self._waiting)

    @property
    def running(self) -> int:
        """Rows decoding, plus the ones being prefilled."""
        return len(self._running) + len(self._prefilling)

    @property
    def idle(self) -> bool:
        return not self._running and not self._prefilling and not self.waiting

    # -- one step boundary -----------------------------------------------------------------

    @torch.inference_mode()
    def step(self) -> None:
        self._drop_cancelled()
        self._admit()
        budget = self.prefill_chunk  # prompt tokens this step may prefill, over all rows
        while self._prefilling and budget > 0:
            budget -= self._prefill_chunk(self._prefilling[0], budget)
        if self._running:
            logits = self.steps.decode_one(self._next_ids[:, None], self._cache)  # [B, vocab]
            self._next_ids = self._accept(self._running, logits)
            self._leave([i for i, row in enumerate(self._running) if row.finished])
        self.steps_run += 1

    def fail_all(self, message: str) -> None:
        """End every request with an error event (after the model step raised)."""
        with self._lock:
            rows = [*self._waiting, *self._prefilling, *self._running]
            self._waiting.clear()
        for row in rows:
            row.request.emit(ServeEvent(None, "", "error", error=message))
        self._prefilling.clear()
        self._running, self._cache = [], None
        self._next_ids = self._next_ids[:0]

    def _drop_cancelled(self) -> None:
        with self._lock:
            gone = [r for r in self._waiting if r.request.cancelled]
            for row in gone:
                self._waiting.remove(row)
        for row in [r for r in self._prefilling if r.request.cancelled]:
            self._prefilling.remove(row)
            gone.append(row)
        for row in gone:
            row.request.emit(ServeEvent(None, "", "cancelled"))
        cancelled = [i for i, row in enumerate(self._running) if row.request.cancelled]
        for i in cancelled:
            self._running[i].request.emit(ServeEvent(None, "", "cancelled"))
        self._leave(cancelled)

    def _admit(self) -> None:
        with self._lock:
            while self._waiting and self.running < self.max_batch:
                self._prefilling.append(self._waiting.popleft())

    def _prefill_chunk(self, row: ServeRow, budget: int) -> int:
        """Prefill up to ``budget`` more prompt tokens of ``row``; -> how many it ran."""
        prompt = row.request.prompt
        if row.cache is None:
            row.cache = self.model.new_cache(1, self.max_context)
        begin = row.prefilled
        end = min(begin + budget, len(prompt))
        ids = torch.tensor([prompt[begin:end]], dtype=torch.int64, device=self.model.device)
        logits = self.steps.prefill(ids, None, row.cache)  # [1, vocab]
        row.prefilled = end
        if end < len(prompt):
            return end - begin
        self._prefilling.popleft()
        first = self._accept([row], logits)
        if row.finished:
            return end - begin
        if self._cache is None:
            self._cache = row.cache
        else:
            self._cache.extend(row.cache)
        row.cache = None
        self._running.append(row)
        self._next_ids = torch.cat((self._next_ids, first))
        return end - begin

    def _accept(self, rows: list[ServeRow], logits: torch.Tensor) -> torch.Tensor:
        """Sample one token per row from logits [B, vocab], hand out the events; -> ids [B]."""
        picked = greedy_tokens(logits)  # plain greedy rows keep these
        for i, row in enumerate(rows):
            if not row.plain_greedy:  # the one sampler, per row with its own state
                generators = None if row.generator is None else [row.generator]
                picked[i] = sample_next(logits[i:i + 1], row.request.sampling, generators,
                                        row.history)[0]
            if row.history is not None:
                row.history.add(picked[i:i + 1])
        ids = picked.tolist()  # waits for the device: stopping needs the ids
        now = time.perf_counter()
        for i, (row, token) in enumerate(zip(rows, ids, strict=True)):
            event = row.state.accept(token, now)
            request = row.request
            logprobs = row_logits = None
            if request.top_logprobs is not None or request.record_logits:
                row_logits = logits[i].detach().to("cpu", torch.float64)
            if request.top_logprobs is not None:
                logprobs = token_logprobs(row_logits, token, request.top_logprobs)
            request.emit(ServeEvent(token, event.text, event.finish_reason, logprobs,
                                    row_logits if request.record_logits else None))
        return picked

    def _leave(self, rows: list[int]) -> None:
        """Rows ``rows`` (indices into the running batch) leave it."""
        if not rows:
            return
        leaving = set(rows)
        keep = [i for i in range(len(self._running)) if i not in leaving]
        self._running = [self._running[i] for i in keep]
        if not keep:
            self._cache = None
            self._next_ids = self._next_ids[:0]
            return
        index = torch.tensor(keep, dtype=torch.int64, device=self.model.device)
        self._cache.reorder(index)
        self._next_ids = self._next_ids.index_select(0, index)
