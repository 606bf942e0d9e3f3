"""Sequence bookkeeping around the KV storage: slots, padding, positions and masks.

Rows of a batch are left-padded to a common length, so every row writes its new tokens at the
same slots. What differs per row is which slots hold real tokens (``valid``) and how many real
tokens a row has seen (its next rotary position). From those two facts this module builds the
one :class:`~qwen3core.contracts.AttentionBatch` that every layer's attention receives.
"""

from __future__ import annotations

import torch

from qwen3core.contracts import AttentionBatch, KVCache
from qwen3core.errors import GenerationError


class PassThroughStorage:
    """Storage for a forward pass without a cache: attention sees exactly this call's keys."""

    capacity = None
    returns_full_capacity = False

    def update(self, layer_idx, start, k, v):
        return k, v

    def reorder(self, rows):  # pragma: no cover - nothing is stored
        pass


class Cache:
    """One batch's decoding state: KV storage plus which slots are real tokens.

    The slot counter lives where the storage needs it. A growing storage is told the first
    new slot as a python int (``AttentionBatch.start``). A full-capacity storage
    (``returns_full_capacity``) is told it as a 0-dim tensor on the device (``next_slot``), and
    :meth:`begin` then reads no python number that changes from step to step, so a compiled
    decode step is traced once and reused for every later step instead of being specialised
    (and recompiled) for each slot.
    """

    def __init__(self, storage: KVCache, batch_size: int, capacity: int | None,
                 device: torch.device):
        if storage.returns_full_capacity:
            if capacity is None or storage.capacity is None:
                raise GenerationError("a KV storage that returns its full capacity needs a "
                                      "capacity; pass one to model.new_cache")
            # It may hold more slots than asked for (rounded up so that requests of similar
            # lengths share compiled code); the mask must cover all of them.
            capacity = storage.capacity
        self.storage = storage
        self.capacity = capacity
        self.seen = torch.zeros(batch_size, dtype=torch.int64, device=device)  # [B]
        self.valid = torch.zeros(batch_size, capacity or 0, dtype=torch.bool, device=device)
        self.unpadded = True  # no padding written so far: lets kernels use their causal path
        # Slots written so far (shared by all rows). On the host it is None while only the
        # device knows it (after a compiled step); ``length`` then reads ``next_slot``.
        self._host_length: int | None = 0
        self.next_slot = torch.zeros((), dtype=torch.int64, device=device)  # full capacity only

    @property
    def batch_size(self) -> int:
        """Rows still in the batch (``reorder`` may have dropped some)."""
        return self.seen.shape[0]

    @property
    def length(self) -> int:
        """Slots written so far; may synchronise with the device after a compiled step."""
        if self._host_length is None:
            self._host_length = int(self.next_slot)
        return self._host_length

    def begin(self, attention_mask: torch.Tensor | None, num_new: int) -> AttentionBatch:
        """Account for ``num_new`` new slots and describe them for attention.

        ``attention_mask`` [B, S] marks real tokens (1) and left padding (0); None means every
        new token is real (and avoids inspecting the tensor, which would sync a GPU).
        """
        full_capacity = self.storage.returns_full_capacity
        if full_capacity and torch.compiler.is_compiling():
            # Reading the host counter would make the compiled step specialise on it (and
            # recompile at every step); the device counter ``next_slot`` is used instead, and
            # the storage's ``index_copy_`` still refuses a slot beyond the capacity.
            self._host_length = None
        else:
            self._check_room(self.length + num_new)
        new_valid = self._new_valid(attention_mask, num_new)  # [B, S]
        positions = self.seen[:, None] + torch.cumsum(new_valid, dim=1) - 1  # [B, S]
        positions = positions.clamp_(min=0)
        self.seen = self.seen + new_valid.sum(dim=1)
        if full_capacity:
            return self._begin_full_capacity(new_valid, positions, num_new)
        return self._begin_growing(new_valid, positions, num_new)

    def _new_valid(self, attention_mask: torch.Tensor | None, num_new: int) -> torch.Tensor:
        device = self.seen.device
        if attention_mask is None:
            # Sized from ``seen`` rather than the python ``batch_size`` so a compiled step with a
            # dynamic batch dimension has one symbol for it.
            return torch.ones(self.seen.shape[0], num_new, dtype=torch.bool, device=device)
        self.unpadded = False
        return attention_mask.to(device=device, dtype=torch.bool)

    def _check_room(self, end: int) -> None:
        if self.capacity is not None and end > self.capacity:
            raise GenerationError(
                f"the cache holds {self.capacity} positions but {end} are needed; create it "
                f"with a larger capacity (prompt length + max_new_tokens)")

    def _begin_growing(self, new_valid: torch.Tensor, positions: torch.Tensor,
                       num_new: int) -> AttentionBatch:
        start = self.length
        end = start + num_new
        if self.valid.shape[1] < end:  # unbounded storage: extend the validity record
            grow = end - self.valid.shape[1]
            self.valid = torch.cat((self.valid, self.valid.new_zeros(self.valid.shape[0], grow)),
                                   1)
        self.valid[:, start:end] = new_valid
        self._host_length = end
        device = new_valid.device
        query_slots = torch.arange(start, end, device=device)  # [S]
        mask = _mask(self.valid[:, :end], new_valid, query_slots, torch.arange(end, device=device))
        return AttentionBatch(positions=positions, mask=mask, start=start,
                              plain_causal=self.unpadded)

    def _begin_full_capacity(self, new_valid: torch.Tensor, positions: torch.Tensor,
                             num_new: int) -> AttentionBatch:
        if self._host_length is not None:
            self._host_length += num_new
        device = new_valid.device
        start = self.next_slot  # 0-dim int64 tensor
        query_slots = start + torch.arange(num_new, device=device)  # [S]
        self.valid.index_copy_(1, query_slots, new_valid)
        self.next_slot = start + num_new
        key_slots = torch.arange(self.capacity, device=device)  # [T] = every slot
        mask = _mask(self.valid, new_valid, query_slots, key_slots)
        return AttentionBatch(positions=positions, mask=mask, start=start, plain_causal=False)

    def reorder(self, rows: torch.Tensor) -> None:
        """Keep only batch rows ``rows`` (e.g. drop finished sequences)."""
        self.storage.reorder(rows)
        self.seen = self.seen.index_select(0, rows)
        self.valid = self.valid.index_select(0, rows)


def _mask(valid: torch.Tensor, new_valid: torch.Tensor, query_slots: torch.Tensor,
          key_slots: torch.Tensor) -> torch.Tensor:
    """valid [B, T], new_valid [B, S], slots [S] / [T] -> attention mask [B, 1, S, T].

    A real query sees the real keys at or before its slot. A padding query would see nothing,
    and a softmax over nothing is NaN in most kernels; it sees its own slot instead, which keeps
    every kernel finite and changes no real token's output (padding outputs are never read).
    """
    causal = key_slots[None, :] <= query_slots[:, None]  # [S, T]
    own = key_slots[None, :] == query_slots[:, None]  # [S, T]
    mask = valid[:, None, :] & causal[None]  # [B, S, T]
    mask = mask | (own[None] & ~new_valid[:, :, None])
    return mask[:, None]  # [B, 1, S, T]
