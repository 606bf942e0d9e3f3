"""Qwen3's tool calls: ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` in the
answer text, turned into the OpenAI API's ``tool_calls``.

While streaming, answer text is released up to the first ``<tool_call>`` (a partial tag and
newlines at the end of a piece are held back); from there on the text is kept and parsed when the choice ends.
Text that does not parse as tool calls is returned as ordinary content, never dropped.
"""

from __future__ import annotations

import json
import re
import uuid

from qwen3core.thinking import _partial_tag_suffix

OPEN, CLOSE = "<tool_call>", "</tool_call>"
_CALL = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)


def parse_tool_calls(text: str) -> tuple[str, list[dict]]:
    """-> (content before the first call, tool calls); ``(text, [])`` when ``text`` holds no
    well-formed call."""
    start = text.find(OPEN)
    if start < 0:
        return text, []
    calls = []
    for body in _CALL.findall(text[start:]):
        try:
            call = json.loads(body)
        except json.JSONDecodeError:
            return text, []
        if not isinstance(call, dict) or not isinstance(call.get("name"), str):
            return text, []
        arguments = call.get("arguments", {})
        calls.append({"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function",
                      "function": {"name": call["name"],
                                   "arguments": arguments if isinstance(arguments, str)
                                   else json.dumps(arguments, ensure_ascii=False)}})
    if not calls:
        return text, []
    return text[:start].rstrip("\n"), calls


class ToolCallStream:
    """Streaming :func:`parse_tool_calls`: ``push`` releases content that cannot be part of a
    call; ``finish`` returns the rest of the content and the calls."""

    def __init__(self) -> None:
        self._held = ""
        self._in_call = False
        self._released = ""

    def push(self, text: str) -> str:
        if self._in_call:
            self._held += text
            return ""
        self._held += text
        start = self._held.find(OPEN)
        if start >= 0:
            out = self._held[:start].rstrip("\n")  # the newline before a call is not content
            self._held, self._in_call = self._held[start:], True
        else:
            # Hold back a possible start of "<tool_call>" and the newlines before it.
            keep = _partial_tag_suffix(self._held, OPEN)
            out = self._held[:len(self._held) - keep].rstrip("\n")
            self._held = self._held[len(out):]
        self._released += out
        return out

    def finish(self) -> tuple[str, list[dict]]:
        if not self._in_call:
            out, self._held = self._held, ""
            return out, []
        content, calls = parse_tool_calls(self._held)
        if not calls:
            return self._held, []
        return content, calls
