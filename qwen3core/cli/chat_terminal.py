"""The terminal side of ``qwen3 chat``: a line editor with persistent history (GNU readline,
from the standard library), and keeping keystrokes out of a reply while it streams."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

HISTORY_LENGTH = 1000


def history_path() -> Path:
    override = os.environ.get("QWEN3CORE_CHAT_HISTORY")
    if override:
        return Path(override)
    state = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(state) / "qwen3core" / "chat_history"


class LineEditor:
    """``read(prompt)``: a line with editing (arrows, Ctrl-A/E, ...) and history (up/down,
    Ctrl-R), the history saved after each line. Plain ``input()`` where readline is missing."""

    def __init__(self, path: Path | None = None):
        self.path = path or history_path()
        try:
            import readline
        except ImportError:  # e.g. Windows without pyreadline: input() still works
            self.readline = None
            return
        self.readline = readline
        readline.set_history_length(HISTORY_LENGTH)
        with contextlib.suppress(OSError):
            readline.read_history_file(self.path)

    def read(self, prompt: str) -> str:
        line = input(prompt)
        if self.readline is not None and line.strip():
            with contextlib.suppress(OSError):
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.readline.write_history_file(self.path)
        return line


@contextlib.contextmanager
def quiet_input_while(active: bool) -> Iterator[None]:
    """While a reply streams, keys typed on the terminal are neither echoed (they would land
    inside the reply) nor kept (they would become the next message unseen): echo is off and
    pending input is discarded at the end. Ctrl-C still interrupts."""
    if not active or not sys.stdin.isatty():
        yield
        return
    try:
        import termios
    except ImportError:
        yield
        return
    fd = sys.stdin.fileno()
    try:
        saved = termios.tcgetattr(fd)
    except termios.error:
        yield
        return
    quiet = list(saved)
    quiet[3] &= ~(termios.ECHO | termios.ICANON)  # lflags: no echo, no line assembly
    termios.tcsetattr(fd, termios.TCSANOW, quiet)
    try:
        yield
    finally:
        termios.tcflush(fd, termios.TCIFLUSH)  # drop what was typed meanwhile
        termios.tcsetattr(fd, termios.TCSANOW, saved)
