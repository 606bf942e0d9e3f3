"""Greedy decoding with rows that join and leave a running batch (continuous batching).

Each prompt is prefilled on its own, in a cache of its own, and joins the running decode batch
at a step boundary (:meth:`~qwen3core.cache.Cache.extend`); a row leaves the batch the moment
it has its tokens (:meth:`~qwen3core.cache.Cache.reorder`). Rows therefore sit at different
cache positions and the batch changes composition from step to step, which is what a serving
scheduler does. The property: every row's tokens and logits equal that prompt decoded alone.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch

from qwen3core.generation.steps import Steps
from qwen3core.model import Qwen3Model
from qwen3core.testing.harness import GreedyRun


def staggered_arrivals(count: int) -> list[int]:
    """Prompt i joins before decode step i: the batch grows while early rows already decode,
    and (with equal token budgets) rows leave one per step at the end."""
    return list(range(count))


def greedy_joining(model: Qwen3Model, prompts: Sequence[Sequence[int]],
                   max_new_tokens: int | Sequence[int], arrivals: Sequence[int], *,
                   prefill_chunks: int = 1) -> GreedyRun:
    """Greedy-decode every prompt, prompt i joining the running batch before decode step
    ``arrivals[i]`` and generating ``max_new_tokens`` (or its own entry of a sequence) tokens.
    A prompt is prefilled in ``prefill_chunks`` calls. Returns one row per prompt, in order."""
    count = len(prompts)
    budgets = ([max_new_tokens] * count if isinstance(max_new_tokens, int)
               else list(max_new_tokens))
    capacity = max(len(p) + n for p, n in zip(prompts, budgets, strict=True))
    steps = Steps(model)
    device = model.device
    tokens: dict[int, list[int]] = {i: [] for i in range(count)}
    chosen: dict[int, list[torch.Tensor]] = {i: [] for i in range(count)}
    running = None  # the batch's Cache, None while no row runs
    live: list[int] = []  # prompt index of each batch row
    next_ids = torch.empty(0, dtype=torch.int64, device=device)

    def record(rows: list[int], logits: torch.Tensor) -> torch.Tensor:
        picked = logits.argmax(dim=-1)  # [B]
        as_float = logits.detach().to("cpu", torch.float64)
        for i, r in enumerate(rows):
            tokens[r].append(int(picked[i]))
            chosen[r].append(as_float[i])
        return picked

    for step in itertools.count():
        for r in (r for r in range(count) if arrivals[r] == step):  # join
            cache = model.new_cache(1, capacity)
            ids = torch.tensor([list(prompts[r])], dtype=torch.int64, device=device)
            bounds = sorted(set(torch.linspace(0, ids.shape[1], prefill_chunks + 1)
                                .round().long().tolist()))
            for lo, hi in itertools.pairwise(bounds):
                logits = steps.prefill(ids[:, lo:hi], None, cache)  # [1, vocab]
            first = record([r], logits)
            if running is None:
                running = cache
            else:
                running.extend(cache)
            live.append(r)
            next_ids = torch.cat((next_ids, first))
        keep = [i for i, r in enumerate(live) if len(tokens[r]) < budgets[r]]  # leave
        if len(keep) < len(live) and running is not None:
            index = torch.tensor(keep, dtype=torch.int64, device=device)
            running.reorder(index)
            next_ids = next_ids.index_select(0, index)
            live = [live[i] for i in keep]
        if not live:
            if step >= max(arrivals):
                break
            running = None
            continue
        logits = steps.decode_one(next_ids[:, None], running)
        next_ids = record(live, logits)
    rows = tuple(range(count))
    return GreedyRun(tokens=[tokens[r] for r in rows],
                     logits=[torch.stack(chosen[r]) for r in rows], rows=rows)
