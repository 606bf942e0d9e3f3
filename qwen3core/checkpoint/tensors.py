"""A checkpoint as a state dict whose tensors are read only when a module asks for them.

Each value comes memory-mapped from its safetensors file and is converted to the requested dtype
and device on access. When dtype and device already match (CPU, stored dtype), the tensor *is*
the mapped file region: no copy is made, pages are read on first use, and several processes
loading the same file share them. Otherwise the converted tensor is the only copy kept, and a
file's mapping is released as soon as its last tensor has been handed out, so at most about one
shard of source data is resident beside the converted weights.

``slices`` (tensor parallelism) names, for some keys, the part of the stored tensor to read:
safetensors' ``get_slice`` reads only those bytes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from qwen3core.checkpoint.files import WeightFiles
from qwen3core.errors import CheckpointError


class CheckpointTensors(Mapping[str, torch.Tensor]):
    def __init__(self, weights: WeightFiles, keys: Iterable[str], *, dtype: torch.dtype,
                 device: torch.device, progress: Any = None,
                 slices: Mapping[str, Any] | None = None):
        self._weights = weights
        self._keys = list(keys)
        self._key_set = set(self._keys)
        self._dtype, self._device = dtype, device
        self._progress = progress  # a tqdm bar counting bytes, or None
        self._slices = slices or {}  # key -> qwen3core.parallel.plan.Shard
        self._unread = Counter(weights.tensors[k].file for k in self._keys)
        self._handles: dict[Path, Any] = {}

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: object) -> bool:
        return key in self._key_set

    @property
    def dtype(self) -> torch.dtype:
        return self._dtype

    @property
    def device(self) -> torch.device:
        return self._device

    def __getitem__(self, key: str) -> torch.Tensor:
        return self._read(key).to(device=self._device, dtype=self._dtype)

    def raw(self, key: str) -> torch.Tensor:
        """The tensor as stored (dtype and device unchanged): the parts of a quantized layer,
        whose integer words and scales must not be converted to the load dtype."""
        return self._read(key)

    def _read(self, key: str) -> torch.Tensor:
        if key not in self._key_set:
            raise KeyError(key)
        info = self._weights.tensors[key]
        from safetensors import SafetensorError

        try:
            if key in self._slices:
                stored = self._handle(info.file).get_slice(key)[self._slices[key].index()]
            else:
                stored = self._handle(info.file).get_tensor(key)
        except (SafetensorError, OSError) as exc:
            raise CheckpointError(f"reading {key!r} from {info.file} failed ({exc}); the file "
                                  "is damaged, download it again") from None
        self._unread[info.file] -= 1
        if self._unread[info.file] <= 0:
            # The mapping lives on only while tensors still view it (the zero-copy case).
            self._handles.pop(info.file, None)
        if self._progress is not None:
            self._progress.update(info.nbytes)
        return stored

    def _handle(self, path: Path) -> Any:
        handle = self._handles.get(path)
        if handle is None:
            from safetensors import safe_open

            handle = self._handles[path] = safe_open(str(path), framework="pt", device="cpu")
        return handle

    def close(self) -> None:
        self._handles.clear()
