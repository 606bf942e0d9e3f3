"""Tokenizer: known Qwen3 ids, parity with transformers' AutoTokenizer, eos rules, load errors."""

import json
import os
import shutil
import unicodedata
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qwen3core.chat_template import ChatTemplateError
from qwen3core.errors import CheckpointError
from qwen3core.tokenizer import Tokenizer

TOKENIZER_DIR = Path(__file__).resolve().parents[2] / "shared" / "qwen3-tokenizer"
pytestmark = pytest.mark.skipif(not (TOKENIZER_DIR / "tokenizer.json").is_file(),
                                reason=f"official Qwen3 tokenizer files not found at "
                                       f"{TOKENIZER_DIR} (see REFERENCE.md)")

IM_START, IM_END, END_OF_TEXT = 151644, 151645, 151643

# Strings the tokenizer must treat specially or that stress the pre-tokenizer regex.
FRAGMENTS = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<think>", "</think>",
             "<tool_call>", "</tool_call>", "<tool_response>", "<|im_start", "im_end|>",
             "<thi", "\n", "\n\n", "\r\n", "   ", "\t", " ", "'s", "'LL", "123456", "é", "e\u0301",
             "Å", "ﬁ", "世界", "こんにちは", "🙂", "👩‍👩‍👧", "def f(x):\n    return x ** 2\n",
             "{\"a\": [1, 2]}", "Hello", " world", "\u00a0", "\u200b", "\u3000", "ｈｉ"]
any_text = st.text(st.characters(codec="utf-8"), max_size=20)
mixed_text = st.lists(st.one_of(any_text, st.sampled_from(FRAGMENTS)), max_size=6).map("".join)




def test_known_ids(tok):
    assert tok.encode("Hello, world!") == [9707, 11, 1879, 0]
    assert tok.encode("Once upon a time") == [12522, 5193, 264, 882]
    assert tok.encode("<|im_start|>user\ntell me a story<|im_end|>\n<|im_start|>assistant\n") \
        == [151644, 872, 198, 72357, 752, 264, 3364, 151645, 198, 151644, 77091, 198]
    named = {"<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645,
             "<tool_call>": 151657, "</tool_call>": 151658, "<tool_response>": 151665,
             "</tool_response>": 151666, "<think>": 151667, "</think>": 151668}
    for token, token_id in named.items():
        assert tok.token_to_id(token) == token_id
        assert tok.id_to_token(token_id) == token
    assert tok.vocab_size == 151669
    assert tok.token_to_id("no such token") is None
    assert tok.id_to_token(151900) is None  # padded embedding rows have no token


def test_chat_model_eos_and_pad(tok):
    assert tok.eos_token_ids == (IM_END, END_OF_TEXT)
    assert tok.eos_token_id == IM_END
    assert tok.pad_token_id == END_OF_TEXT
    assert tok.special_tokens == {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}


def test_no_bos_and_decode_of_special_tokens(tok):
    ids = tok.encode("Hi")
    assert ids == [13048]
    assert tok.decode([IM_START, *ids, IM_END]) == "<|im_start|>Hi<|im_end|>"
    assert tok.decode([IM_START, *ids, IM_END], skip_special_tokens=True) == "Hi"
    # <think> is an added token but not a special one: skipping special tokens keeps it.
    assert tok.decode([151667, *ids, 151668], skip_special_tokens=True) == "<think>Hi</think>"
    assert tok.decode([*ids, 151900]) == "Hi"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=mixed_text)
def test_encode_matches_transformers(tok, hf, text):
    assert tok.encode(text) == hf.encode(text, add_special_tokens=False)


@settings(max_examples=80, deadline=None)
@given(text=mixed_text)
def test_decode_inverts_encode_up_to_nfc(tok, text):
    # The normalizer is NFC, so that is what comes back; everything else round-trips exactly.
    assert tok.decode(tok.encode(text)) == unicodedata.normalize("NFC", text)


@settings(max_examples=80, deadline=None)
@given(ids=st.lists(st.integers(0, 151668), max_size=12), skip=st.booleans())
def test_decode_matches_transformers(tok, hf, ids, skip):
    assert tok.decode(ids, skip_special_tokens=skip) == hf.decode(ids, skip_special_tokens=skip)


def test_encode_rejects_non_text(tok):
    with pytest.raises(TypeError, match="str"):
        tok.encode([1, 2])


