"""A generation request: the caller's arguments checked once and turned into plain values."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from qwen3core.errors import GenerationError
from qwen3core.generation.prompts import encode_prompts
from qwen3core.generation.sampling import SamplingParams, default_sampling
from qwen3core.spec import Qwen3Spec


@dataclass(frozen=True)
class GenerationRequest:
    prompts: list[list[int]]  # token ids of each prompt
    single: bool  # one prompt was passed: return one result, not a list
    max_new_tokens: int
    sampling: SamplingParams
    eos_token_ids: frozenset[int]  # generating any of these ends a row ("stop")
    stop: tuple[str, ...]  # text that ends a row ("stop"); trimmed from the text

    @property
    def capacity(self) -> int:
        """Cache slots the whole request needs: the longest (padded) prompt plus new tokens."""
        return max(len(p) for p in self.prompts) + self.max_new_tokens


def build_request(spec: Qwen3Spec, tokenizer: Any, prompts: Any, *, max_new_tokens: int,
                  sampling: SamplingParams | None = None,
                  generation_config: dict[str, Any] | None = None,
                  stop: str | Iterable[str] | None = None, enable_thinking: bool = True,
                  eos_token_ids: int | Iterable[int] | None = None,
                  **sampling_options: Any) -> GenerationRequest:
    """Validate every argument (raising :class:`GenerationError` that says how to fix it) and
    encode the prompts. eos ids default to the tokenizer's, else the spec's.

    Sampling: ``sampling`` if given, else the checkpoint's defaults (:func:`default_sampling`
    of ``generation_config`` for ``enable_thinking``); ``sampling_options`` (temperature=,
    top_k=, top_p=, min_p=, the penalties, seed=) that are not None replace single fields.
    """
    if sampling is not None and not isinstance(sampling, SamplingParams):
        raise GenerationError(f"sampling must be a SamplingParams, got {type(sampling).__name__}")
    if not isinstance(enable_thinking, bool):
        raise GenerationError(f"enable_thinking must be True or False, got {enable_thinking!r}")
    base = sampling if sampling is not None else default_sampling(
        generation_config, enable_thinking=enable_thinking)
    sampling = base.with_overrides(**sampling_options)
    if not isinstance(max_new_tokens, int) or isinstance(max_new_tokens, bool) \
            or max_new_tokens < 1:
        raise GenerationError(f"max_new_tokens must be an integer >= 1, got {max_new_tokens!r}")
    stops = _stop_strings(stop, tokenizer)
    eos = _eos_ids(eos_token_ids, tokenizer, spec)
    encoded = encode_prompts(prompts, tokenizer, enable_thinking=enable_thinking)
    context = spec.max_position_embeddings
    for index, ids in enumerate(encoded.token_ids):
        bad = [t for t in ids if not 0 <= t < spec.vocab_size]
        if bad:
            raise GenerationError(
                f"prompt {index} has token ids outside the model's vocabulary 0.."
                f"{spec.vocab_size - 1}: {bad[:5]}; check the ids, or use a tokenizer that "
                f"belongs to this model")
        if len(ids) + max_new_tokens > context:
            raise GenerationError(
                f"prompt {index} has {len(ids)} tokens and max_new_tokens is {max_new_tokens}: "
                f"{len(ids) + max_new_tokens} positions exceed the model's context of {context};"
                f" shorten the prompt or lower max_new_tokens to at most "
                f"{max(context - len(ids), 0)}")
    return GenerationRequest(prompts=encoded.token_ids, single=encoded.single,
                             max_new_tokens=max_new_tokens, sampling=sampling,
                             eos_token_ids=eos, stop=stops)


def _stop_strings(stop: str | Iterable[str] | None, tokenizer: Any) -> tuple[str, ...]:
    if stop is None:
        return ()
    if not isinstance(stop, (str, list, tuple)):
        raise GenerationError(f"stop must be a string or a list of strings, got {stop!r}")
    stops = (stop,) if isinstance(stop, str) else tuple(stop)
    for s in stops:
        if not isinstance(s, str) or not s:
            raise GenerationError(f"stop strings must be non-empty strings, got {s!r}")
    if stops and tokenizer is None:
        raise GenerationError("stop strings are matched on text, and this model has no "
                              "tokenizer; load one (tokenizer=DIR, CLI --tokenizer DIR) or stop "
                              "on token ids with eos_token_ids=")
    return stops


def _eos_ids(eos_token_ids: int | Iterable[int] | None, tokenizer: Any,
             spec: Qwen3Spec) -> frozenset[int]:
    if eos_token_ids is None:
        found = tokenizer.eos_token_ids if tokenizer is not None else spec.eos_token_ids
        return frozenset(found)
    if not isinstance(eos_token_ids, (int, list, tuple, set, frozenset)) \
            or isinstance(eos_token_ids, bool):
        raise GenerationError(f"eos_token_ids must be an integer or a list of integers, got "
                              f"{eos_token_ids!r}")
    ids = (eos_token_ids,) if isinstance(eos_token_ids, int) else tuple(eos_token_ids)
    for t in ids:
        if not isinstance(t, int) or isinstance(t, bool):
            raise GenerationError(f"eos_token_ids must be integers, got {t!r}")
    return frozenset(ids)
