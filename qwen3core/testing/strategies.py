"""Hypothesis strategies: tiny Qwen3 specs, prompts, batch compositions, backend selections.

Everything is small on purpose (a forward pass takes milliseconds) but keeps the structure
that backends get wrong: grouped-query ratios 1/2/4, odd hidden and expert widths, tied and
untied heads, dense and MoE layers mixed by ``decoder_sparse_step`` and ``mlp_only_layers``,
plain and scaled RoPE (yarn with a tiny original context, linear).

Two sizes of work: :func:`specs` / :func:`workloads` (a few layers, prompts of up to 10 tokens)
find structural mistakes quickly; :func:`long_specs` / :func:`long_workloads` (one narrow
layer, prompts of 350-420 tokens) cross the lengths where implementations change behaviour.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch
from hypothesis import strategies as st

from qwen3core.contracts import COMPONENTS
from qwen3core.registry import Registry
from qwen3core.rope_scaling import RopeScaling
from qwen3core.spec import Qwen3Spec

#: Where implementations change behaviour along the sequence, which :func:`long_workloads`
#: crosses (each a few hundred positions at most on a one-layer narrow model):
#: the growing cache's first buffer (its first write + 256 slots, crossed on reuse, when the
#: prompt is prefilled in 4-5 chunks), the static cache's capacity (rounded up to 64), the
#: example plugin's 256-key chunks, the cpu kernels' decode loop (<= 8 query rows) against SDPA
#: for prefill, and key slots past 64 and positions past 100 (the deliberately wrong backends
#: of tests/equivalence/test_wrong_backends_are_caught.py).
LONG_PROMPT_TOKENS = (350, 420)
#: The original context of the yarn specs :func:`long_specs` draws: every long prompt goes past
#: it, so the interpolated frequencies are checked at prefill and at every decode step.
LONG_YARN_ORIGINAL = (32, 64, 128)


def rope_scalings(original: Iterable[int], *, yarn_first: bool = False) -> st.SearchStrategy:
    """None (plain RoPE), yarn with one of ``original`` as its trained context, or linear:
    plain in half the draws, or, with ``yarn_first``, yarn in half the draws."""
    yarn = st.builds(lambda o, f: RopeScaling("yarn", f, o), st.sampled_from(list(original)),
                     st.sampled_from([2.0, 4.0]))
    linear = st.just(RopeScaling("linear", 2.0))
    if yarn_first:
        return st.one_of(yarn, st.one_of(st.none(), linear))
    return st.one_of(st.none(), st.one_of(yarn, linear))


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
        "rope_scaling": draw(rope_scalings((4, 8))),
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

    def __repr__(self) -> str:
        # Hypothesis prints the failing example: hundreds of token ids would bury the rest.
        shown = ", ".join(repr(p) if len(p) <= 12 else
                          f"({', '.join(map(str, p[:6]))}, ... {len(p)} tokens)"
                          for p in self.prompts) + ("," if len(self.prompts) == 1 else "")
        return (f"Workload(prompts=({shown}), max_new_tokens={self.max_new_tokens}, "
                f"prefill_chunks={self.prefill_chunks}, reorder={self.reorder})")

    def _repr_pretty_(self, printer, cycle: bool) -> None:  # hypothesis's (IPython's) printer
        printer.text(repr(self))


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


@st.composite
def long_specs(draw: st.DrawFn, moe: bool | None = False) -> Qwen3Spec:
    """One narrow layer (long prompts stay cheap), yarn (half the draws; every long prompt goes
    past its original context), plain or linear RoPE; ``moe`` True/False forces MoE/dense,
    None draws either."""
    kv_heads = draw(st.sampled_from([1, 2]))
    is_moe = draw(st.booleans()) if moe is None else moe
    fields = {
        "vocab_size": draw(st.sampled_from([61, 96])),
        "hidden_size": draw(st.sampled_from([16, 24])),
        "intermediate_size": draw(st.sampled_from([24, 37])),
        "num_hidden_layers": 1,
        "num_attention_heads": kv_heads * draw(st.sampled_from([1, 2])),
        "num_key_value_heads": kv_heads,
        "head_dim": draw(st.sampled_from([8, 6])),
        "rope_theta": draw(st.sampled_from([10_000.0, 1_000_000.0])),
        "max_position_embeddings": 512,
        "tie_word_embeddings": draw(st.booleans()),
        "eos_token_id": None,
        "rope_scaling": draw(rope_scalings(LONG_YARN_ORIGINAL, yarn_first=True)),
    }
    if is_moe:
        fields.update(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=16,
                      norm_topk_prob=draw(st.booleans()))
    return Qwen3Spec(**fields)


def seeded_prompt(vocab_size: int, length: int, seed: int) -> tuple[int, ...]:
    """A long prompt from a seed (drawing hundreds of tokens one by one is slow to generate
    and to shrink; a seed shrinks as one number)."""
    rng = random.Random(seed)
    return tuple(rng.randrange(vocab_size) for _ in range(length))


@st.composite
def long_workloads(draw: st.DrawFn, vocab_size: int) -> Workload:
    """A prompt of :data:`LONG_PROMPT_TOKENS` tokens, often beside a shorter one (left padding
    of up to hundreds of slots, and then sometimes rows swapped or dropped mid-way), a few new
    tokens, prefilled in 4-5 chunks on reuse: see
    :data:`LONG_PROMPT_TOKENS` for the boundaries this crosses."""
    long_len = draw(st.integers(*LONG_PROMPT_TOKENS), label="long prompt tokens")
    batch = [seeded_prompt(vocab_size, long_len, draw(st.integers(0, 2**16), label="seed"))]
    if draw(st.booleans(), label="with a shorter row"):
        short_len = draw(st.integers(1, long_len - 1), label="short prompt tokens")
        batch.append(seeded_prompt(vocab_size, short_len, draw(st.integers(0, 2**16))))
    new = draw(st.integers(3, 8), label="new tokens")
    reorder = None
    if len(batch) == 2 and draw(st.booleans(), label="reorder"):  # index_select of long caches
        reorder = (draw(st.integers(1, new - 1)), draw(st.sampled_from([(1, 0), (1,), (0,)])))
    return Workload(tuple(batch), new, draw(st.integers(4, 5), label="prefill chunks"), reorder)


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
