"""Fixtures shared across the test tree: the official tokenizer, loaded once per session, a
pseudo-terminal, and a fresh process on the cpu backend's AVX2 loops."""

import os
import select
import subprocess
import sys
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


REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def run_forced_avx2():
    """``run(code, *argv)``: run ``python -c code`` in a fresh process, from the repository
    root (so ``tests.<dir>.<module>`` imports), with ``QWEN3CORE_CPU_ISA=avx2``, and fail with
    its stderr unless it exits 0. The cpu backend chooses its loops once per process, so the
    AVX2 ones of a machine that would pick AVX-512 only run in a new one."""
    def run(code: str, *argv: str) -> None:
        done = subprocess.run([sys.executable, "-c", code, *argv],
                              env={**os.environ, "QWEN3CORE_CPU_ISA": "avx2"},
                              capture_output=True, text=True, check=False, timeout=600,
                              cwd=REPO)
        assert done.returncode == 0, done.stderr[-2000:]

    return run
