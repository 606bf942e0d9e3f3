"""The growing (dynamic) KV cache: returns the slots written so far.

Keys and values live in per-layer buffers with room to spare; a step writes each row's new
slots in place (rows may sit at different positions) and returns a view of the first
``length`` slots. A buffer that runs out of room is replaced by one twice as large (never past
the request's capacity), so a decode step copies only its own new slots, not the whole history
as a concatenation would (which made every step O(length)). Buffers start zeroed: a row's
slots beyond its own end are masked, but must hold finite numbers (see ``KVCache``).
"""

from __future__ import annotations

import torch

from qwen3core.huge_pages import zeros_on_huge_pages

#: Slots a buffer starts with beyond the first write, so short generations never regrow.
MIN_SLOTS = 256


class RowSlots:
    """Where a step's new tokens go, as the index tensors of an indexed copy; made once per step.

    Every layer's ``update`` in a step receives the same ``start`` tensor, and keys and values
    go to the same slots, so the index is built once per step rather than twice per layer
    (building it is two torch operators, as much as the copy). Keyed on the ``start`` object:
    the ``KVCache`` contract has the caller hand every layer of a step the same ``start`` and a
    new tensor for the next step, never one changed in place (inference tensors keep no version
    counter that could tell). Under compilation it is built every call (the compiler removes
    the repetition itself).
    """

    def __init__(self):
        self._key: tuple[torch.Tensor, int] | None = None
        self._index: tuple[torch.Tensor, torch.Tensor | None] | None = None

    def __call__(self, start: torch.Tensor, num_new: int
                 ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(slots, rows): slots [S] for one row, else slots [B, S] and rows [B, 1]."""
        if torch.compiler.is_compiling():
            return _row_slots(start, num_new)
        key = self._key
        if key is None or key[0] is not start or key[1] != num_new:
            self._index = _row_slots(start, num_new)
            self._key = (start, num_new)
        return self._index


def _row_slots(start: torch.Tensor, num_new: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    steps = torch.arange(num_new, device=start.device)
    if start.shape[0] == 1:
        return start + steps, None
    return start[:, None] + steps, torch.arange(start.shape[0], device=start.device)[:, None]


def write_rows(buffer: torch.Tensor, start: torch.Tensor, new: torch.Tensor,
               slots: RowSlots | None = None) -> None:
    """buffer [B, H, room, D] gets row b of new [B, H, S, D] at slots start[b] .. +S.

    One indexed copy for every row (no per-row python loop, no host read of ``start``); it
    raises for a slot beyond the buffer. Not ``scatter_``: for bfloat16 and float16 torch's CPU
    scatter widens the whole destination to float32 and back, which made every decode step
    copy each layer's entire cache twice. ``slots`` reuses the index of an earlier call."""
    index, rows = (slots or _row_slots)(start, new.shape[2])
    if rows is None:  # one row: its slots index the slot dimension directly (the cheapest copy)
        buffer.index_copy_(2, index, new)
    else:  # buffer[rows, :, slots] is [B, S, H, D]: the indexed dimensions come first
        buffer[rows, :, index] = new.transpose(1, 2)


class DynamicKVCache:
    """Storage grows with each call; ``capacity`` (if known) bounds how far a buffer grows."""

    returns_full_capacity = False

    def __init__(self, num_layers: int, capacity: int | None):
        self.capacity = capacity
        self.keys: list[torch.Tensor | None] = [None] * num_layers  # buffers [B, H_kv, room, D]
        self.values: list[torch.Tensor | None] = [None] * num_layers
        self.slots = RowSlots()

    def update(self, layer_idx: int, start: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               length: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        if length is None:
            raise ValueError("a growing KV cache needs the number of visible slots (length)")
        keys, values = self.keys[layer_idx], self.values[layer_idx]
        if keys is None or keys.shape[2] < length:
            keys, values = self._regrow(keys, length, k), self._regrow(values, length, v)
            self.keys[layer_idx], self.values[layer_idx] = keys, values
        write_rows(keys, start, k, self.slots)
        write_rows(values, start, v, self.slots)
        return keys.narrow(2, 0, length), values.narrow(2, 0, length)  # [B, H_kv, T, D] views

    def layer_buffers(self, length: int | None
                      ) -> tuple[list[torch.Tensor], list[torch.Tensor]] | None:
        """Every layer's key and value buffers, grown now to ``length`` slots exactly as
        ``update`` would grow them (see ``KVCache``); None before the first write."""
        if length is None or any(k is None for k in self.keys):
            return None
        for i, keys in enumerate(self.keys):
            if keys.shape[2] < length:
                self.keys[i] = self._regrow(keys, length, keys)
                self.values[i] = self._regrow(self.values[i], length, self.values[i])
        return self.keys, self.values

    def _regrow(self, old: torch.Tensor | None, needed: int, new: torch.Tensor) -> torch.Tensor:
        stored = 0 if old is None else old.shape[2]
        room = max(2 * stored, needed + MIN_SLOTS)
        if self.capacity is not None:
            room = max(needed, min(room, self.capacity))  # a caller past capacity still works
        b, h, _, d = new.shape
        # Read whole by every decode step's attention: on huge pages where the host has them
        # (qwen3core/huge_pages.py: 3-6 % of a 0.6B int4 step at 1024-4000 tokens of context).
        buffer = zeros_on_huge_pages((b, h, room, d), dtype=new.dtype, device=new.device)
        if old is not None:
            buffer[:, :, :stored] = old
        return buffer

    def reorder(self, rows: torch.Tensor) -> None:
        self.keys = [None if k is None else k.index_select(0, rows) for k in self.keys]
        self.values = [None if v is None else v.index_select(0, rows) for v in self.values]

    def extend(self, other: DynamicKVCache) -> None:
        self.keys = [_cat_rows(a, b) for a, b in zip(self.keys, other.keys, strict=True)]
        self.values = [_cat_rows(a, b) for a, b in zip(self.values, other.values, strict=True)]


def _cat_rows(a: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor | None:
    """Rows of a then rows of b, the shorter buffer padded with zero slots."""
    if a is None or b is None:
        if a is not None or b is not None:
            raise ValueError("cannot join a KV cache that has stored nothing to one that has")
        return None
    room = max(a.shape[2], b.shape[2])
    return torch.cat((_pad_slots(a, room), _pad_slots(b, room)))


def _pad_slots(x: torch.Tensor, room: int) -> torch.Tensor:
    if x.shape[2] == room:
        return x
    b, h, t, d = x.shape
    return torch.cat((x, x.new_zeros(b, h, room - t, d)), 2)
