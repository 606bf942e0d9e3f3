"""Fixtures shared across the test tree: the official tokenizer, loaded once per session."""

import os
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
