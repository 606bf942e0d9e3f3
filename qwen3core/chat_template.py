"""Render a model's own jinja ``chat_template`` the way the Hugging Face ecosystem does.

Chat templates ship inside a checkpoint and differ between Qwen3 variants (the hybrid-thinking
template, the 2507 Instruct/Thinking templates, the Coder template), so the model's own template
is the only correct one to render. Templates are untrusted code, hence jinja2's immutable sandbox,
with bounds on render time and output size (:mod:`qwen3core.chat_template_limits`); every way a
template can fail ends as :class:`ChatTemplateError`.
The environment matches ``transformers.utils.chat_template_utils`` (``trim_blocks``,
``lstrip_blocks``, ``loopcontrols``, the ``{% generation %}`` tag, a ``tojson`` that does not
escape HTML, ``raise_exception``, ``strftime_now``, a namespace that refuses private names), and
the template sees the same data: messages without ``None`` values, reasoning aliased to
``reasoning_content``, and the named special tokens (``eos_token``, ``pad_token``, ...).
"""

from __future__ import annotations

import dataclasses
import json
import numbers
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any, ClassVar

import jinja2
import jinja2.ext
import jinja2.nodes

from qwen3core.chat_template_limits import BoundedSandbox, render_bounded
from qwen3core.errors import Qwen3CoreError


class ChatTemplateError(Qwen3CoreError, ValueError):
    """A chat template is missing or invalid, or it rejected the conversation it was given."""


# Older names for a message's reasoning; templates read ``reasoning_content`` (gpt-oss style
# templates read ``thinking``), so every name is filled, as transformers does.
_REASONING_FIELDS = ("reasoning_content", "thinking", "reasoning")


def render_chat_template(template: str, messages: Sequence[Mapping[str, Any]], *,
                         add_generation_prompt: bool, tools: Sequence[Mapping] | None = None,
                         special_tokens: Mapping[str, str] | None = None,
                         **template_kwargs: Any) -> str:
    """Render ``messages`` with the jinja ``template`` and return the prompt text.

    ``special_tokens`` maps names such as ``eos_token`` to token strings, visible to the
    template; ``template_kwargs`` (``enable_thinking=False``, ...) are visible too and win over
    ``special_tokens`` on a name clash.
    """
    if isinstance(messages, Mapping) or not isinstance(messages, Sequence) or not messages:
        raise ChatTemplateError(
            "messages must be a non-empty list of dicts like {'role': 'user', 'content': '...'}; "
            f"got {_short(messages)}")
    compiled = compile_chat_template(template)
    context = {**(special_tokens or {}), **template_kwargs}
    variables = dict(messages=[_prepare_message(m, i) for i, m in enumerate(messages)],
                     tools=_prepare_tools(tools), documents=None,
                     add_generation_prompt=add_generation_prompt,
                     **_plain(context, "template argument"))
    try:
        text = render_bounded(compiled, **variables)
    except jinja2.TemplateError as exc:
        raise ChatTemplateError(f"the chat template rejected this conversation: {exc}") from exc
    except RecursionError:
        raise ChatTemplateError("the chat template recursed too deeply") from None
    except Exception as exc:  # an untrusted program: whatever it raises is the template's fault
        raise ChatTemplateError(f"the chat template failed: {type(exc).__name__}: "
                                f"{_short(str(exc))}") from exc
    if not text:
        raise ChatTemplateError("the chat template rendered an empty prompt for this "
                                "conversation; a model needs at least one prompt token")
    return text


@lru_cache(maxsize=16)
def compile_chat_template(template: str) -> jinja2.Template:
    """Compile ``template`` once in the sandboxed environment (cached by its text)."""
    if not isinstance(template, str):
        raise ChatTemplateError(f"a chat template must be a string, got {type(template).__name__}")
    try:
        return _environment().from_string(template)
    except jinja2.TemplateSyntaxError as exc:
        raise ChatTemplateError(
            f"the chat template is not valid jinja (line {exc.lineno}: {exc.message}); "
            "check the model's tokenizer_config.json or chat_template.jinja") from exc
    except (jinja2.TemplateError, RecursionError, MemoryError, ValueError) as exc:
        raise ChatTemplateError(f"the chat template cannot be compiled: {type(exc).__name__}: "
                                f"{_short(str(exc))}") from exc


