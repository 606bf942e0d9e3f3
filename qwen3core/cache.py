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
    """One batch's decoding state: KV storage plus which slots are real tokens."""

    def __init__(self, storage: KVCache, batch_size: int, capacity: int | None,
                 device: torch.device):
        self.storage = storage
        self.capacity = capacity
        self.batch_size = batch_size
        self.length = 0  # slots written so far (shared by all rows)
        self.seen = torch.zeros(batch_size, dtype=torch.int64, device=device)  # [B]
        self.valid = torch.zeros(batch_size, capacity or 0, dtype=torch.bool, device=device)
        self.unpadded = True  # no padding written so far: lets kernels use their causal path

    def begin(self, attention_mask: torch.Tensor | None, num_new: int) -> AttentionBatch:
        """Account for ``num_new`` new slots and describe them for attention.

        ``attention_mask`` [B, S] marks real tokens (1) and left padding (0); None means every
        new token is real (and avoids inspecting the tensor, which would sync a GPU).
        """
        start = self.length
        end = start + num_new
        if self.capacity is not None and end > self.capacity:
            raise GenerationError(
                f"the cache holds {self.capacity} positions but {end} are needed; create it "
                f"with a larger capacity (prompt length + max_new_tokens)")
        device = self.seen.device
        if attention_mask is None:
            new_valid = torch.ones(self.batch_size, num_new, dtype=torch.bool, device=device)
        else:
            new_valid = attention_mask.to(device=device, dtype=torch.bool)
            self.unpadded = False
        positions = self.seen[:, None] + torch.cumsum(new_valid, dim=1) - 1  # [B, S]
        positions = positions.clamp_(min=0)
        if self.valid.shape[1] < end:  # growing storage: extend the validity record
            grow = end - self.valid.shape[1]
            self.valid = torch.cat((self.valid, self.valid.new_zeros(self.batch_size, grow)), 1)
        self.valid[:, start:end] = new_valid
        self.seen = self.seen + new_valid.sum(dim=1)
        self.length = end

        width = self.capacity if self.storage.returns_full_capacity else end
        key_slots = torch.arange(width, device=device)
        query_slots = torch.arange(start, end, device=device)
        causal = key_slots[None, :] <= query_slots[:, None]  # [S, T]
        mask = self.valid[:, None, None, :width] & causal[None, None]  # [B, 1, S, T]
        return AttentionBatch(positions=positions, mask=mask, start=start,
                              plain_causal=self.unpadded and width == end)

    def reorder(self, rows: torch.Tensor) -> None:
        """Keep only batch rows ``rows`` (e.g. drop finished sequences)."""
        self.storage.reorder(rows)
        self.seen = self.seen.index_select(0, rows)
        self.valid = self.valid.index_select(0, rows)
        self.batch_size = int(rows.numel())
