"""Stopping on text: find the first stop string in streamed text, holding back possible starts.

Text arrives in pieces, and a stop string can straddle two of them. So a piece is released only
up to the point where no stop string could still begin; the held tail is released once the
next piece shows it was not a stop string, or when the row ends.
"""

from __future__ import annotations


class StopStringMatcher:
    def __init__(self, stops: tuple[str, ...]):
        self.stops = stops
        self.pending = ""  # text received but not yet released

    def feed(self, piece: str) -> tuple[str, str | None]:
        """Add ``piece``; return (text safe to release, the stop string found or None).

        When a stop string is found, the released text ends right before it and everything
        after is dropped.
        """
        if not self.stops:
            return piece, None
        self.pending += piece
        # Every occurrence starts inside ``pending``: a start in released text would have been
        # a held-back prefix (see _held_back).
        found = min(((self.pending.find(s), s) for s in self.stops if s in self.pending),
                    default=None)
        if found is not None:
            index, stop = found
            released, self.pending = self.pending[:index], ""
            return released, stop
        keep = self._held_back()
        cut = len(self.pending) - keep
        released, self.pending = self.pending[:cut], self.pending[cut:]
        return released, None

    def flush(self) -> str:
        """The row ended without a stop string: release whatever was held back."""
        released, self.pending = self.pending, ""
        return released

    def _held_back(self) -> int:
        """Length of the longest tail of ``pending`` that is a proper prefix of a stop string."""
        longest = min(max(len(s) for s in self.stops) - 1, len(self.pending))
        for n in range(longest, 0, -1):
            tail = self.pending[-n:]
            if any(s.startswith(tail) for s in self.stops):
                return n
        return 0
