"""The chat endpoint's reasoning_content and tool_calls, end to end through the HTTP layer.

A model with random weights never writes ``<think>`` or ``<tool_call>``, so here the engine runs
a scripted scheduler that answers every request with fixed text, piece by piece, exactly as the
real scheduler emits events; everything above it (the app, the template, the splitting, SSE,
the official client) is the real thing.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from qwen3core.serving.app import ServerConfig, create_app
from qwen3core.serving.engine import Engine
from qwen3core.serving.request import ServeEvent

from .conftest import TOKENIZER

openai = pytest.importorskip("openai", reason="the server tests use the official client")

SCRIPT = ["<think>", "\nThe user", " wants the weather", ".\n", "</think>", "\n\n", "Let me",
          " check.", "\n", "<tool_call>", '\n{"name": "get_weather", ', '"arguments": ',
          '{"city": "Paris"}}\n', "</tool_call>"]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}}}}]


class ScriptedScheduler:
    """Scheduler's interface; every request gets SCRIPT, one piece per step."""

    max_context = 4096

    def __init__(self):
        self.rows = []

    def submit(self, request):
        self.rows.append([request, 0])

    @property
    def idle(self):
        return not self.rows

    running = property(lambda self: len(self.rows))
    waiting = 0

    def step(self):
        for row in list(self.rows):
            request, i = row
            last = i == len(SCRIPT) - 1
            request.emit(ServeEvent(1000 + i, SCRIPT[i], "stop" if last else None))
            row[1] += 1
            if last:
                self.rows.remove(row)

    def fail_all(self, message):
        self.rows.clear()


@pytest.fixture
def client():
    if not (TOKENIZER / "tokenizer.json").is_file():
        pytest.skip(f"the official Qwen3 tokenizer is not at {TOKENIZER}")
    from qwen3core.tokenizer import Tokenizer

    engine = Engine(ScriptedScheduler())
    app = create_app(engine, Tokenizer.from_dir(TOKENIZER), ServerConfig(model_name="m"))
    engine.start()
    transport = httpx.ASGITransport(app=app)
    yield openai.AsyncOpenAI(base_url="http://test/v1", api_key="x", max_retries=0,
                             http_client=httpx.AsyncClient(transport=transport,
                                                           base_url="http://test"))
    engine.stop()


def test_whole_response_has_reasoning_content_and_tool_calls(client):
    async def ask():
        return await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "Weather in Paris?"}],
            tools=TOOLS)

    got = asyncio.run(ask())
    choice = got.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.model_extra["reasoning_content"] == "The user wants the weather."
    assert choice.message.content == "Let me check."
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    assert got.usage.completion_tokens == len(SCRIPT)


def test_stream_carries_reasoning_then_content_then_the_calls(client):
    async def ask():
        stream = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "Weather in Paris?"}],
            tools=TOOLS, stream=True)
        return [chunk async for chunk in stream]

    chunks = asyncio.run(ask())
    deltas = [c.choices[0].delta for c in chunks]
    reasoning = "".join((d.model_extra or {}).get("reasoning_content") or "" for d in deltas)
    content = "".join(d.content or "" for d in deltas)
    assert reasoning == "The user wants the weather."
    assert content == "Let me check."
    calls = [call for d in deltas for call in d.tool_calls or []]
    assert [c.function.name for c in calls] == ["get_weather"]
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    first_content = next(i for i, d in enumerate(deltas) if d.content)
    last_reasoning = max(i for i, d in enumerate(deltas)
                         if (d.model_extra or {}).get("reasoning_content"))
    assert last_reasoning < first_content  # streamed as it came, not gathered at the end


def test_without_tools_the_call_stays_in_the_content(client):
    async def ask():
        return await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "Weather in Paris?"}])

    choice = asyncio.run(ask()).choices[0]
    assert choice.finish_reason == "stop" and not choice.message.tool_calls
    assert "<tool_call>" in choice.message.content
