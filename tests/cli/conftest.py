"""Running ``qwen3`` as a user does: a fresh interpreter, its own stdin/stdout, exit code."""

import os
import subprocess
import sys

import pytest


def cli_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")  # tiny models; a shared machine
    env.update(extra)
    return env


@pytest.fixture
def qwen3():
    """``qwen3(*argv, input=None, timeout=120)`` -> CompletedProcess (text)."""

    def run(*argv: str, input: str | None = None, timeout: float = 120, env=None):
        return subprocess.run([sys.executable, "-m", "qwen3core.cli", *argv], input=input,
                              capture_output=True, text=True, timeout=timeout,
                              env=env or cli_env(), check=False)
    return run


@pytest.fixture(scope="session")
def tokenizer_dir():
    """The official Qwen3 tokenizer files (../shared/qwen3-tokenizer beside the checkout, or
    $QWEN3CORE_TOKENIZER_DIR); tests that need them skip without."""
    from pathlib import Path

    path = Path(os.environ.get("QWEN3CORE_TOKENIZER_DIR")
                or Path(__file__).resolve().parents[3] / "shared" / "qwen3-tokenizer")
    if not (path / "tokenizer.json").is_file():
        pytest.skip(f"the official Qwen3 tokenizer files are not at {path}")
    return str(path)
