"""The generation loop: prefill the batch, then decode one token per live row until all stop.

Rows that finish (eos, stop string, or length) leave the batch at once: ``Cache.reorder`` drops
their keys and values, so later steps only compute the rows still generating.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from typing import Any

import torch

from qwen3core.generation.padding import left_pad
from qwen3core.generation.request import GenerationRequest
from qwen3core.generation.results import GenerationResult, StreamEvent
from qwen3core.generation.rows import RowState, RowText
from qwen3core.generation.sampling import TokenHistory, sample_next
from qwen3core.generation.steps import steps_for
from qwen3core.model import Qwen3Model


def run_generation(model: Qwen3Model, tokenizer: Any, request: GenerationRequest,
                   started: float) -> Generator[StreamEvent, None, list[GenerationResult]]:
    """Yield each row's new tokens as they are sampled; return the results, in prompt order.

    ``started`` is the ``time.perf_counter()`` of the call, for time-to-first-token.
    """
    steps = steps_for(model)
    device = model.device
    batch = len(request.prompts)
    rows = [RowState(i, len(p), request.max_new_tokens, request.eos_token_ids,
                     RowText(tokenizer, request.stop) if tokenizer is not None else None, started)
            for i, p in enumerate(request.prompts)]
    live = list(range(batch))  # prompt index of each batch row still generating
    generators = request.sampling.generators(batch, device)
    history = (TokenHistory(request.prompts, model.spec.vocab_size, device)
               if request.sampling.has_penalties else None)

    input_ids, attention_mask = left_pad(request.prompts, device)  # [B, S]
    cache = model.new_cache(batch, request.capacity)
    prefill_started = time.perf_counter()
    logits = steps.prefill(input_ids, attention_mask, cache)  # [B, vocab]
    prefill_s = None
    while live:
        tokens = sample_next(logits, request.sampling, generators, history)  # [B']
        if history is not None:
            history.add(tokens)
        sampled = tokens.tolist()  # waits for the device: the loop needs the ids to stop rows
        now = time.perf_counter()
        if prefill_s is None:
            prefill_s = now - prefill_started
        events = [rows[r].accept(t, now) for r, t in zip(live, sampled, strict=True)]
        keep = [i for i, r in enumerate(live) if not rows[r].finished]
        if keep and len(keep) < len(live):
            index = torch.tensor(keep, device=device)
            cache.reorder(index)
            tokens = tokens.index_select(0, index)
            if generators is not None:
                generators = [generators[i] for i in keep]
            if history is not None:
                history.keep(index)
        live = [live[i] for i in keep]
        if live:  # queue the next step before handing out events (overlaps on a GPU)
            logits = steps.decode_one(tokens[:, None], cache)
        yield from events
    return [row.result(prefill_s) for row in rows]
