"""The OpenAI-compatible HTTP API: ``/v1/models``, ``/v1/completions``,
``/v1/chat/completions`` (streamed as server-sent events, or whole), ``/health``, ``/metrics``.

Every error is answered in OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``,
with its status: 400 bad parameters or a prompt too long, 401 a missing or wrong api key, 404
an unknown model or path, 413 a body over the limit, 429 a full queue, 500 a failed model step.
Nothing a request sends can stop the server.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from qwen3core.chat_template import ChatTemplateError
from qwen3core.serving.chat_output import ChatOutput
from qwen3core.serving.choices import Choice, ChoiceRun, api_finish_reason
from qwen3core.serving.engine import Engine
from qwen3core.serving.errors import ApiError, bad_request
from qwen3core.serving.guard import Guard
from qwen3core.serving.params import OutputParams, parse_output_params, server_defaults
from qwen3core.serving.responses import (
    chat_logprobs,
    completion_logprobs,
    envelope,
    new_id,
    usage,
)
from qwen3core.thinking import prompt_opens_thinking


@dataclass
class ServerConfig:
    model_name: str
    api_key: str | None = None
    max_body_bytes: int = 1 << 20
    max_prompt_tokens: int | None = None  # None: the scheduler's context
    #: The checkpoint's generation_config.json: sampling defaults (see params.server_defaults).
    generation_config: dict[str, Any] = field(default_factory=dict)


def create_app(engine: Engine, tokenizer: Any, config: ServerConfig) -> FastAPI:
    context = engine.scheduler.max_context
    max_prompt = min(config.max_prompt_tokens or context, context)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        engine.start()
        yield
        engine.stop()

    app = FastAPI(title="qwen3core", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError):
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        error = ApiError(exc.status_code, str(exc.detail),
                         type="not_found_error" if exc.status_code == 404
                         else "invalid_request_error")
        return JSONResponse(error.body(), status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        error = ApiError(500, f"internal error: {type(exc).__name__}", type="server_error")
        return JSONResponse(error.body(), status_code=500)

    app.add_middleware(
        Guard, api_key=config.api_key, max_body_bytes=config.max_body_bytes,
        count_request=lambda path, status: engine.metrics.count_request(
            path if path in _KNOWN else "other", status))

    async def read_body(request: Request) -> dict:
        raw = await request.body()
        if len(raw) > config.max_body_bytes:
            raise ApiError(413, f"the request body is larger than {config.max_body_bytes} bytes",
                           code="request_too_large")
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise bad_request("the request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise bad_request("the request body must be a JSON object")
        model = body.get("model")
        if model is not None and model != config.model_name:
            raise ApiError(404, f"the model {model!r} does not exist; this server serves "
                                f"{config.model_name!r}", type="not_found_error",
                           param="model", code="model_not_found")
        return body

    def budget(prompt: list[int], params: OutputParams) -> int:
        if len(prompt) > max_prompt:
            raise ApiError(400, f"the prompt has {len(prompt)} tokens; this server accepts at "
                                f"most {max_prompt}", param="messages",
                           code="context_length_exceeded")
        room = context - len(prompt)
        if params.max_tokens is not None and params.max_tokens > room:
            raise ApiError(400, f"the prompt has {len(prompt)} tokens and max_tokens is "
                                f"{params.max_tokens}, over the context of {context} tokens; "
                                f"lower max_tokens to at most {room}", param="max_tokens",
                           code="context_length_exceeded")
        if room < 1:
            raise ApiError(400, f"the prompt fills the whole context of {context} tokens",
                           code="context_length_exceeded")
        return params.max_tokens or room

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/metrics")
    async def metrics():
        scheduler = engine.scheduler
        return PlainTextResponse(engine.metrics.render(scheduler.running, scheduler.waiting),
                                 media_type="text/plain; version=0.0.4")

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": config.model_name, "object": "model",
                                            "created": 0, "owned_by": "qwen3core"}]}

    @app.post("/v1/completions")
    async def completions(request: Request):
        body = await read_body(request)
        prompt = _completion_prompt(body.get("prompt"), tokenizer)
        params = parse_output_params(body, chat=False, defaults=server_defaults(
            config.generation_config, enable_thinking=True))
        max_tokens = budget(prompt, params)
        rid = new_id("cmpl")
        run = ChoiceRun(engine, tokenizer, prompt, params, max_tokens, request.is_disconnected)
        run.submit()
        events = run.events()
        if params.stream:
            return _sse(_stream_completion(rid, config.model_name, tokenizer, prompt, params,
                                           events))
        choices = [choice async for choice, event in events if event.finish_reason]
        choices.sort(key=lambda c: c.index)
        if len(choices) < params.n:  # the client went away
            return JSONResponse({}, status_code=499)
        out = [{"index": c.index, "text": c.text, "finish_reason": api_finish_reason(
                    c.finish_reason),
                "logprobs": completion_logprobs(tokenizer, c.logprobs)
                if params.top_logprobs is not None else None} for c in choices]
        return envelope(rid, "text_completion", config.model_name, out,
                        usage=usage(len(prompt), choices))

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        body = await read_body(request)
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise bad_request("messages must be a non-empty list of messages", "messages")
        tools = body.get("tools")
        if tools is not None and not isinstance(tools, list):
            raise bad_request("tools must be a list", "tools")
        if body.get("tool_choice") == "none":
            tools = None
        kwargs = body.get("chat_template_kwargs") or {}
        if not isinstance(kwargs, dict):
            raise bad_request("chat_template_kwargs must be an object", "chat_template_kwargs")
        kwargs = dict(kwargs)
        thinking = kwargs.pop("enable_thinking", True)
        try:
            text = tokenizer.apply_chat_template(messages, tools=tools or None, tokenize=False,
                                                 enable_thinking=bool(thinking), **kwargs)
        except ChatTemplateError as exc:
            raise bad_request(f"the chat template rejected the messages: {exc}",
                              "messages") from None
        prompt = tokenizer.encode(text)
        params = parse_output_params(body, chat=True, defaults=server_defaults(
            config.generation_config, enable_thinking=bool(thinking)))
        max_tokens = budget(prompt, params)
        in_thinking = prompt_opens_thinking(text)
        outputs = [ChatOutput(in_thinking=in_thinking, tools=bool(tools))
                   for _ in range(params.n)]
        rid = new_id("chatcmpl")
        run = ChoiceRun(engine, tokenizer, prompt, params, max_tokens, request.is_disconnected)
        run.submit()
        events = run.events()
        if params.stream:
            return _sse(_stream_chat(rid, config.model_name, tokenizer, prompt, params,
                                     outputs, events))
        choices: list[Choice] = []
        async for choice, event in events:
            output = outputs[choice.index]
            output.push(event.text)
            if event.finish_reason:
                output.finish()
                choices.append(choice)
        if len(choices) < params.n:
            return JSONResponse({}, status_code=499)
        choices.sort(key=lambda c: c.index)
        out = []
        for c in choices:
            output = outputs[c.index]
            message: dict[str, Any] = {"role": "assistant", "content": output.content}
            if output.has_reasoning:
                message["reasoning_content"] = output.reasoning
            reason = api_finish_reason(c.finish_reason)
            if output.tool_calls:
                message["tool_calls"] = output.tool_calls
                message["content"] = output.content or None
                reason = "tool_calls"
            out.append({"index": c.index, "message": message, "finish_reason": reason,
                        "logprobs": chat_logprobs(tokenizer, c.logprobs)
                        if params.top_logprobs is not None else None})
        return envelope(rid, "chat.completion", config.model_name, out,
                        usage=usage(len(prompt), choices))

    return app


_KNOWN = {"/health", "/metrics", "/v1/models", "/v1/completions", "/v1/chat/completions"}


def _completion_prompt(prompt: Any, tokenizer: Any) -> list[int]:
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
        prompt = prompt[0]  # a batch of one
    if isinstance(prompt, str):
        if not prompt:
            raise bad_request("prompt is empty", "prompt")
        return tokenizer.encode(prompt)
    if isinstance(prompt, list) and prompt and all(
            isinstance(t, int) and not isinstance(t, bool) for t in prompt):
        return list(prompt)
    raise bad_request("prompt must be a non-empty string or a list of token ids (one prompt "
                      "per request)", "prompt")


def _sse(chunks: AsyncIterator[dict]) -> StreamingResponse:
    async def lines():
        async for chunk in chunks:
            yield f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(lines(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache"})


async def _guarded(chunks: AsyncIterator[dict]) -> AsyncIterator[dict]:
    try:
        async for chunk in chunks:
            yield chunk
    except ApiError as exc:  # after the stream started, an error travels as an event
        yield exc.body()


async def _stream_completion(rid, model, tokenizer, prompt, params, events):
    async def chunks():
        done: list[Choice] = []
        async for choice, event in events:
            entry = {"index": choice.index, "text": event.text,
                     "finish_reason": api_finish_reason(event.finish_reason), "logprobs": None}
            if event.logprobs is not None:
                entry["logprobs"] = completion_logprobs(tokenizer, [(event.token_id,
                                                                     event.logprobs)])
            yield envelope(rid, "text_completion", model, [entry])
            if event.finish_reason:
                done.append(choice)
        if params.include_usage:
            yield envelope(rid, "text_completion", model, [], usage=usage(len(prompt), done))

    async for chunk in _guarded(chunks()):
        yield chunk


async def _stream_chat(rid, model, tokenizer, prompt, params, outputs, events):
    def chunk(index: int, delta: dict, finish: str | None = None, logprobs=None) -> dict:
        return envelope(rid, "chat.completion.chunk", model,
                        [{"index": index, "delta": delta, "finish_reason": finish,
                          "logprobs": logprobs}])

    async def chunks():
        for i in range(params.n):
            yield chunk(i, {"role": "assistant", "content": ""})
        done: list[Choice] = []
        async for choice, event in events:
            output = outputs[choice.index]
            reasoning, content = output.push(event.text)
            calls: list[dict] = []
            if event.finish_reason:
                more_reasoning, more_content, calls = output.finish()
                reasoning += more_reasoning
                content += more_content
            logprobs = None
            if event.logprobs is not None:
                logprobs = chat_logprobs(tokenizer, [(event.token_id, event.logprobs)])
            delta: dict[str, Any] = {}
            if reasoning:
                delta["reasoning_content"] = reasoning
            if content:
                delta["content"] = content
            if calls:
                delta["tool_calls"] = [{"index": i, **call} for i, call in enumerate(calls)]
            finish = None
            if event.finish_reason:
                finish = "tool_calls" if calls else api_finish_reason(event.finish_reason)
                done.append(choice)
            if delta or finish or logprobs:
                yield chunk(choice.index, delta, finish, logprobs)
        if params.include_usage:
            yield envelope(rid, "chat.completion.chunk", model, [],
                           usage=usage(len(prompt), done))

    async for item in _guarded(chunks()):
        yield item
