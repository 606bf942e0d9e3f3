"""Why an implementation of the cuda backend cannot run on a device and dtype, cheaply.

Checks go from the cheapest fact to the dearest (device type, dtype, the torch build, the
visible GPU, then files of the toolchain); none of them compiles or launches anything.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util

import torch

from qwen3core.dtypes import dtype_name

from .library import unavailable_reason as kernels_unavailable_reason
from .ops import KERNEL_DTYPES

FLASH_DTYPES = (torch.float16, torch.bfloat16)
FLASH_MIN_CAPABILITY = (8, 0)  # FlashAttention-2 kernels need Ampere or newer
FLASH_ATTN_MIN_VERSION = (2, 1)  # bottom-right aligned causal masks from 2.1 on


def kernels_reason(device: torch.device, dtype: torch.dtype) -> str | None:
    """For the compiled kernels: norm, rope and mlp "cuda"."""
    reason = _device_reason(device)
    if reason is None and dtype not in KERNEL_DTYPES:
        reason = (f"the cuda kernels support float32, float16 and bfloat16, not "
                  f"{dtype_name(dtype)}")
    reason = reason or _cuda_runtime_reason(device)
    if reason is None:
        reason = kernels_unavailable_reason(torch.cuda.get_device_capability(device))
    return reason


def flash_reason(device: torch.device, dtype: torch.dtype) -> str | None:
    """For attention "flash": torch's flash kernels (and the efficient ones for masks)."""
    reason = _device_reason(device) or _flash_dtype_reason(dtype) or _cuda_runtime_reason(device)
    if reason is None and not torch.backends.cuda.is_flash_attention_available():
        reason = f"this torch build ({torch.__version__}) was compiled without flash attention"
    return reason or _capability_reason(device)


def flash_attn_package_reason(device: torch.device, dtype: torch.dtype) -> str | None:
    """For attention "flash_attn": the flash-attn package (looked up, not imported)."""
    reason = _device_reason(device) or _flash_dtype_reason(dtype)
    if reason is None and importlib.util.find_spec("flash_attn") is None:
        reason = "the flash_attn package is not installed (pip install flash-attn)"
    if reason is None:
        version = _installed_version("flash-attn") or _installed_version("flash_attn")
        if version is not None and version < FLASH_ATTN_MIN_VERSION:
            reason = (f"flash_attn {'.'.join(map(str, version))} aligns causal masks top-left; "
                      f"version 2.1 or newer is needed")
    return reason or _cuda_runtime_reason(device) or _capability_reason(device)


def _device_reason(device: torch.device) -> str | None:
    if device.type != "cuda":
        return f"needs a CUDA device, not {device.type} (load with device='cuda')"
    return None


def _flash_dtype_reason(dtype: torch.dtype) -> str | None:
    if dtype not in FLASH_DTYPES:
        return (f"flash attention supports float16 and bfloat16, not {dtype_name(dtype)}; use "
                f"attention 'eager' (or 'sdpa') for {dtype_name(dtype)}")
    return None


def _cuda_runtime_reason(device: torch.device) -> str | None:
    if torch.version.cuda is None:
        return (f"needs a CUDA device; this torch build ({torch.__version__}) has no CUDA: "
                f"install a CUDA build of torch")
    if not torch.cuda.is_available():
        return ("needs a CUDA device; none is visible (torch.cuda.is_available() is False): "
                "check the driver and CUDA_VISIBLE_DEVICES")
    if device.index is not None and device.index >= torch.cuda.device_count():
        return f"there is no {device}: {torch.cuda.device_count()} CUDA device(s) are visible"
    return None


def _capability_reason(device: torch.device) -> str | None:
    capability = torch.cuda.get_device_capability(device)
    if capability < FLASH_MIN_CAPABILITY:
        return (f"flash attention needs compute capability 8.0 or newer; {device} has "
                f"{capability[0]}.{capability[1]}")
    return None


def _installed_version(distribution: str) -> tuple[int, ...] | None:
    try:
        text = importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None
    parts = []
    for piece in text.split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)
