"""The growing (dynamic) KV cache: concatenates new keys and values onto the old ones."""

import torch


class DynamicKVCache:
    """Storage grows with each call; ``capacity`` is only the bound the request promised."""

    returns_full_capacity = False

    def __init__(self, num_layers: int, capacity: int | None):
        self.capacity = capacity
        self.keys: list[torch.Tensor | None] = [None] * num_layers  # each [B, H_kv, T, D]
        self.values: list[torch.Tensor | None] = [None] * num_layers

    def update(self, layer_idx: int, start: int, k: torch.Tensor, v: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
        old_k, old_v = self.keys[layer_idx], self.values[layer_idx]
        stored = 0 if old_k is None else old_k.shape[2]
        if stored != start:
            raise RuntimeError(f"dynamic cache layer {layer_idx} holds {stored} slots but was "
                               f"asked to write at slot {start}")
        if old_k is not None:
            k, v = torch.cat((old_k, k), dim=2), torch.cat((old_v, v), dim=2)
        self.keys[layer_idx], self.values[layer_idx] = k, v
        return k, v

    def reorder(self, rows: torch.Tensor) -> None:
        self.keys = [None if k is None else k.index_select(0, rows) for k in self.keys]
        self.values = [None if v is None else v.index_select(0, rows) for v in self.values]
