"""Dtype names as users type them."""

from __future__ import annotations

import torch

from qwen3core.errors import Qwen3CoreError

_ALIASES = {
    "float32": torch.float32, "fp32": torch.float32, "f32": torch.float32,
    "float": torch.float32,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
    "float64": torch.float64, "fp64": torch.float64, "double": torch.float64,
}


def parse_dtype(value: str | torch.dtype | None) -> torch.dtype | None:
    if value is None:
        return None
    if isinstance(value, torch.dtype):
        if value not in _ALIASES.values():
            raise Qwen3CoreError(f"dtype {value} is not a float type qwen3core runs in; use one "
                                 f"of torch.float32, torch.bfloat16, torch.float16, "
                                 f"torch.float64")
        return value
    if not isinstance(value, str):
        raise Qwen3CoreError(f"dtype must be a name such as 'bfloat16' or a torch float dtype, "
                             f"got {type(value).__name__} {value!r}")
    key = value.lower().replace("torch.", "")
    if key not in _ALIASES:
        raise Qwen3CoreError(
            f"unknown dtype {value!r}; use one of float32, bfloat16, float16, float64")
    return _ALIASES[key]


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def bytes_per_element(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()
