"""A chat choice's text split into reasoning_content, content and tool_calls, whole and
streamed piece by piece (the server feeds it one token's text at a time)."""

from __future__ import annotations

import json

import pytest

from qwen3core.serving.chat_output import ChatOutput
from qwen3core.serving.tool_calls import parse_tool_calls

THOUGHT = "<think>\nThe user wants weather.\n</think>\n\n"
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'


def feed(text: str, pieces: int, *, in_thinking=False, tools=False):
    """Feed ``text`` in chunks of ``pieces`` characters; -> (streamed reasoning, streamed
    content, tool calls, the output object)."""
    out = ChatOutput(in_thinking=in_thinking, tools=tools)
    reasoning = content = ""
    for i in range(0, len(text), pieces):
        r, c = out.push(text[i:i + pieces])
        reasoning, content = reasoning + r, content + c
    r, c, calls = out.finish()
    return reasoning + r, content + c, calls, out


@pytest.mark.parametrize("pieces", [1, 2, 3, 7, 1000])
def test_reasoning_and_answer_split_the_same_streamed_or_whole(pieces):
    reasoning, content, calls, out = feed(THOUGHT + "It is sunny.", pieces)
    assert (reasoning, content, calls) == ("The user wants weather.", "It is sunny.", [])
    assert out.has_reasoning and out.reasoning == reasoning and out.content == content


@pytest.mark.parametrize("pieces", [1, 4, 1000])
def test_a_tool_call_becomes_tool_calls_and_leaves_the_content(pieces):
    reasoning, content, calls, _ = feed(THOUGHT + "Let me check.\n" + CALL, pieces, tools=True)
    assert reasoning == "The user wants weather."
    assert content == "Let me check."
    assert [c["function"]["name"] for c in calls] == ["get_weather"]
    assert json.loads(calls[0]["function"]["arguments"]) == {"city": "Paris"}
    assert calls[0]["type"] == "function" and calls[0]["id"].startswith("call_")


def test_several_calls_and_malformed_ones():
    two = CALL + "\n" + CALL.replace("Paris", "Rome")
    _, calls = parse_tool_calls(two)
    assert [json.loads(c["function"]["arguments"])["city"] for c in calls] == ["Paris", "Rome"]
    broken = "<tool_call>\n{not json}\n</tool_call>"
    assert parse_tool_calls(broken) == (broken, [])  # kept as text, never dropped
    _, content, calls, _ = feed(broken, 3, tools=True)
    assert content == broken and calls == []


def test_without_tools_a_tool_call_is_plain_text():
    _, content, calls, _ = feed(CALL, 5, tools=False)
    assert content == CALL and calls == []


def test_thinking_off_output_is_all_content():
    reasoning, content, _, out = feed("Just the answer.", 2)
    assert reasoning == "" and content == "Just the answer." and not out.has_reasoning
