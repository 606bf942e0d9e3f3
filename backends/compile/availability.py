"""Whether ``torch.compile`` with inductor can run here, and if not, why."""

from __future__ import annotations

import os
import shutil
from functools import cache

import torch


@cache
def _dynamo_reason() -> str | None:
    try:
        import torch._dynamo
    except Exception as exc:  # noqa: BLE001 - any failure to import means unusable
        return f"torch._dynamo failed to import ({type(exc).__name__}: {exc})"
    if not torch._dynamo.is_dynamo_supported():
        return "torch.compile does not support this Python version or platform"
    try:
        import torch._inductor
    except Exception as exc:  # noqa: BLE001 - any failure to import means unusable
        return f"the inductor compiler failed to import ({type(exc).__name__}: {exc})"
    return None


@cache
def _cpu_reason() -> str | None:
    compiler = os.environ.get("CXX", "g++")
    if shutil.which(compiler) is None and shutil.which("c++") is None \
            and shutil.which("clang++") is None:
        return (f"inductor needs a C++ compiler on CPU and none was found (looked for "
                f"{compiler!r}, c++, clang++); install g++ or set CXX")
    return None


@cache
def _gpu_reason() -> str | None:
    try:
        from torch.utils._triton import has_triton
    except Exception:  # noqa: BLE001 - any failure to import means we cannot tell
        return "cannot tell whether triton is installed (torch.utils._triton is missing)"
    if not has_triton():
        return "inductor needs triton on GPU; pip install triton (it ships with CUDA torch)"
    return None


def compile_unavailable(device: torch.device, dtype: torch.dtype) -> str | None:
    reason = _dynamo_reason()
    if reason is not None:
        return reason
    if device.type == "cpu":
        return _cpu_reason()
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return (f"needs a CUDA device; none is visible (torch {torch.__version__}, "
                    f"torch.cuda.is_available() is False)")
        return _gpu_reason()
    return f"inductor does not target {device.type} devices here"


def cuda_graphs_unavailable(device: torch.device, dtype: torch.dtype) -> str | None:
    if device.type != "cuda":
        return (f"CUDA graphs need a CUDA device, not {device.type}; on {device.type} use "
                f"runner 'compile'")
    return compile_unavailable(device, dtype)
