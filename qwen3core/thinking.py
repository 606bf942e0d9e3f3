"""Separate a thinking model's ``<think>…</think>`` reasoning from its answer.

Three shapes of generated text occur with Qwen3 models:

- ``<think>\\nreasoning\\n</think>\\n\\nanswer``: the hybrid template with thinking on (its
  generation prompt ends at ``<|im_start|>assistant\\n``, so the model writes ``<think>`` itself);
- ``reasoning\\n</think>\\n\\nanswer``: templates whose generation prompt already opens the block
  (the 2507 Thinking models), so the output has no opening tag;
- ``answer``: thinking off (the prompt holds an empty ``<think>\\n\\n</think>\\n\\n``) or a
  non-thinking model.

Output cut off by ``max_tokens`` may have no closing tag. The split follows the chat template's
own convention: newlines around the reasoning and before the answer are dropped (the template
writes ``'<think>\\n' + reasoning + '\\n</think>\\n\\n' + answer``), everything else is kept.
"""

from __future__ import annotations

from typing import NamedTuple

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
_TURN_START = "<|im_start|>"


def split_thinking(text: str, *, in_thinking: bool | None = None) -> tuple[str | None, str]:
    """Return ``(reasoning, answer)`` for generated ``text``; ``reasoning`` is ``None`` when
    the text has no thinking block.

    A leading ``<think>`` (after whitespace) always opens the block. ``in_thinking`` says
    whether the prompt already opened it (see :func:`prompt_opens_thinking`): ``True`` treats
    the text as starting inside the reasoning, ``False`` treats text without a leading
    ``<think>`` as all answer, and ``None`` (the default) guesses ``True`` when the text holds a
    ``</think>``. Unterminated reasoning gives an empty answer.
    """
    stripped = text.lstrip()
    if stripped.startswith(THINK_OPEN):
        body = stripped[len(THINK_OPEN):]
    else:
        if in_thinking is None:
            in_thinking = THINK_CLOSE in text
        if not in_thinking:
            return None, text
        body = text
    reasoning, _, answer = body.partition(THINK_CLOSE)
    return reasoning.strip("\n"), answer.lstrip("\n")


def prompt_opens_thinking(prompt: str) -> bool:
    """Whether a rendered prompt ends inside an open ``<think>`` block, i.e. the model's output
    starts in the reasoning (only the last turn of the prompt is looked at)."""
    last_turn = prompt[prompt.rfind(_TURN_START) + 1:] if _TURN_START in prompt else prompt
    return last_turn.rfind(THINK_OPEN) > last_turn.rfind(THINK_CLOSE)


class ThinkingDelta(NamedTuple):
    """New reasoning and answer text from one streamed piece (either may be empty)."""
    reasoning: str
    answer: str


_START, _REASONING, _ANSWER = "start", "reasoning", "answer"


class ThinkingSplitter:
    """Streaming :func:`split_thinking`: routes text pieces to reasoning or answer as they arrive.

    Text that could still be the start of a tag (``"</thi"``) or newlines that could precede
    ``</think>`` are held back until the next piece decides, so the reasoning pieces join to
    exactly ``split_thinking(text, in_thinking=...)[0]`` (or ``""`` when that is ``None``) and
    the answer pieces to its answer. ``in_thinking`` cannot be guessed while streaming: pass
    ``prompt_opens_thinking(prompt)``.
    """

    def __init__(self, *, in_thinking: bool = False):
        self._in_thinking = in_thinking
        self._reset()

    def _reset(self) -> None:
        self._state = _START
        self._buffer = ""
        self._in_block = False
        self._strip_newlines = False  # drop the newlines that open the current section

    @property
    def has_reasoning(self) -> bool:
        """Whether the stream has entered a thinking block (``split_thinking`` would give a
        reasoning that is not ``None``)."""
        return self._in_block

    def push(self, text: str) -> ThinkingDelta:
        self._buffer += text
        return self._drain(final=False)

    def flush(self) -> ThinkingDelta:
        """End the stream: release held-back text and reset for a new stream."""
        delta = self._drain(final=True)
        self._reset()
        return delta

    def _drain(self, final: bool) -> ThinkingDelta:
        reasoning = answer = ""
        if self._state == _START and not self._decide_start(final):
            return ThinkingDelta("", "")
        if self._state == _REASONING:
            reasoning = self._take_reasoning(final)
        if self._state == _ANSWER:
            answer = self._take_answer()
        return ThinkingDelta(reasoning, answer)

    def _decide_start(self, final: bool) -> bool:
        head = self._buffer.lstrip()
        if head.startswith(THINK_OPEN):
            self._buffer = head[len(THINK_OPEN):]
            self._enter(_REASONING, in_block=True)
        elif not final and THINK_OPEN.startswith(head):  # blank so far, or a partial "<think"
            return False
        elif self._in_thinking:
            self._enter(_REASONING, in_block=True)
        else:
            self._enter(_ANSWER, in_block=False)
        return True

    def _enter(self, state: str, in_block: bool) -> None:
        self._state = state
        self._in_block = in_block
        # The template writes "<think>\n" and "</think>\n\n": those newlines are not content.
        self._strip_newlines = in_block

    def _take_reasoning(self, final: bool) -> str:
        self._strip_leading_newlines()
        end = self._buffer.find(THINK_CLOSE)
        if end >= 0:
            reasoning = self._buffer[:end].rstrip("\n")
            self._buffer = self._buffer[end + len(THINK_CLOSE):]
            self._enter(_ANSWER, in_block=True)
            return reasoning
        if final:
            reasoning, self._buffer = self._buffer.rstrip("\n"), ""
            return reasoning
        # Hold back a possible start of "</think>" and the newlines before it, which the
        # split drops if the tag follows.
        keep = _partial_tag_suffix(self._buffer, THINK_CLOSE)
        emit = self._buffer[:len(self._buffer) - keep].rstrip("\n")
        self._buffer = self._buffer[len(emit):]
        return emit

    def _take_answer(self) -> str:
        self._strip_leading_newlines()
        answer, self._buffer = self._buffer, ""
        return answer

    def _strip_leading_newlines(self) -> None:
        if self._strip_newlines:
            self._buffer = self._buffer.lstrip("\n")
            self._strip_newlines = not self._buffer


def _partial_tag_suffix(text: str, tag: str) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of ``tag``."""
    for length in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:length]):
            return length
    return 0


__all__ = [
    "THINK_CLOSE",
    "THINK_OPEN",
    "ThinkingDelta",
    "ThinkingSplitter",
    "prompt_opens_thinking",
    "split_thinking",
]
