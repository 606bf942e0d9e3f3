"""A preallocated KV cache: every slot the request needs, allocated once, written in place."""

from __future__ import annotations

import torch
from qwen3core_backends.eager.kv_cache import RowSlots, write_rows

from qwen3core.cache import mark_fixed_address
from qwen3core.huge_pages import zeros_on_huge_pages


class StaticKVCache:
    """Per layer, keys and values in buffers [B, H_kv, capacity, D] allocated at construction.

    ``update`` writes each row's new slots in place and returns the whole buffers (the cache's
    mask hides unwritten and padding slots), so every step's attention sees the same shapes: a
    compiled decode step is traced once. The cache is sized from the request (prompt +
    new tokens, rounded up to a multiple of ``round_to``), not from the model's context length.
    """

    returns_full_capacity = True

    def __init__(self, num_layers: int, batch_size: int, num_kv_heads: int, capacity: int,
                 head_dim: int, *, dtype: torch.dtype, device: torch.device,
                 round_to: int = 1):
        if capacity is None or capacity <= 0:
            raise ValueError(f"a static KV cache needs a positive capacity, got {capacity}")
        # Rounding up lets requests of similar lengths share one compiled decode step (its
        # shapes include the capacity) at the price of attending over a few more masked slots.
        self.capacity = -(-capacity // round_to) * round_to
        capacity = self.capacity
        shape = (batch_size, num_kv_heads, capacity, head_dim)  # [B, H_kv, T, D]
        # Read whole by every decode step's attention: on huge pages where the host has them
        # (qwen3core/huge_pages.py).
        self.keys = _fixed([zeros_on_huge_pages(shape, dtype=dtype, device=device)
                            for _ in range(num_layers)])
        self.values = _fixed([zeros_on_huge_pages(shape, dtype=dtype, device=device)
                              for _ in range(num_layers)])
        self.slots = RowSlots()

    def update(self, layer_idx: int, start: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               length: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        keys, values = self.keys[layer_idx], self.values[layer_idx]
        # A scatter on the device: no host round trip, and it raises for a slot beyond the
        # capacity.
        write_rows(keys, start, k, self.slots)
        write_rows(values, start, v, self.slots)
        return keys, values  # [B, H_kv, capacity, D]

    def layer_buffers(self, length: int | None
                      ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Every layer's key and value buffers (see ``KVCache``): already whole."""
        return self.keys, self.values

    def reorder(self, rows: torch.Tensor) -> None:
        self.keys = _fixed([k.index_select(0, rows) for k in self.keys])
        self.values = _fixed([v.index_select(0, rows) for v in self.values])

    def extend(self, other: StaticKVCache) -> None:
        if other.capacity != self.capacity:
            raise ValueError(f"cannot join a static KV cache of {other.capacity} slots to one "
                             f"of {self.capacity}")
        self.keys = _fixed([torch.cat(pair) for pair in zip(self.keys, other.keys, strict=True)])
        self.values = _fixed([torch.cat(pair)
                              for pair in zip(self.values, other.values, strict=True)])


def _fixed(buffers: list[torch.Tensor]) -> list[torch.Tensor]:
    """The buffers, marked as written in place at fixed addresses (CUDA graphs replay them)."""
    for buffer in buffers:
        mark_fixed_address(buffer)
    return buffers
