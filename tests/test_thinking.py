"""Splitting <think>…</think> reasoning from the answer, whole and streamed."""

import itertools
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qwen3core.chat_template import render_chat_template
from qwen3core.thinking import ThinkingSplitter, prompt_opens_thinking, split_thinking

TOKENIZER_CONFIG = (Path(__file__).resolve().parents[2] / "shared" / "qwen3-tokenizer"
                    / "tokenizer_config.json")


@pytest.mark.parametrize("text,expected", [
    # Thinking on with the hybrid template: the model writes <think> itself.
    ("<think>\nLet me add.\n</think>\n\nIt is 4.", ("Let me add.", "It is 4.")),
    # A prompt that opened the block (2507 Thinking): no opening tag in the output.
    ("Let me add.\n</think>\n\nIt is 4.", ("Let me add.", "It is 4.")),
    # Thinking off, or a model that does not think.
    ("It is 4.", (None, "It is 4.")),
    # Cut off by max_tokens while still thinking.
    ("<think>\nLet me", ("Let me", "")),
    # An empty block is still a block.
    ("<think>\n\n</think>\n\nHi", ("", "Hi")),
    # Only newlines next to the tags are template formatting; other text is kept as is.
    ("  <think> a \n\n b </think>  x\n", (" a \n\n b ", "  x\n")),
    # A later </think> belongs to the answer.
    ("<think>r</think>a</think>b", ("r", "a</think>b")),
    # A <think> that does not start the text is answer text.
    ("Use <think> tags.", (None, "Use <think> tags.")),
])
def test_split_thinking(text, expected):
    assert split_thinking(text) == expected


def test_in_thinking_overrides_the_guess():
    assert split_thinking("a</think>b", in_thinking=False) == (None, "a</think>b")
    assert split_thinking("still thinking", in_thinking=True) == ("still thinking", "")
    assert split_thinking("<think>r</think>a", in_thinking=False) == ("r", "a")


def test_prompt_opens_thinking():
    hybrid = "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    assert not prompt_opens_thinking(hybrid)
    assert not prompt_opens_thinking(hybrid + "<think>\n\n</think>\n\n")  # thinking off
    assert prompt_opens_thinking(hybrid + "<think>\n")  # 2507 Thinking style
    # A <think> in an earlier turn does not count.
    assert not prompt_opens_thinking("<|im_start|>user\n<think><|im_end|>\n"
                                     "<|im_start|>assistant\n")


@pytest.mark.skipif(not TOKENIZER_CONFIG.is_file(),
                    reason=f"official Qwen3 tokenizer files not found at {TOKENIZER_CONFIG.parent}")
@settings(max_examples=60, deadline=None)
@given(reasoning=st.text(max_size=20), answer=st.text(max_size=20))
def test_split_inverts_the_chat_template(reasoning, answer):
    # Whatever the template writes for an assistant turn, the split gets back as the template
    # normalised it (it strips newlines around reasoning and before the answer).
    template = json.loads(TOKENIZER_CONFIG.read_text())["chat_template"]
    rendered = render_chat_template(
        template, [{"role": "user", "content": "q"},
                   {"role": "assistant", "content": answer, "reasoning_content": reasoning}],
        add_generation_prompt=False)
    generated = rendered.split("<|im_start|>assistant\n", 1)[1].removesuffix("<|im_end|>\n")
    if "</think>" in reasoning or reasoning.lstrip().startswith("<think>"):
        return  # reasoning that itself holds the tags cannot be split back unambiguously
    assert split_thinking(generated) == (reasoning.strip("\n"), answer.lstrip("\n"))


# --- streaming -------------------------------------------------------------------------
PIECES = ["<think>", "</think>", "<think", "</thi", "</", "<", "think>", "\n", "\n\n", " ",
          "\t", "a", "bc", "世", "🙂"]
generated_text = st.lists(st.one_of(st.sampled_from(PIECES), st.text(max_size=4)),
                          max_size=10).map("".join)


def split_points(text: str, cuts: list[int]) -> list[str]:
    points = sorted({c % (len(text) + 1) for c in cuts} | {0, len(text)})
    return [text[a:b] for a, b in itertools.pairwise(points)]


@settings(max_examples=300, deadline=None)
@given(text=generated_text, cuts=st.lists(st.integers(0, 60), max_size=12),
       in_thinking=st.booleans())
def test_streaming_matches_split(text, cuts, in_thinking):
    splitter = ThinkingSplitter(in_thinking=in_thinking)
    deltas = [splitter.push(piece) for piece in split_points(text, cuts)]
    has_reasoning = splitter.has_reasoning
    deltas.append(splitter.flush())
    reasoning, answer = split_thinking(text, in_thinking=in_thinking)
    assert "".join(d.reasoning for d in deltas) == (reasoning or "")
    assert "".join(d.answer for d in deltas) == answer
    if not "<think>".startswith(text.lstrip()):  # the stream could tell before its end
        assert has_reasoning == (reasoning is not None)


def test_streaming_routes_pieces_as_they_arrive():
    splitter = ThinkingSplitter()
    assert splitter.push("<thi") == ("", "")  # could still be the opening tag
    assert splitter.push("nk>\nStep 1") == ("Step 1", "")
    assert splitter.has_reasoning
    assert splitter.push(".\n</th") == (".", "")  # newline and partial tag held back
    assert splitter.push("ink>\n\nThe answer") == ("", "The answer")
    assert splitter.push(" is 4.") == ("", " is 4.")
    assert splitter.flush() == ("", "")
    # Reset: the same splitter handles the next stream.
    assert splitter.push("No thinking here.") == ("", "No thinking here.")
    assert not splitter.has_reasoning


def test_streaming_unterminated_reasoning_flushes_into_reasoning():
    splitter = ThinkingSplitter(in_thinking=True)
    assert splitter.push("step\n") == ("step", "")
    assert splitter.push("</thi") == ("", "")
    assert splitter.flush() == ("\n</thi", "")
