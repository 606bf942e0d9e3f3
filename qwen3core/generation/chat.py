"""A multi-turn chat: the history, each turn's rendered prompt, and replies split into thinking
and answer as they stream.

History is kept the way Qwen3 chat templates expect: each assistant turn is stored as its final
answer only (the reasoning is dropped, as the templates themselves do for earlier turns), so the
next prompt is the template's rendering of exactly what the user saw as answers.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from qwen3core.errors import GenerationError
from qwen3core.generation.api import stream
from qwen3core.generation.results import GenerationResult
from qwen3core.model import Qwen3Model
from qwen3core.thinking import (
    ThinkingDelta,
    ThinkingSplitter,
    prompt_opens_thinking,
    split_thinking,
)


@dataclass(frozen=True)
class ChatTurn:
    user: str
    prompt: str  # the rendered prompt the reply continued (whole history + this message)
    text: str  # everything generated (reasoning included)
    reasoning: str | None
    answer: str
    result: GenerationResult


class ChatSession:
    """``send(text)`` streams a reply; the history grows once the reply has finished."""

    def __init__(self, model: Qwen3Model, tokenizer: Any, *, system: str | None = None,
                 enable_thinking: bool = True, **options: Any):
        if tokenizer is None:
            raise GenerationError("chat needs a tokenizer with a chat template; load the model "
                                  "with one (tokenizer=DIR, CLI --tokenizer DIR)")
        self.model = model
        self.tokenizer = tokenizer
        self.system = system
        self.enable_thinking = enable_thinking
        self.options = options  # generation options (max_new_tokens, sampling, generation_config..)
        self.messages: list[dict[str, str]] = []
        self.reset()

    def reset(self) -> None:
        self.messages = [{"role": "system", "content": self.system}] if self.system else []

    def render(self, user: str) -> str:
        """The prompt text for the next reply: the history plus ``user``, as the model's chat
        template renders it with a generation prompt."""
        return self.tokenizer.apply_chat_template(
            self.messages + [{"role": "user", "content": user}], add_generation_prompt=True,
            enable_thinking=self.enable_thinking, tokenize=False)

    def send(self, user: str) -> ChatReply:
        if not user:
            raise GenerationError("the message is empty; type something to send")
        prompt = self.render(user)
        # The prompt is already rendered; enable_thinking still picks the sampling defaults.
        events = stream(self.model, self.tokenizer, self.tokenizer.encode(prompt),
                        enable_thinking=self.enable_thinking, **self.options)
        return ChatReply(self, user, prompt, events)

    def _record(self, turn: ChatTurn) -> None:
        self.messages.append({"role": "user", "content": turn.user})
        self.messages.append({"role": "assistant", "content": turn.answer})


class ChatReply(Iterator[ThinkingDelta]):
    """Iterate for (reasoning, answer) text pieces; when exhausted, ``turn`` holds the whole
    turn and the session's history includes it. Abandoning it leaves the history unchanged."""

    def __init__(self, session: ChatSession, user: str, prompt: str, events):
        self.session = session
        self.user = user
        self.prompt = prompt
        self.in_thinking = prompt_opens_thinking(prompt)
        self._events = events
        self._splitter = ThinkingSplitter(in_thinking=self.in_thinking)
        self._flushed = False
        self.turn: ChatTurn | None = None

    def __next__(self) -> ThinkingDelta:
        for event in self._events:
            delta = self._splitter.push(event.text)
            if delta.reasoning or delta.answer:
                return delta
        if self._flushed:
            raise StopIteration
        self._flushed = True
        tail = self._splitter.flush()
        self._finish()
        return tail

    def _finish(self) -> None:
        result = self._events.result
        reasoning, answer = split_thinking(result.text, in_thinking=self.in_thinking)
        self.turn = ChatTurn(self.user, self.prompt, result.text, reasoning, answer, result)
        self.session._record(self.turn)
