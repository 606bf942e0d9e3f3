"""What :func:`qwen3core.load` returns: the model with everything needed to use it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from qwen3core.contracts import Selection
from qwen3core.generation import api as generation
from qwen3core.generation.results import GenerationResult
from qwen3core.generation.sampling import SamplingParams, default_sampling
from qwen3core.generation.stream import GenerationStream
from qwen3core.model import Qwen3Model
from qwen3core.spec import Qwen3Spec


@dataclass
class LoadedModel:
    model: Qwen3Model
    spec: Qwen3Spec
    selection: Selection
    tokenizer: Any = None  # a qwen3core Tokenizer when the source has one
    source: str = ""
    load_seconds: float = 0.0
    generation_config: dict = field(default_factory=dict)

    @property
    def backends(self) -> dict[str, str]:
        """component -> selected implementation name."""
        return self.selection.names()

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype

    @property
    def device(self) -> torch.device:
        return self.model.device

    def generate(self, prompts: Any, *, max_new_tokens: int = 256,
                 sampling: SamplingParams | None = None, temperature: float | None = None,
                 top_k: int | None = None, top_p: float | None = None,
                 min_p: float | None = None, repetition_penalty: float | None = None,
                 presence_penalty: float | None = None, frequency_penalty: float | None = None,
                 seed: int | None = None, stop: str | list[str] | None = None,
                 enable_thinking: bool = True, eos_token_ids: int | list[int] | None = None
                 ) -> GenerationResult | list[GenerationResult]:
        """Complete ``prompts``: a string, token ids, or chat messages (one result), or a list
        of those (a list of results). Sampling options left None take the checkpoint's
        defaults (:meth:`default_sampling`). See docs/generation.md for every option."""
        return generation.generate(self.model, self.tokenizer, prompts, **self._options(locals()))

    def stream(self, prompts: Any, *, max_new_tokens: int = 256,
               sampling: SamplingParams | None = None, temperature: float | None = None,
               top_k: int | None = None, top_p: float | None = None,
               min_p: float | None = None, repetition_penalty: float | None = None,
               presence_penalty: float | None = None, frequency_penalty: float | None = None,
               seed: int | None = None, stop: str | list[str] | None = None,
               enable_thinking: bool = True, eos_token_ids: int | list[int] | None = None
               ) -> GenerationStream:
        """Like :meth:`generate`, but returns an iterator of events (row, new token ids, new
        text) as they are produced; its ``results`` are filled in once it is exhausted."""
        return generation.stream(self.model, self.tokenizer, prompts, **self._options(locals()))

    def default_sampling(self, *, enable_thinking: bool = True) -> SamplingParams:
        """The sampling this checkpoint recommends (its generation_config.json); greedy when it
        recommends none."""
        return default_sampling(self.generation_config, enable_thinking=enable_thinking)

    def _options(self, arguments: dict[str, Any]) -> dict[str, Any]:
        options = {k: v for k, v in arguments.items() if k not in ("self", "prompts")}
        return {**options, "generation_config": self.generation_config}

    def __repr__(self) -> str:
        return (f"LoadedModel(source={self.source!r}, dtype={self.dtype}, device={self.device}, "
                f"backends={self.backends})")
