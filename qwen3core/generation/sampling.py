"""Choosing the next token from logits: penalties, then greedy or filtered sampling.

One implementation for every caller (``generate``, ``chat``, the OpenAI-compatible server):

- :class:`SamplingParams` holds every knob, checked when it is made;
  :func:`default_sampling` derives the checkpoint's defaults from its ``generation_config.json``
  and :meth:`SamplingParams.with_overrides` lays the caller's explicit values over them.
- :class:`TokenHistory` counts the tokens each row has seen (for the penalties).
- :func:`sample_next` turns logits [B, V] into token ids [B].

The order is the one transformers and vLLM use: repetition penalty (prompt and generated
tokens), presence and frequency penalties (generated tokens), then temperature, top-k, top-p and
min-p. Sampling draws from each row's own ``torch.Generator``, so a row's tokens depend only on
its seed and its logits, never on which other rows share the batch.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass, fields, replace
from typing import Any

import torch

from qwen3core.errors import GenerationError
from qwen3core.generation.greedy import greedy_tokens

SEED_LIMIT = 2**64  # seeds are unsigned 64-bit integers, as torch's generators take them

# Qwen3's model cards recommend these for non-thinking mode; generation_config.json only holds
# the thinking-mode values (temperature 0.6, top-p 0.95, top-k 20).
QWEN3_NON_THINKING = {"temperature": 0.7, "top_p": 0.8, "top_k": 20, "min_p": 0.0}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_float(name: str, value: Any, low: float, high: float, *, low_open: bool = False,
                 meaning: str) -> None:
    ok = _is_number(value) and math.isfinite(value) and low <= value <= high \
        and not (low_open and value == low)
    if not ok:
        low_bracket = "(" if low_open else "["
        high_text = "inf" if high == math.inf else f"{high:g}"
        raise GenerationError(f"{name} must be a finite number in {low_bracket}{low:g}, "
                              f"{high_text}{']' if high != math.inf else ')'} ({meaning}), "
                              f"got {value!r}")


@dataclass(frozen=True)
class SamplingParams:
    """How to pick tokens. Every field's "off" value is its default.

    - ``temperature``: 0 is greedy (argmax; the filters and the seed are then unused).
    - ``top_k`` (0 off), ``top_p`` (1 off), ``min_p`` (0 off): which tokens stay candidates.
    - ``repetition_penalty`` (1 off, > 0): transformers' rule on every token in the prompt or
      generated so far: a positive logit is divided by it, a negative one multiplied.
    - ``presence_penalty``, ``frequency_penalty`` (0 off, in [-2, 2]): OpenAI's rule on generated
      tokens: ``logit -= presence * (count > 0) + frequency * count``.
    - ``seed``: an integer in [0, 2**64) makes sampling reproducible; None draws a fresh one.

    Penalties apply to greedy decoding too (as in transformers).
    """

    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int | None = None

    def __post_init__(self) -> None:
        _check_float("temperature", self.temperature, 0.0, math.inf,
                     meaning="0 means greedy")
        if not isinstance(self.top_k, int) or isinstance(self.top_k, bool) or self.top_k < 0:
            raise GenerationError(
                f"top_k must be an integer >= 0 (0 switches it off), got {self.top_k!r}")
        _check_float("top_p", self.top_p, 0.0, 1.0, low_open=True, meaning="1 switches it off")
        _check_float("min_p", self.min_p, 0.0, 1.0, meaning="0 switches it off")
        _check_float("repetition_penalty", self.repetition_penalty, 0.0, math.inf,
                     low_open=True, meaning="1 switches it off")
        for name in ("presence_penalty", "frequency_penalty"):
            _check_float(name, getattr(self, name), -2.0, 2.0, meaning="0 switches it off")
        if self.seed is not None and (not isinstance(self.seed, int)
                                      or isinstance(self.seed, bool)
                                      or not 0 <= self.seed < SEED_LIMIT):
            raise GenerationError(
                f"seed must be an integer in [0, 2**64), got {self.seed!r}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    @property
    def has_penalties(self) -> bool:
        return (self.repetition_penalty != 1.0 or self.presence_penalty != 0.0
                or self.frequency_penalty != 0.0)

    def with_overrides(self, **overrides: Any) -> SamplingParams:
        """A copy with the given fields replaced; None values keep this one's (so CLI flags and
        API keywords left unset fall back to the defaults)."""
        names = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise GenerationError(f"unknown sampling option(s) {', '.join(unknown)}; "
                                  f"known: {', '.join(sorted(names))}")
        given = {k: v for k, v in overrides.items() if v is not None}
        return replace(self, **given) if given else self

    def describe(self) -> str:
        """One line for humans (``--verbose``): greedy, or the filters and penalties in use."""
        if self.greedy:
            parts = ["greedy"]
        else:
            parts = [f"temperature {self.temperature:g}"]
            if self.top_k:
                parts.append(f"top-k {self.top_k}")
            if self.top_p < 1:
                parts.append(f"top-p {self.top_p:g}")
            if self.min_p > 0:
                parts.append(f"min-p {self.min_p:g}")
            parts.append(f"seed {self.seed}" if self.seed is not None else "random seed")
        if self.repetition_penalty != 1:
            parts.append(f"repetition penalty {self.repetition_penalty:g}")
        if self.presence_penalty:
            parts.append(f"presence penalty {self.presence_penalty:g}")
        if self.frequency_penalty:
            parts.append(f"frequency penalty {self.frequency_penalty:g}")
        return ", ".join(parts)

    def row_seed(self, base: int, row: int) -> int:
        """The generator seed of ``row``: a 64-bit hash of the whole seed and the row, so seeds
        that agree in their low 32 bits (all a CPU generator keeps) still sample differently."""
        digest = hashlib.blake2b(base.to_bytes(8, "little") + row.to_bytes(8, "little"),
                                 digest_size=8).digest()
        return int.from_bytes(digest, "little")

    def generators(self, rows: int, device: torch.device) -> list[torch.Generator] | None:
        """One generator per row (row 0 of a batch draws exactly what the same prompt alone
        would); None when greedy."""
        if self.greedy:
            return None
        base = self.seed if self.seed is not None else int.from_bytes(os.urandom(8), "little")
        return [torch.Generator(device=device).manual_seed(self.row_seed(base, row))
                for row in range(rows)]


def default_sampling(generation_config: dict[str, Any] | None, *,
                     enable_thinking: bool = True) -> SamplingParams:
    """The checkpoint's recommended sampling, from its ``generation_config.json``.

    Without ``do_sample: true`` (random models, most test checkpoints) decoding is greedy. With
    it, the config's temperature / top-k / top-p / min-p / repetition_penalty apply (Qwen3: 0.6,
    20, 0.95, thinking mode); with thinking off, Qwen3's recommended non-thinking values
    (temperature 0.7, top-p 0.8, top-k 20) replace the first three.
    """
    config = generation_config or {}
    params = SamplingParams()
    if config.get("do_sample") is not True:
        if _is_number(config.get("repetition_penalty")):
            params = replace(params, repetition_penalty=config["repetition_penalty"])
        return params
    values: dict[str, Any] = {"temperature": config.get("temperature", 1.0)}
    for name in ("top_k", "top_p", "min_p", "repetition_penalty"):
        if config.get(name) is not None:
            values[name] = config[name]
    if not enable_thinking:
        values.update(QWEN3_NON_THINKING)
    try:
        return replace(params, **values)
    except GenerationError as exc:
        raise GenerationError(f"generation_config.json has an invalid sampling value: {exc}; "
                              f"fix the file or pass the options explicitly") from None


class TokenHistory:
    """Per row: which tokens the prompt holds and how often each was generated ([B, V] each),
    kept only when a penalty needs them."""

    def __init__(self, prompts: list[list[int]], vocab_size: int, device: torch.device):
        rows = len(prompts)
        self.in_prompt = torch.zeros(rows, vocab_size, dtype=torch.bool, device=device)
        for row, ids in enumerate(prompts):
            if ids:
                self.in_prompt[row, torch.tensor(ids, device=device)] = True
        self.counts = torch.zeros(rows, vocab_size, dtype=torch.int32, device=device)

    def add(self, tokens: torch.Tensor) -> None:
        """tokens [B]: one new token per row."""
        self.counts.scatter_add_(1, tokens[:, None].to(torch.int64),
                                 torch.ones_like(tokens[:, None], dtype=torch.int32))

    def keep(self, index: torch.Tensor) -> None:
        """Keep only the rows at ``index`` (rows that finished leave the batch)."""
        self.in_prompt = self.in_prompt.index_select(0, index)
        self.counts = self.counts.index_select(0, index)


def apply_penalties(logits: torch.Tensor, params: SamplingParams,
                    history: TokenHistory | None) -> torch.Tensor:
    """logits [B, V] (float32 or wider) -> the same with the penalties applied."""
    if not params.has_penalties:
        return logits
    if history is None:
        raise GenerationError("penalties need the token history; pass a TokenHistory")
    if params.repetition_penalty != 1.0:
        seen = history.in_prompt | (history.counts > 0)
        penalised = torch.where(logits > 0, logits / params.repetition_penalty,
                                logits * params.repetition_penalty)
        logits = torch.where(seen, penalised, logits)
    if params.presence_penalty or params.frequency_penalty:
        counts = history.counts.to(logits.dtype)
        logits = logits - params.frequency_penalty * counts \
            - params.presence_penalty * (counts > 0).to(logits.dtype)
    return logits


def filter_top_k(logits: torch.Tensor, k: int) -> torch.Tensor:
    """logits [B, V] -> the same with everything below each row's k-th largest set to -inf."""
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    kth = torch.topk(logits, k, dim=-1).values[:, -1:]  # [B, 1]
    return logits.masked_fill(logits < kth, float("-inf"))


