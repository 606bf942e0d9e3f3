"""One chat choice's generated text split the way the API returns it: the ``<think>`` part as
``reasoning_content``, the answer as ``content``, and Qwen3's tool calls as ``tool_calls``."""

from __future__ import annotations

from qwen3core.serving.tool_calls import ToolCallStream
from qwen3core.thinking import ThinkingSplitter


class ChatOutput:
    def __init__(self, *, in_thinking: bool, tools: bool):
        self.thinking = ThinkingSplitter(in_thinking=in_thinking)
        self.tools = ToolCallStream() if tools else None
        self.reasoning = ""
        self.content = ""
        self.tool_calls: list[dict] = []
        self._had_reasoning = False

    def push(self, text: str) -> tuple[str, str]:
        """-> (new reasoning, new content) released by this piece."""
        return self._route(*self.thinking.push(text))

    def finish(self) -> tuple[str, str, list[dict]]:
        """-> the last reasoning and content, and the tool calls (parsed at the end)."""
        self._had_reasoning = self.thinking.has_reasoning
        reasoning, content = self._route(*self.thinking.flush())
        if self.tools is not None:
            rest, self.tool_calls = self.tools.finish()
            content += rest
            self.content += rest
        return reasoning, content, self.tool_calls

    def _route(self, reasoning: str, answer: str) -> tuple[str, str]:
        if self.tools is not None:
            answer = self.tools.push(answer)
        self.reasoning += reasoning
        self.content += answer
        return reasoning, answer

    @property
    def has_reasoning(self) -> bool:
        return self._had_reasoning or self.thinking.has_reasoning