# --- loading and the eos rules -----------------------------------------------------------
def make_model_dir(path: Path, *, config_edits=None, generation_config=None,
                   template_file=None) -> Path:
    """A model directory with the official tokenizer.json and an edited tokenizer_config."""
    path.mkdir(parents=True, exist_ok=True)
    try:
        os.symlink(TOKENIZER_DIR / "tokenizer.json", path / "tokenizer.json")
    except OSError:
        shutil.copyfile(TOKENIZER_DIR / "tokenizer.json", path / "tokenizer.json")
    config = json.loads((TOKENIZER_DIR / "tokenizer_config.json").read_text())
    for key, value in (config_edits or {}).items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    (path / "tokenizer_config.json").write_text(json.dumps(config))
    if generation_config is not None:
        (path / "generation_config.json").write_text(json.dumps(generation_config))
    if template_file is not None:
        (path / "chat_template.jinja").write_text(template_file)
    return path


def test_base_model_ends_at_endoftext_only(tmp_path):
    # Qwen3-*-Base: eos is <|endoftext|>, and the config has no chat template.
    base = Tokenizer.from_dir(make_model_dir(
        tmp_path, config_edits={"eos_token": "<|endoftext|>", "chat_template": None},
        generation_config={"eos_token_id": END_OF_TEXT}))
    assert base.eos_token_ids == (END_OF_TEXT,)
    assert base.chat_template is None
    with pytest.raises(ChatTemplateError, match="no chat template"):
        base.apply_chat_template([{"role": "user", "content": "hi"}])


def test_generation_config_eos_ids_are_added(tmp_path):
    tok = Tokenizer.from_dir(make_model_dir(
        tmp_path, generation_config={"eos_token_id": [IM_END, END_OF_TEXT, 151666],
                                     "pad_token_id": 151643}))
    assert tok.eos_token_ids == (IM_END, END_OF_TEXT, 151666)


def test_pad_and_eos_fall_back(tmp_path):
    tok = Tokenizer.from_dir(make_model_dir(tmp_path / "a", config_edits={
        "pad_token": None, "eos_token": None}, generation_config={"pad_token_id": 7}))
    assert tok.pad_token_id == 7
    assert tok.eos_token_ids == (END_OF_TEXT,)
    # Older configs store special tokens as serialized AddedToken dicts.
    tok = Tokenizer.from_dir(make_model_dir(tmp_path / "b", config_edits={
        "eos_token": {"__type": "AddedToken", "content": "<|im_end|>"}}))
    assert tok.eos_token_ids == (IM_END, END_OF_TEXT)


def test_template_file_and_named_templates(tmp_path):
    tok = Tokenizer.from_dir(make_model_dir(tmp_path / "file", template_file="FILE {{ eos_token }}"))
    assert tok.apply_chat_template([{"role": "user", "content": "x"}], tokenize=False) \
        == "FILE <|im_end|>"
    tok = Tokenizer.from_dir(make_model_dir(tmp_path / "named", config_edits={"chat_template": [
        {"name": "default", "template": "plain"}, {"name": "tool_use", "template": "tools"}]}))
    messages = [{"role": "user", "content": "x"}]
    assert tok.apply_chat_template(messages, tokenize=False) == "plain"
    assert tok.apply_chat_template(messages, tools=[], tokenize=False) == "tools"


def test_missing_files_are_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        Tokenizer.from_dir(tmp_path / "nowhere")
    with pytest.raises(CheckpointError, match="no tokenizer.json or tokenizer_config.json"):
        Tokenizer.from_dir(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{}")
    with pytest.raises(CheckpointError, match="no tokenizer_config.json"):
        Tokenizer.from_dir(tmp_path)


def test_corrupt_files_are_clear_errors(tmp_path):
    bad_tokenizer = make_model_dir(tmp_path / "tokenizer")
    (bad_tokenizer / "tokenizer.json").unlink()
    (bad_tokenizer / "tokenizer.json").write_text("{}")
    with pytest.raises(CheckpointError, match="could not be read by the tokenizers library"):
        Tokenizer.from_dir(bad_tokenizer)
    bad_generation = make_model_dir(tmp_path / "generation")
    (bad_generation / "generation_config.json").write_text("{oops")
    with pytest.raises(CheckpointError, match="generation_config.json is not valid JSON"):
        Tokenizer.from_dir(bad_generation)
    with pytest.raises(CheckpointError, match="do not belong together"):
        Tokenizer.from_dir(make_model_dir(tmp_path / "eos", config_edits={"eos_token": "<|nope|>"}))
