"""Hypothesis strategies: tiny Qwen3 specs, prompts, batch compositions, backend selections.

Everything is small on purpose (a forward pass takes milliseconds) but keeps the structure
that backends get wrong: grouped-query ratios 1/2/4, odd hidden and expert widths, tied and
untied heads, dense and MoE layers mixed by ``decoder_sparse_step`` and ``mlp_only_layers``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch
from hypothesis import strategies as st

from qwen3core.contracts import COMPONENTS
from qwen3core.registry import Registry
from qwen3core.spec import Qwen3Spec


@st.composite
def specs(draw: st.DrawFn, moe: bool | None = None) -> Qwen3Spec:
    """A tiny valid spec; ``moe`` True/False forces MoE/dense, None draws either."""
    kv_heads = draw(st.sampled_from([1, 2]))
    ratio = draw(st.sampled_from([1, 2, 4]))
    is_moe = draw(st.booleans()) if moe is None else moe
    layers = draw(st.integers(1, 3))
    fields = {
        "vocab_size": draw(st.sampled_from([61, 96, 128])),
        "hidden_size": draw(st.sampled_from([24, 32, 33, 40])),
        "intermediate_size": draw(st.sampled_from([37, 48, 64])),
        "num_hidden_layers": layers,
        "num_attention_heads": kv_heads * ratio,
        "num_key_value_heads": kv_heads,
        "head_dim": draw(st.sampled_from([8, 16, 6])),
        "rope_theta": draw(st.sampled_from([10_000.0, 1_000_000.0])),
        "max_position_embeddings": 256,
        "tie_word_embeddings": draw(st.booleans()),
        "eos_token_id": None,
    }
    if is_moe:
        experts = draw(st.integers(2, 8))
        fields.update(
            num_experts=experts,
            num_experts_per_tok=draw(st.integers(1, min(4, experts))),
            moe_intermediate_size=draw(st.sampled_from([16, 21, 32])),
            norm_topk_prob=draw(st.booleans()),
            decoder_sparse_step=draw(st.integers(1, 2)),
            mlp_only_layers=tuple(draw(st.sets(st.integers(0, layers - 1), max_size=1))),
        )
    return Qwen3Spec(**fields)


@dataclass(frozen=True)
class Workload:
    """What one example asks of a model: prompts (one batch), new tokens, and how the cache
    is exercised (prefill split into chunks; rows dropped or reordered mid-way)."""

    prompts: tuple[tuple[int, ...], ...]
    max_new_tokens: int
    prefill_chunks: int = 1
    reorder: tuple[int, tuple[int, ...]] | None = None  # (decode step, rows kept in order)

    def prompt_lists(self) -> list[list[int]]:
        return [list(p) for p in self.prompts]


def prompts(vocab_size: int, min_len: int = 1, max_len: int = 10) -> st.SearchStrategy:
    return st.lists(st.integers(0, vocab_size - 1), min_size=min_len, max_size=max_len
                    ).map(tuple)


@st.composite
def workloads(draw: st.DrawFn, vocab_size: int, max_batch: int = 3) -> Workload:
    """A batch of 1..max_batch prompts: sometimes all one length (no padding, the kernels'
    causal path), usually of different lengths (left padding)."""
    batch = draw(st.integers(1, max_batch))
    if draw(st.booleans()):
        length = draw(st.integers(1, 10))
        batch_prompts = [draw(prompts(vocab_size, length, length)) for _ in range(batch)]
    else:
        batch_prompts = [draw(prompts(vocab_size)) for _ in range(batch)]
    new = draw(st.integers(1, 5))
    chunks = draw(st.integers(1, min(3, len(max(batch_prompts, key=len)))))
    reorder = None
    if new > 2 and batch > 1 and draw(st.booleans()):
        kept = draw(st.permutations(range(batch)))[:draw(st.integers(1, batch))]
        reorder = (draw(st.integers(1, new - 1)), tuple(kept))
    return Workload(tuple(batch_prompts), new, chunks, reorder)


# -- backend selections -------------------------------------------------------------------------

def available_names(registry: Registry, component: str, device: torch.device | str,
                    dtype: torch.dtype) -> list[str]:
    return [a.implementation.name for a in registry.availability(component, device, dtype)
            if a.available]


def combinations(registry: Registry, device: torch.device | str, dtype: torch.dtype, *,
                 pinned: Mapping[str, str] | None = None,
                 runners: Iterable[str] | None = None) -> list[dict[str, str]]:
    """Every selection of available implementations (one per component) on device/dtype.

    ``pinned`` fixes components to given names; ``runners`` limits the runner component (the
    compiling runners cost seconds per new shape, so most properties run the eager runner).
    """
    pinned = dict(pinned or {})
    choices = []
    for component in COMPONENTS:
        if component in pinned:
            names = [pinned[component]]
        else:
            names = available_names(registry, component, device, dtype)
            if component == "runner" and runners is not None:
                names = [n for n in names if n in set(runners)]
        choices.append(names)
    return [dict(zip(COMPONENTS, combo)) for combo in itertools.product(*choices)]


def selections(registry: Registry, device: torch.device | str, dtype: torch.dtype, *,
               pinned: Mapping[str, str] | None = None,
               runners: Iterable[str] | None = None) -> st.SearchStrategy:
    """Draws one of :func:`combinations` (shrinking towards the highest-priority names)."""
    return st.sampled_from(combinations(registry, device, dtype, pinned=pinned, runners=runners))
