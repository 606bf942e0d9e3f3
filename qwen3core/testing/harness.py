"""A tiny greedy-decoding harness on :class:`~qwen3core.generation.steps.Steps`.

It is deliberately independent of the generation loop: prefill a left-padded batch, take the
argmax, decode one token at a time, and keep every step's logits, so that an equivalence
failure points at a backend rather than at sampling or stopping logic.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from qwen3core.generation.padding import left_pad
from qwen3core.generation.steps import steps_for
from qwen3core.model import Qwen3Model


@dataclass(frozen=True)
class GreedyRun:
    """Per row (in the order of the prompts that were kept): the tokens chosen and the logits
    they were chosen from, as float64 on the CPU."""

    tokens: list[list[int]]
    logits: list[torch.Tensor]  # each [steps, vocab]
    rows: tuple[int, ...]  # prompt index of each row


def greedy(model: Qwen3Model, prompts: list[list[int]], max_new_tokens: int, *,
           prefill_chunks: int = 1, reorder: tuple[int, tuple[int, ...]] | None = None
           ) -> GreedyRun:
    """Greedy-decode ``max_new_tokens`` tokens for each prompt as one left-padded batch.

    ``prefill_chunks`` splits the prompt columns into that many prefill calls (cache reuse
    within a request). ``reorder=(step, rows)`` keeps only batch rows ``rows`` (in that order)
    before decode step ``step``, as a generation loop does when sequences finish.
    """
    steps = steps_for(model)
    ids, mask = left_pad(prompts, model.device)  # [B, S], [B, S] or None
    width = ids.shape[1]
    cache = model.new_cache(len(prompts), width + max_new_tokens)
    bounds = torch.linspace(0, width, prefill_chunks + 1).round().long().tolist()
    bounds = sorted(set(bounds))
    for lo, hi in zip(bounds, bounds[1:]):
        part_mask = None if mask is None else mask[:, lo:hi]
        logits = steps.prefill(ids[:, lo:hi], part_mask, cache)  # [B, vocab]
    live = list(range(len(prompts)))
    tokens: dict[int, list[int]] = {r: [] for r in live}
    chosen: dict[int, list[torch.Tensor]] = {r: [] for r in live}
    for step in range(max_new_tokens):
        if step > 0:
            if reorder is not None and reorder[0] == step:
                keep = torch.tensor(reorder[1], dtype=torch.int64, device=model.device)
                cache.reorder(keep)
                live = [live[i] for i in reorder[1]]
                next_ids = next_ids.index_select(0, keep)
            logits = steps.decode_one(next_ids[:, None], cache)
        next_ids = logits.argmax(dim=-1)  # [B]
        as_float = logits.detach().to("cpu", torch.float64)
        for i, r in enumerate(live):
            tokens[r].append(int(next_ids[i]))
            chosen[r].append(as_float[i])
    kept = tuple(live)
    return GreedyRun(tokens=[tokens[r] for r in kept],
                     logits=[torch.stack(chosen[r]) for r in kept], rows=kept)
