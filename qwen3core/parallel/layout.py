"""Which part of the model one rank holds: heads, KV heads, MLP width, vocabulary and experts.

Megatron-style: q/k/v and gate/up are split by output (column-parallel), o_proj and down_proj
by input (row-parallel, their partial outputs summed across ranks), embedding and lm_head by
vocabulary, MoE experts whole per rank (expert parallel) with the router replicated. Query
heads are split evenly; each rank holds the KV heads its query heads read, so with fewer KV
heads than ranks a KV head is replicated on the ranks that share it.

The selected implementations build the shards through :meth:`local_spec`: a spec whose head
counts and MLP width are this rank's, so every factory (linear, attention, kv_cache, mlp) works
unchanged on local sizes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from qwen3core.errors import ParallelError
from qwen3core.parallel.communicator import Communicator
from qwen3core.parallel.span import Span, split_evenly
from qwen3core.spec import Qwen3Spec


@dataclass(frozen=True)
class ParallelLayout:
    """This process's place among ``world_size`` tensor-parallel ranks (1: the whole model)."""

    rank: int = 0
    world_size: int = 1
    #: None only for one process, or to build a rank's shard without running it (memory).
    communicator: Communicator | None = field(default=None, compare=False, repr=False)

    @property
    def is_parallel(self) -> bool:
        return self.world_size > 1

    # -- what this rank holds ------------------------------------------------------------------
    def q_heads(self, spec: Qwen3Spec) -> Span:
        return split_evenly(spec.num_attention_heads, self.world_size, self.rank)

    def kv_heads(self, spec: Qwen3Spec) -> Span:
        """The KV heads this rank's query heads read (query head h reads h // group)."""
        group = spec.num_attention_heads // spec.num_key_value_heads
        q = self.q_heads(spec)
        return Span(q.start // group, (q.stop - 1) // group + 1)

    def intermediate(self, spec: Qwen3Spec) -> Span:
        return split_evenly(spec.intermediate_size, self.world_size, self.rank)

    def vocab(self, spec: Qwen3Spec) -> Span:
        return split_evenly(spec.vocab_size, self.world_size, self.rank)

    def vocab_sizes(self, spec: Qwen3Spec) -> list[int]:
        return [split_evenly(spec.vocab_size, self.world_size, r).size
                for r in range(self.world_size)]

    def experts(self, spec: Qwen3Spec) -> Span:
        return split_evenly(spec.num_experts, self.world_size, self.rank)

    def local_spec(self, spec: Qwen3Spec) -> Qwen3Spec:
        """``spec`` with this rank's query heads, KV heads and MLP width (``spec`` itself for
        one process). Vocabulary and experts keep their totals: the embedding, lm_head and MoE
        blocks ask :meth:`vocab` and :meth:`experts` for their part."""
        if not self.is_parallel:
            return spec
        self.check(spec)
        return spec.replace(num_attention_heads=self.q_heads(spec).size,
                            num_key_value_heads=self.kv_heads(spec).size,
                            intermediate_size=self.intermediate(spec).size)

    def check(self, spec: Qwen3Spec) -> None:
        """Raise :class:`ParallelError` unless ``spec`` splits over ``world_size`` ranks."""
        n, heads, kv = self.world_size, spec.num_attention_heads, spec.num_key_value_heads
        problems = []
        if heads % n:
            problems.append(f"num_attention_heads ({heads}) is not a multiple of {n}")
        elif kv % n and n % kv:
            problems.append(f"num_key_value_heads ({kv}) neither divides into {n} parts nor "
                            f"divides {n} (each rank's query heads must read whole KV heads)")
        if spec.intermediate_size < n:
            problems.append(f"intermediate_size ({spec.intermediate_size}) is below {n}")
        if spec.vocab_size < n:
            problems.append(f"vocab_size ({spec.vocab_size}) is below {n}")
        if spec.is_moe and spec.num_experts < n:
            problems.append(f"num_experts ({spec.num_experts}) is below {n}: every rank "
                            "needs at least one expert")
        if problems:
            raise ParallelError(f"this model cannot be split over {n} ranks: "
                                f"{'; '.join(problems)}")

    # -- communication -------------------------------------------------------------------------
    def all_reduce(self, x: torch.Tensor) -> torch.Tensor:
        """The sum of every rank's partial ``x`` (row-parallel outputs); ``x`` for one rank."""
        if not self.is_parallel:
            return x
        return self._communicator().all_reduce_sum(x)

    def gather_vocab(self, logits: torch.Tensor, spec: Qwen3Spec) -> torch.Tensor:
        """[..., local vocab] -> [..., vocab] from every rank's part."""
        if not self.is_parallel:
            return logits
        return self._communicator().all_gather_last(logits, self.vocab_sizes(spec))

    def _communicator(self) -> Communicator:
        if self.communicator is None:
            raise ParallelError(f"rank {self.rank} of {self.world_size} was built without a "
                                "process group, so it can hold its shard but not run it")
        return self.communicator


SINGLE_PROCESS = ParallelLayout()