@lru_cache(maxsize=1)
def _environment() -> BoundedSandbox:
    env = BoundedSandbox(trim_blocks=True, lstrip_blocks=True,
                         extensions=[_GenerationTag, jinja2.ext.loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    env.globals["namespace"] = _TemplateNamespace
    env.guard_filters()
    return env


class _GenerationTag(jinja2.ext.Extension):
    """``{% generation %}…{% endgeneration %}`` marks assistant text for training masks in some
    templates; rendering only needs the body, so the tag renders it unchanged."""

    tags: ClassVar[set[str]] = {"generation"}

    def parse(self, parser: jinja2.parser.Parser) -> jinja2.nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_render_body"), [], [], body
                                      ).set_lineno(lineno)

    def _render_body(self, caller) -> str:
        return caller()


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None,
            separators: tuple[str, str] | None = None, sort_keys: bool = False) -> str:
    # jinja's own tojson escapes <, >, & for HTML, which would change the prompt text.
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


def _raise_exception(message: str):
    raise jinja2.TemplateError(message)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


class _TemplateNamespace(jinja2.utils.Namespace):
    """jinja's ``namespace`` that refuses ``_``-prefixed names, so a template cannot reach
    interpreter internals through attribute storage."""

    def __init__(*args, **kwargs):  # same signature trick as jinja2.utils.Namespace
        self, args = args[0], args[1:]
        attrs = dict(*args, **kwargs)
        for name in attrs:
            _TemplateNamespace._check_name(name)
        jinja2.utils.Namespace.__init__(self, attrs)

    def __setitem__(self, name, value):
        _TemplateNamespace._check_name(name)
        jinja2.utils.Namespace.__setitem__(self, name, value)

    @staticmethod
    def _check_name(name):
        if isinstance(name, str) and name.startswith("_"):
            raise jinja2.exceptions.SecurityError(
                f"chat templates cannot store underscore-prefixed names on a namespace: {name!r}")


def _prepare_message(message: Any, index: int) -> dict:
    if dataclasses.is_dataclass(message) and not isinstance(message, type):
        message = dataclasses.asdict(message)
    elif callable(getattr(message, "model_dump", None)):  # pydantic / OpenAI SDK messages
        message = message.model_dump()
    if not isinstance(message, Mapping):
        raise ChatTemplateError(
            f"message {index} must be a dict like {{'role': 'user', 'content': '...'}}, "
            f"got {_short(message)}")
    # APIs send content=None / tool_calls=None; templates handle a missing key but would render
    # a literal "None", so None values are dropped.
    plain = {key: value for key, value in _plain(message, f"message {index}").items()
             if value is not None}
    reasoning = next((plain[k] for k in _REASONING_FIELDS if plain.get(k) is not None), None)
    if reasoning is not None:
        plain = {"thinking": reasoning, **plain, "reasoning_content": reasoning}
    return plain


def _prepare_tools(tools: Sequence[Mapping] | None) -> list | None:
    if tools is None:
        return None
    if isinstance(tools, Mapping) or not isinstance(tools, Sequence):
        raise ChatTemplateError(f"tools must be a list of JSON-schema dicts, got {_short(tools)}")
    for i, tool in enumerate(tools):
        if not isinstance(tool, Mapping):
            raise ChatTemplateError(
                f"tool {i} must be a JSON-schema dict like {{'type': 'function', 'function': "
                f"{{'name': ..., 'description': ..., 'parameters': {{...}}}}}}, got {_short(tool)}")
    return _plain(list(tools), "tools")


def _plain(value: Any, where: str) -> Any:
    """A deep copy of ``value`` in plain JSON types: the template sees only data whose methods
    the sandbox knows, and can never alter the caller's objects."""
    if value is None or type(value) in (str, int, float, bool):
        return value
    if isinstance(value, str):  # str subclasses (enums, ...) carry extra methods
        return str.__str__(value)
    if isinstance(value, numbers.Integral):  # int subclasses, numpy integers
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, Mapping):
        return {_plain(k, where): _plain(v, where) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v, where) for v in value]
    if isinstance(value, tuple):
        return tuple(_plain(v, where) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value), where)
    if callable(getattr(value, "model_dump", None)):
        return _plain(value.model_dump(), where)
    raise ChatTemplateError(
        f"{where} holds a value of type {type(value).__name__}, which a chat template cannot "
        "read; use str, int, float, bool, None, lists and dicts")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


__all__ = ["ChatTemplateError", "compile_chat_template", "render_chat_template"]
