"""The ``sdpa`` attention backend: PyTorch's fused scaled-dot-product attention.

Provides ``attention`` "sdpa". Needs torch >= 2.1 (the ``scale`` argument); on torch >= 2.5
grouped-query attention runs without materialising repeated keys and values (``enable_gqa``).
PyTorch picks the kernel (flash, memory-efficient or math) for the device and dtype; all of
them accumulate the softmax in float32 (float64 for float64 inputs), as the contract asks.
The boolean mask is passed as is; the kernel's own causal path is used only when the mask is
exactly the plain causal one.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from qwen3core import Implementation, hookimpl

from .attention import make_sdpa_attention


def _torch_version() -> tuple[int, int]:
    major, minor = torch.__version__.split(".")[:2]
    return int(major), int("".join(ch for ch in minor if ch.isdigit()) or 0)


def _check(device: torch.device, dtype: torch.dtype) -> str | None:
    if not hasattr(F, "scaled_dot_product_attention") or _torch_version() < (2, 1):
        return f"needs torch >= 2.1 (installed: {torch.__version__})"
    return None


@hookimpl
def qwen3core_attention():
    native_gqa = _torch_version() >= (2, 5)
    return Implementation(
        "attention", "sdpa", lambda ctx: make_sdpa_attention(native_gqa), priority=10,
        check=_check, supports_autograd=True,
        summary="torch scaled_dot_product_attention" + (", native GQA" if native_gqa else ""))
