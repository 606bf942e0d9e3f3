"""``generate`` and ``stream``: the functions behind ``LoadedModel.generate`` / ``.stream``."""

from __future__ import annotations

import time
from typing import Any

from qwen3core.generation.loop import run_generation
from qwen3core.generation.request import build_request
from qwen3core.generation.results import GenerationResult
from qwen3core.generation.stream import GenerationStream
from qwen3core.model import Qwen3Model


def stream(model: Qwen3Model, tokenizer: Any, prompts: Any, **options: Any) -> GenerationStream:
    """Check the request now (errors are raised here, not at the first ``next``) and return a
    stream that generates lazily. ``options`` are those of
    :func:`~qwen3core.generation.request.build_request`."""
    started = time.perf_counter()
    request = build_request(model.spec, tokenizer, prompts, **options)
    return GenerationStream(run_generation(model, tokenizer, request, started), request.single)


def generate(model: Qwen3Model, tokenizer: Any, prompts: Any, **options: Any
             ) -> GenerationResult | list[GenerationResult]:
    """Generate to the end: one result for a single prompt, a list for a list of prompts."""
    return stream(model, tokenizer, prompts, **options).collect()
