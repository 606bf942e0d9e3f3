"""The growing (dynamic) KV cache: returns exactly the slots written so far.

Keys and values live in per-layer buffers with room to spare; a step writes its new slots in
place and returns a view of the written part. A buffer that runs out of room is replaced by
one twice as large (never past the request's capacity), so a decode step copies only its own
new slots, not the whole history as a concatenation would (which made every step O(length)).
"""

from __future__ import annotations

import torch

#: Slots a buffer starts with beyond the first write, so short generations never regrow.
MIN_SLOTS = 256


class DynamicKVCache:
    """Storage grows with each call; ``capacity`` (if known) bounds how far a buffer grows."""

    returns_full_capacity = False

    def __init__(self, num_layers: int, capacity: int | None):
        self.capacity = capacity
        self.keys: list[torch.Tensor | None] = [None] * num_layers  # buffers [B, H_kv, room, D]
        self.values: list[torch.Tensor | None] = [None] * num_layers
        self.lengths = [0] * num_layers  # slots written per layer

    def update(self, layer_idx: int, start: int, k: torch.Tensor, v: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
        # Checked in eager mode only. Read inside a compiled step, each layer's counter is a
        # separate dynamic int that dynamo guards equal to ``start``; with three or more layers
        # inductor (torch 2.13) then emits code naming a symbol it never binds ("NameError:
        # name 's24' is not defined" on the second decode step).
        stored = start if torch.compiler.is_compiling() else self.lengths[layer_idx]
        if stored != start:
            raise RuntimeError(f"dynamic cache layer {layer_idx} holds {stored} slots but was "
                               f"asked to write at slot {start}")
        end = start + k.shape[2]
        keys, values = self.keys[layer_idx], self.values[layer_idx]
        if keys is None or keys.shape[2] < end:
            keys, values = self._regrow(keys, stored, end, k), self._regrow(values, stored, end, v)
            self.keys[layer_idx], self.values[layer_idx] = keys, values
        keys[:, :, start:end] = k
        values[:, :, start:end] = v
        self.lengths[layer_idx] = end
        return keys[:, :, :end], values[:, :, :end]  # [B, H_kv, T, D] views

    def _regrow(self, old: torch.Tensor | None, stored: int, needed: int,
                new: torch.Tensor) -> torch.Tensor:
        room = max(2 * stored, needed + MIN_SLOTS)
        if self.capacity is not None:
            room = max(needed, min(room, self.capacity))  # a caller past capacity still works
        b, h, _, d = new.shape
        buffer = new.new_empty(b, h, room, d)
        if old is not None:
            buffer[:, :, :stored] = old[:, :, :stored]
        return buffer

    def reorder(self, rows: torch.Tensor) -> None:
        self.keys = [None if k is None else k.index_select(0, rows) for k in self.keys]
        self.values = [None if v is None else v.index_select(0, rows) for v in self.values]
