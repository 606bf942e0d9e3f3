"""Text in, text out on a model that takes seconds: the tiny preset with Qwen3's vocabulary,
and a clear error when a tokenizer does not fit the model."""

import qwen3core
from qwen3core import PRESETS
from qwen3core.errors import CheckpointError


def test_tiny_chat_has_the_real_vocabulary_and_stays_tiny():
    spec = PRESETS["tiny-chat"]
    assert spec.vocab_size == 151936 and spec.hidden_size == 64
    assert spec.eos_token_ids == (151645, 151643)
    assert spec.parameter_count(count_tied_twice=False) < 11_000_000


def test_a_tokenizer_larger_than_the_vocabulary_is_refused_at_load(qwen3, tokenizer_dir):
    done = qwen3("generate", "--model", "random:tiny", "--tokenizer", tokenizer_dir,
                 "--prompt", "hi")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "produces ids up to 151668, but random:tiny has a vocabulary of 512" in done.stderr
    assert "random:tiny-chat" in done.stderr
    assert "building" not in done.stderr  # refused before any weights were made


def test_the_api_refuses_it_too(tokenizer_dir):
    try:
        qwen3core.load("random:tiny-moe", tokenizer=tokenizer_dir)
    except CheckpointError as exc:
        assert "vocabulary of 512" in str(exc)
    else:
        raise AssertionError("a 512-token model accepted a 151669-token tokenizer")


def test_text_generation_on_tiny_chat(qwen3, tokenizer_dir):
    done = qwen3("generate", "--model", "random:tiny-chat", "--tokenizer", tokenizer_dir,
                 "--prompt", "The capital of France is", "--max-new-tokens", "5", "--json")
    assert done.returncode == 0, done.stderr
    assert '"finish_reason": "length"' in done.stdout and '"text": ' in done.stdout
