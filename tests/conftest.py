"""Fixtures shared across the test tree: the official tokenizer, loaded once per session."""

import os
import select
import time
from pathlib import Path

import pytest

#: ../shared/qwen3-tokenizer beside the checkout (never copied into the repository).
TOKENIZER_DIR = Path(os.environ.get("QWEN3CORE_TOKENIZER_DIR")
                     or Path(__file__).resolve().parents[2] / "shared" / "qwen3-tokenizer")


def _require_tokenizer_files() -> None:
    if not (TOKENIZER_DIR / "tokenizer.json").is_file():
        pytest.skip(f"official Qwen3 tokenizer files not found at {TOKENIZER_DIR} "
                    f"(see REFERENCE.md)")


@pytest.fixture(scope="session")
def tok():
    """qwen3core's Tokenizer on the official Qwen3 files."""
    _require_tokenizer_files()
    from qwen3core.tokenizer import Tokenizer

    return Tokenizer.from_dir(TOKENIZER_DIR)


@pytest.fixture(scope="session")
def hf():
    """transformers' AutoTokenizer on the same files: the parity reference."""
    _require_tokenizer_files()
    transformers = pytest.importorskip("transformers", reason="parity tests need transformers")
    return transformers.AutoTokenizer.from_pretrained(str(TOKENIZER_DIR))


class PtyTerminal:
    """The controlling side of a pseudo-terminal: read until some text has appeared, type."""

    def __init__(self, fd: int):
        self.fd = fd
        self.seen = b""

    def wait_for(self, text: str, count: int, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while self.seen.count(text.encode()) < count:
            left = deadline - time.monotonic()
            assert left > 0, f"timed out waiting for {text!r}; the terminal shows {self.seen!r}"
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                try:
                    chunk = os.read(self.fd, 4096)
                except OSError:  # the child closed the terminal
                    chunk = b""
                assert chunk, f"the chat ended early; the terminal shows {self.seen!r}"
                self.seen += chunk

    def write(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def type(self, line: str) -> None:
        self.write(line + "\n")

    def text(self) -> str:
        # The terminal turns "\n" into "\r\n"; undo that to compare with generated text.
        return self.seen.decode("utf-8", errors="replace").replace("\r\n", "\n")


@pytest.fixture
def pty_terminal():
    """The :class:`PtyTerminal` class, for tests that drive a command through a pty."""
    return PtyTerminal
