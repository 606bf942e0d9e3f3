"""How one dimension of the whole model is divided among ranks: contiguous, nearly even parts."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Span:
    """The half-open range ``[start, stop)`` of a dimension that one rank holds."""

    start: int
    stop: int

    @property
    def size(self) -> int:
        return self.stop - self.start

    def slice(self) -> slice:
        return slice(self.start, self.stop)

    def scaled(self, factor: int) -> Span:
        """The same range in units ``factor`` times smaller (heads -> head_dim rows)."""
        return Span(self.start * factor, self.stop * factor)


def split_evenly(total: int, parts: int, index: int) -> Span:
    """Part ``index`` of ``total`` divided into ``parts`` contiguous ranges whose sizes differ by
    at most one (the first ``total % parts`` are one longer), as ``torch.tensor_split`` does."""
    base, extra = divmod(total, parts)
    start = index * base + min(index, extra)
    return Span(start, start + base + (1 if index < extra else 0))
