"""Whether the requested dtype can actually run on the requested device, checked before any
weights are read, so the user learns it in one line instead of from a kernel error later."""

from __future__ import annotations

import torch

from qwen3core.dtypes import dtype_name
from qwen3core.errors import Qwen3CoreError


def check_dtype_on_device(dtype: torch.dtype, device: torch.device) -> None:
    """Raise :class:`Qwen3CoreError` if ``device`` is missing or cannot compute in ``dtype``."""
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise Qwen3CoreError(f"device {device} was requested but this torch build sees no "
                                 "CUDA GPU (torch.cuda.is_available() is False); pass "
                                 "device='cpu'")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise Qwen3CoreError(f"device {device} does not exist; this machine has "
                                 f"{torch.cuda.device_count()} CUDA device(s)")
        if dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported(including_emulation=False):
            raise Qwen3CoreError(f"{torch.cuda.get_device_name(device)} has no native bfloat16; "
                                 "pass dtype='float16' or dtype='float32'")
    if device.type == "meta":
        return
    try:  # the operations a forward pass needs most: a matmul and a float32 upcast
        probe = torch.ones(2, 2, dtype=dtype, device=device)
        (probe @ probe).float().sum().item()
    except (RuntimeError, TypeError) as exc:
        raise Qwen3CoreError(f"dtype {dtype_name(dtype)} is not supported on device {device} "
                             f"({str(exc).splitlines()[0]}); pass a dtype the device supports, "
                             "e.g. dtype='float32'") from None
