"""Shared fixtures: tiny random models (float64 for exact comparisons) and the real tokenizer."""

import os
from pathlib import Path

import pytest
import torch

import qwen3core
from qwen3core import PRESETS
from qwen3core.build import build_random, select_backends
from qwen3core.loaded import LoadedModel

TOKENIZER_DIR = Path(os.environ.get("QWEN3CORE_TOKENIZER_DIR")
                     or Path(__file__).resolve().parents[3] / "shared" / "qwen3-tokenizer")
NO_TOKENIZER = "the official Qwen3 tokenizer files are not at ../shared/qwen3-tokenizer"

# Generation logic is what is tested here, so the reference implementations are pinned.
EAGER = {"attention": "eager", "norm": "eager", "rope": "eager", "kv_cache": "dynamic",
         "linear": "eager", "mlp": "eager", "moe": "eager", "runner": "eager"}

# random:tiny's vocabulary (512) cannot hold the real tokenizer's ids; this one can.
TINY_VOCAB_SPEC = PRESETS["tiny"].replace(vocab_size=151936)


@pytest.fixture(autouse=True)
def one_cpu_thread():
    """Tiny shapes run fastest on one thread, and on a shared, loaded machine several OpenMP
    threads per process spin against each other (measured: 50x slower generation)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tokenizer_available() -> bool:
    return (TOKENIZER_DIR / "tokenizer.json").is_file()


@pytest.fixture(scope="session")
def eager_backends():
    return dict(EAGER)


@pytest.fixture(scope="session")
def tokenizer_dir():
    if not tokenizer_available():
        pytest.skip(NO_TOKENIZER)
    return TOKENIZER_DIR


@pytest.fixture(scope="session")
def tiny_vocab_spec():
    return TINY_VOCAB_SPEC


@pytest.fixture(scope="session")
def tiny64():
    return qwen3core.load("random:tiny", dtype="float64", device="cpu", backends=EAGER)


@pytest.fixture(scope="session")
def tiny_moe64():
    return qwen3core.load("random:tiny-moe", dtype="float64", device="cpu", backends=EAGER)


@pytest.fixture(scope="session")
def tokenizer():
    if not tokenizer_available():
        pytest.skip(NO_TOKENIZER)
    from qwen3core.tokenizer import Tokenizer

    return Tokenizer.from_dir(TOKENIZER_DIR)


@pytest.fixture(scope="session")
def chat_model(tokenizer):
    """A tiny random model whose vocabulary covers the real tokenizer, with that tokenizer."""
    selection = select_backends(EAGER, device=torch.device("cpu"), dtype=torch.float32)
    model = build_random(TINY_VOCAB_SPEC, selection, dtype=torch.float32,
                         device=torch.device("cpu"), seed=0)
    return LoadedModel(model=model, spec=TINY_VOCAB_SPEC, selection=selection,
                       tokenizer=tokenizer, source="random:tiny-vocab")
