"""Which slice of each checkpoint tensor a rank holds, by checkpoint key.

The keys are the Hugging Face names every implementation keeps (the loading contract), so one
table serves the checkpoint loader (read only this slice from the file) and the random
initialiser (draw only this slice of the whole tensor). A key maps to a :class:`Shard` (a
range along one dimension), to :data:`WHOLE` (replicated, or an expert this rank holds whole),
or to :data:`ELSEWHERE` (an expert another rank holds: not read, not built).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from qwen3core.parallel.layout import ParallelLayout
from qwen3core.parallel.span import Span
from qwen3core.spec import Qwen3Spec


@dataclass(frozen=True)
class Shard:
    dim: int  # the dimension that is split
    span: Span  # this rank's range of it
    full: int  # its size in the whole tensor

    def index(self) -> tuple[slice, ...]:
        return (slice(None),) * self.dim + (self.span.slice(),)

    def full_shape(self, local_shape: tuple[int, ...]) -> tuple[int, ...]:
        shape = list(local_shape)
        shape[self.dim] = self.full
        return tuple(shape)


WHOLE = "whole"
ELSEWHERE = "elsewhere"

_EXPERT = re.compile(r"\.mlp\.experts\.(\d+)\.")
_ATTENTION = re.compile(r"\.self_attn\.([qkvo])_proj\.weight$")
_MLP = re.compile(r"\.mlp\.(gate|up|down)_proj\.weight$")
_VOCAB = re.compile(r"(^|\.)embed_tokens\.weight$|^lm_head\.weight$")


def shard_for(key: str, spec: Qwen3Spec, layout: ParallelLayout) -> Shard | str:
    """What rank ``layout.rank`` holds of checkpoint tensor ``key`` of a ``spec`` model."""
    if not layout.is_parallel:
        return WHOLE
    d = spec.head_dim
    if match := _EXPERT.search(key):
        held = layout.experts(spec)
        return WHOLE if held.start <= int(match.group(1)) < held.stop else ELSEWHERE
    if match := _ATTENTION.search(key):
        which = match.group(1)
        if which == "q":
            return Shard(0, layout.q_heads(spec).scaled(d), spec.num_attention_heads * d)
        if which == "o":
            return Shard(1, layout.q_heads(spec).scaled(d), spec.num_attention_heads * d)
        return Shard(0, layout.kv_heads(spec).scaled(d), spec.num_key_value_heads * d)
    if match := _MLP.search(key):
        dim = 1 if match.group(1) == "down" else 0
        return Shard(dim, layout.intermediate(spec), spec.intermediate_size)
    if _VOCAB.search(key):
        return Shard(0, layout.vocab(spec), spec.vocab_size)
    return WHOLE


def random_init_region(spec: Qwen3Spec, layout: ParallelLayout):
    """For :func:`qwen3core.init.initialize_random`: the whole shape and this rank's index of
    each sharded parameter (None for whole ones), so a rank draws exactly its part of the
    one-process random model."""

    def region(name: str, local_shape: tuple[int, ...]):
        shard = shard_for(name, spec, layout)
        if isinstance(shard, Shard):
            return shard.full_shape(local_shape), shard.index()
        return None

    return region
