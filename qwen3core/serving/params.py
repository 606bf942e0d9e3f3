"""The sampling and output parameters of a completion request, checked once.

Field names and meanings follow the OpenAI API (``max_tokens``/``max_completion_tokens``,
``temperature``, ``top_p``, ``presence_penalty``, ``frequency_penalty``, ``seed``, ``stop``,
``n``, ``logprobs``...) plus the extensions other open servers accept (``top_k``, ``min_p``,
``repetition_penalty``). Unset sampling values come from ``defaults``: the checkpoint's
``generation_config.json`` through the one sampler's
:func:`~qwen3core.generation.sampling.default_sampling` (see :func:`server_defaults`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from qwen3core.errors import GenerationError
from qwen3core.generation.sampling import SEED_LIMIT, SamplingParams, default_sampling
from qwen3core.serving.errors import bad_request
from qwen3core.serving.logprobs import MAX_TOP_LOGPROBS

MAX_STOP_STRINGS = 4
MAX_N = 8


@dataclass(frozen=True)
class OutputParams:
    max_tokens: int | None  # None: the rest of the context
    sampling: SamplingParams
    stop: tuple[str, ...]
    n: int
    stream: bool
    include_usage: bool
    top_logprobs: int | None  # None: no logprobs


#: Request fields that are sampling options, with the range the API accepts.
SAMPLING_FIELDS: dict[str, tuple[type, float | None, float | None]] = {
    "temperature": (float, 0, 2), "top_p": (float, 0, 1), "top_k": (int, -1, None),
    "min_p": (float, 0, 1), "repetition_penalty": (float, 0, None),
    "presence_penalty": (float, -2, 2), "frequency_penalty": (float, -2, 2),
    "seed": (int, 0, SEED_LIMIT - 1)}


def server_defaults(generation_config: Mapping[str, Any] | None, *,
                    enable_thinking: bool) -> SamplingParams:
    """The checkpoint's recommended sampling when it ships a generation_config.json; without
    one (random models), the OpenAI API's own default, temperature 1."""
    if not generation_config:
        return SamplingParams(temperature=1.0)
    return default_sampling(dict(generation_config), enable_thinking=enable_thinking)


def _number(body: Mapping, name: str, default: Any, kind: type, low: float | None = None,
            high: float | None = None) -> Any:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int):
        raise bad_request(f"{name} must be {'a number' if kind is float else 'an integer'}, "
                          f"got {value!r}", name)
    if (low is not None and value < low) or (high is not None and value > high):
        raise bad_request(f"{name} must be between {low} and {high}, got {value!r}", name)
    return kind(value)


def parse_output_params(body: Mapping, *, chat: bool,
                        defaults: SamplingParams | None = None) -> OutputParams:
    max_tokens = _number(body, "max_tokens", None, int, 1)
    if chat:
        max_tokens = _number(body, "max_completion_tokens", max_tokens, int, 1)
    elif max_tokens is None:
        max_tokens = 16  # the completions API's documented default
    overrides = {name: _number(body, name, None, kind, low, high)
                 for name, (kind, low, high) in SAMPLING_FIELDS.items()}
    if overrides["top_k"] == -1:
        overrides["top_k"] = 0  # vLLM's spelling of "off"
    try:
        sampling = (defaults or SamplingParams(temperature=1.0)).with_overrides(**overrides)
    except GenerationError as exc:
        raise bad_request(str(exc)) from None
    stop = body.get("stop")
    if stop is None:
        stops: tuple[str, ...] = ()
    elif isinstance(stop, str):
        stops = (stop,)
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        stops = tuple(stop)
    else:
        raise bad_request(f"stop must be a string or a list of strings, got {stop!r}", "stop")
    if len(stops) > MAX_STOP_STRINGS or any(not s for s in stops):
        raise bad_request(f"stop takes at most {MAX_STOP_STRINGS} non-empty strings", "stop")
    n = _number(body, "n", 1, int, 1, MAX_N)
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise bad_request(f"stream must be true or false, got {stream!r}", "stream")
    options = body.get("stream_options") or {}
    if not isinstance(options, Mapping):
        raise bad_request("stream_options must be an object", "stream_options")
    include_usage = bool(options.get("include_usage", False))
    return OutputParams(max_tokens=max_tokens, sampling=sampling, stop=stops, n=n, stream=stream,
                        include_usage=include_usage, top_logprobs=_logprobs(body, chat))


def _logprobs(body: Mapping, chat: bool) -> int | None:
    if chat:
        wanted = body.get("logprobs")
        if wanted is None or wanted is False:
            if body.get("top_logprobs") is not None:
                raise bad_request("top_logprobs needs logprobs: true", "top_logprobs")
            return None
        if wanted is not True:
            raise bad_request(f"logprobs must be true or false, got {wanted!r}", "logprobs")
        return _number(body, "top_logprobs", 0, int, 0, MAX_TOP_LOGPROBS)
    return _number(body, "logprobs", None, int, 0, MAX_TOP_LOGPROBS)
