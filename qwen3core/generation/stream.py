"""The object ``stream()`` returns: an iterator of events that keeps the final results."""

from __future__ import annotations

from collections.abc import Generator, Iterator

from qwen3core.generation.results import GenerationResult, StreamEvent


class GenerationStream(Iterator[StreamEvent]):
    """Iterate to receive :class:`StreamEvent` objects as tokens are produced; once exhausted,
    ``results`` holds one :class:`GenerationResult` per prompt (``result`` for a single one).

    Nothing runs until the first ``next()``; stopping early simply abandons the work.
    """

    def __init__(self, events: Generator[StreamEvent, None, list[GenerationResult]],
                 single: bool):
        self._events = events
        self.single = single
        self._results: list[GenerationResult] | None = None

    def __next__(self) -> StreamEvent:
        try:
            return next(self._events)
        except StopIteration as done:
            if self._results is None:  # later next() calls see an exhausted generator (None)
                self._results = done.value
            raise

    @property
    def results(self) -> list[GenerationResult]:
        if self._results is None:
            raise RuntimeError("the stream has not finished; iterate over it to the end (or "
                               "call collect()) before reading results")
        return self._results

    @property
    def result(self) -> GenerationResult:
        return self.results[0]

    def collect(self) -> GenerationResult | list[GenerationResult]:
        """Run to the end; one result for a single prompt, else the list."""
        for _ in self:
            pass
        return self.result if self.single else self.results
