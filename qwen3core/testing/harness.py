"""A tiny greedy-decoding harness on :class:`~qwen3core.generation.steps.Steps`.

It is deliberately independent of the generation loop: prefill a left-padded batch, take the
argmax, decode one token at a time, and keep every step's logits, so that an equivalence
failure points at a backend rather than at sampling or stopping logic.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from qwen3core.generation.padding import left_pad
from qwen3core.generation.steps import Steps
from qwen3core.model import Qwen3Model


@dataclass(frozen=True)
class GreedyRun:
    """Per row (in the order of the prompts that were kept): the tokens chosen and the logits
    they were chosen from, as float64 on the CPU."""

    tokens: list[list[int]]
    logits: list[torch.Tensor]  # each [steps, vocab]
    rows: tuple[int, ...]  # prompt index of each row
    #: With ``record_routing``: per row and step, the smallest MoE routing margin of any real
    #: token the row has run so far (see :func:`routing_margins`); inf for a dense model.
    routing: list[list[float]] | None = None
    #: Tokens of each prompt (by prompt index) and the batch's padded width: where a
    #: disagreement is (position, left padding) in failure messages. Empty when unknown.
    prompt_lengths: tuple[int, ...] = ()
    width: int = 0

    def where(self, row: int, step: int) -> str:
        """``row``/``step`` in words: the prompt, its padding, prefill or decode, position."""
        if not self.prompt_lengths:
            return f"row {row} step {step}"
        index = self.rows[row]
        length = self.prompt_lengths[index]
        pad = self.width - length
        padding = f"left-padded by {pad}" if pad else "unpadded"
        phase = "prefill's last token" if step == 0 else "decode"
        return (f"row {row} (prompt {index}: {length} tokens, {padding}) step {step} "
                f"({phase}, position {length - 1 + step})")


def greedy(model: Qwen3Model, prompts: list[list[int]], max_new_tokens: int, *,
           prefill_chunks: int = 1, reorder: tuple[int, tuple[int, ...]] | None = None,
           forced: Mapping[int, list[int]] | None = None,
           record_routing: bool = False) -> GreedyRun:
    """Greedy-decode ``max_new_tokens`` tokens for each prompt as one left-padded batch.

    ``prefill_chunks`` splits the prompt columns into that many prefill calls (cache reuse
    within a request). ``reorder=(step, rows)`` keeps only batch rows ``rows`` (in that order)
    before decode step ``step``, as a generation loop does when sequences finish.
    ``forced`` (prompt index -> tokens) feeds those tokens instead of the argmax ("teacher
    forcing"), to score another run's choices. ``record_routing`` records MoE routing margins.
    """
    # A fresh Steps (not steps_for): the harness builds many short-lived models, and compiled
    # code is shared through the runner anyway.
    steps = Steps(model)
    ids, mask = left_pad(prompts, model.device)  # [B, S], [B, S] or None
    width = ids.shape[1]
    cache = model.new_cache(len(prompts), width + max_new_tokens)
    bounds = sorted(set(torch.linspace(0, width, prefill_chunks + 1).round().long().tolist()))
    live = list(range(len(prompts)))
    tokens: dict[int, list[int]] = {r: [] for r in live}
    chosen: dict[int, list[torch.Tensor]] = {r: [] for r in live}
    margins: dict[int, list[float]] = {r: [] for r in live}
    smallest = torch.full((len(prompts),), float("inf"), dtype=torch.float64)  # per batch row
    next_ids = torch.empty(0, dtype=torch.int64)  # chosen at step 0, before any reorder
    with routing_margins(model, record_routing) as routed:
        for lo, hi in itertools.pairwise(bounds):
            part_mask = None if mask is None else mask[:, lo:hi]
            logits = steps.prefill(ids[:, lo:hi], part_mask, cache)  # [B, vocab]
            smallest = _fold(smallest, routed, part_mask)
        for step in range(max_new_tokens):
            if step > 0:
                if reorder is not None and reorder[0] == step:
                    keep = torch.tensor(reorder[1], dtype=torch.int64, device=model.device)
                    cache.reorder(keep)
                    live = [live[i] for i in reorder[1]]
                    next_ids = next_ids.index_select(0, keep)
                    smallest = smallest.index_select(0, keep.cpu())
                logits = steps.decode_one(next_ids[:, None], cache)
                smallest = _fold(smallest, routed, None)
            next_ids = logits.argmax(dim=-1)  # [B]
            if forced:
                next_ids = torch.tensor([forced[r][step] if r in forced else int(next_ids[i])
                                         for i, r in enumerate(live)], device=next_ids.device)
            as_float = logits.detach().to("cpu", torch.float64)
            for i, r in enumerate(live):
                tokens[r].append(int(next_ids[i]))
                chosen[r].append(as_float[i])
                margins[r].append(float(smallest[i]))
    kept = tuple(live)
    return GreedyRun(tokens=[tokens[r] for r in kept],
                     logits=[torch.stack(chosen[r]) for r in kept], rows=kept,
                     routing=[margins[r] for r in kept] if record_routing else None,
                     prompt_lengths=tuple(len(p) for p in prompts), width=width)


@contextmanager
def routing_margins(model: Qwen3Model, enabled: bool) -> Iterator[list[torch.Tensor]]:
    """While active, every forward appends, per sparse layer, each token's routing margin:
    the gap between its k-th and (k+1)-th router logit over max(1, its largest |logit|).

    Top-k routing is discontinuous: where that gap is within rounding noise, another correct
    implementation may route the token to another expert and legitimately produce different
    logits from then on. A margin of inf means no choice could flip (dense, or k = experts).
    """
    recorded: list[torch.Tensor] = []
    handles = []
    k = model.spec.num_experts_per_tok
    if enabled and model.spec.is_moe and k < model.spec.num_experts:
        for layer in model.model.layers:
            if layer.is_sparse:
                handles.append(layer.mlp.gate.register_forward_hook(
                    lambda module, args, out: recorded.append(_token_margins(out, k))))
    try:
        yield recorded
    finally:
        for handle in handles:
            handle.remove()


def _token_margins(router_logits: torch.Tensor, k: int) -> torch.Tensor:
    logits = router_logits.detach().to("cpu", torch.float64)  # [..., n_experts]
    top = torch.topk(logits, k + 1, dim=-1).values
    scale = logits.abs().amax(dim=-1).clamp(min=1.0)
    return (top[..., k - 1] - top[..., k]) / scale  # [...] one per token


def _fold(smallest: torch.Tensor, recorded: list[torch.Tensor], mask: torch.Tensor | None
          ) -> torch.Tensor:
    """Lower each row's running minimum by the margins of its real tokens in this forward."""
    b = smallest.shape[0]
    for margins in recorded:
        per_token = margins.reshape(b, -1)  # [B, S] (the MoE block flattens [B, S, E])
        if mask is not None:
            per_token = per_token.masked_fill(~mask.to("cpu", torch.bool), float("inf"))
        smallest = torch.minimum(smallest, per_token.amin(dim=1))
    recorded.clear()
    return smallest