def filter_top_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    """logits [B, V] -> the same with all but the smallest set of most likely tokens whose
    probability mass reaches ``p`` set to -inf.

    A token is kept iff the mass of the tokens ranked above it is still below ``p``; the most
    likely token is therefore always kept.
    """
    if p >= 1.0:
        return logits
    probs = torch.softmax(logits, dim=-1)
    sorted_probs, order = probs.sort(dim=-1, descending=True)  # [B, V]
    cumulative = sorted_probs.cumsum(dim=-1)
    mass_above = torch.cat((torch.zeros_like(cumulative[:, :1]), cumulative[:, :-1]), dim=-1)
    drop_sorted = mass_above >= p
    drop = torch.empty_like(drop_sorted).scatter_(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def filter_min_p(logits: torch.Tensor, min_p: float) -> torch.Tensor:
    """logits [B, V] -> the same with every token less likely than ``min_p`` times the row's
    most likely token set to -inf (the most likely token always stays)."""
    if min_p <= 0:
        return logits
    probs = torch.softmax(logits, dim=-1)
    threshold = probs.max(dim=-1, keepdim=True).values * min_p  # [B, 1]
    return logits.masked_fill(probs < threshold, float("-inf"))


def sample_next(logits: torch.Tensor, params: SamplingParams,
                generators: list[torch.Generator] | None,
                history: TokenHistory | None = None) -> torch.Tensor:
    """logits [B, V] -> next token ids [B] (int64); ``generators`` holds one per row (None when
    greedy), ``history`` the rows' tokens (needed only with penalties).

    Rows with different parameters (a server batching several requests) call this per row on
    ``logits[i:i + 1]`` with that row's generator and history.
    """
    if params.greedy and not params.has_penalties:
        return greedy_tokens(logits)
    work_dtype = torch.promote_types(logits.dtype, torch.float32)
    scores = apply_penalties(logits.to(work_dtype), params, history)
    if params.greedy:
        return greedy_tokens(scores)
    # Shift so each row's best score is 0 before dividing: a tiny temperature then sends the
    # others to -inf instead of overflowing every score to inf (and softmax to NaN).
    # (A temperature below the dtype's range rounds to 0: the best scores then stay 0, not NaN.)
    shifted = scores - scores.max(dim=-1, keepdim=True).values
    scores = torch.where(shifted == 0, shifted, shifted / params.temperature)
    scores = filter_min_p(filter_top_p(filter_top_k(scores, params.top_k), params.top_p),
                          params.min_p)
    probs = torch.softmax(scores, dim=-1)  # [B, V]
    if generators is None or len(generators) != probs.shape[0]:
        raise GenerationError(f"sampling {probs.shape[0]} rows needs one generator per row "
                              f"(params.generators(rows, device))")
    picks = [torch.multinomial(probs[row], 1, generator=gen)
             for row, gen in enumerate(generators)]
    return torch.cat(picks)
