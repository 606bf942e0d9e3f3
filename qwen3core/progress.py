"""Progress for anything that takes more than a second, on stderr (stdout carries results).

``with phase("building random weights for random:0.6B"):`` shows, once the phase has run for
``DELAY`` seconds:

- on a terminal, a live line (spinner, label, detail, elapsed seconds) redrawn ten times a
  second, replaced by ``label: done in 3.4 s`` when the phase ends;
- on a pipe or a log, one line ``qwen3: label: done in 3.4 s`` when it ends (no carriage
  returns, nothing for phases shorter than ``DELAY``).

Phases nest: while an inner one runs, the live line shows it after the outer label.
Nothing is printed unless :func:`enable` was called (the ``qwen3`` command line does): the
library stays quiet inside other programs and tests.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Iterator
from typing import TextIO

DELAY = 1.0  # seconds a phase runs before anything is shown
FRAME = 0.1
SPINNER = "|/-\\"

_enabled = False
_stack: list[Phase] = []
_lock = threading.Lock()
_line = {"dirty": False}  # a live line is on screen: clear it before writing anything else


def enable(on: bool = True) -> None:
    global _enabled
    _enabled = on


def enabled() -> bool:
    return _enabled


class Phase:
    def __init__(self, label: str, stream: TextIO | None = None):
        self.label = label
        self.detail = ""
        self.stream = stream or sys.stderr
        self.started = time.monotonic()
        self.live = _isatty(self.stream)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def update(self, detail: str) -> None:
        """Say what the phase is doing now (shown live on a terminal)."""
        self.detail = detail

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def _start(self) -> None:
        if self.live and not _stack[:-1]:  # the outermost phase owns the live line
            self._thread = threading.Thread(target=self._draw_loop, daemon=True)
            self._thread.start()

    def _draw_loop(self) -> None:
        if self._stop.wait(DELAY):
            return
        frame = 0
        while not self._stop.is_set():
            with _lock:
                text = " > ".join(p.label + (f" ({p.detail})" if p.detail else "")
                                  for p in _stack)
                self.stream.write(f"\r\033[K{SPINNER[frame % 4]} {text}  "
                                  f"{self.elapsed:.1f} s")
                self.stream.flush()
                _line["dirty"] = True
            frame += 1
            self._stop.wait(FRAME)

    def _finish(self, ok: bool) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with _lock:
            if _line["dirty"]:
                self.stream.write("\r\033[K")
                _line["dirty"] = False
            if self.elapsed >= DELAY:
                outcome = f"done in {self.elapsed:.1f} s" if ok else \
                    f"stopped after {self.elapsed:.1f} s"
                self.stream.write(f"qwen3: {self.label}: {outcome}\n")
            self.stream.flush()


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class _Quiet:
    """What :func:`phase` yields when progress is off: the same interface, doing nothing."""

    label = detail = ""

    def update(self, detail: str) -> None:
        pass


@contextlib.contextmanager
def phase(label: str) -> Iterator[Phase | _Quiet]:
    """A step the user may wait for; see the module docstring."""
    if not _enabled:
        yield _Quiet()
        return
    current = Phase(label)
    _stack.append(current)
    current._start()
    ok = False
    try:
        yield current
        ok = True
    finally:
        _stack.remove(current)
        current._finish(ok)
