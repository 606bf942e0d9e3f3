"""Whether the requested dtype can actually run on the device, checked before any weights are
read, so the user learns it in one line instead of from a kernel error later. (Whether the
device exists is :func:`qwen3core.build.resolve_device`'s question.)"""

from __future__ import annotations

import torch

from qwen3core.dtypes import dtype_name
from qwen3core.errors import Qwen3CoreError


def check_dtype_on_device(dtype: torch.dtype, device: torch.device) -> None:
    """Raise :class:`Qwen3CoreError` if ``device`` cannot compute in ``dtype``."""
    if (device.type == "cuda" and dtype == torch.bfloat16
            and not torch.cuda.is_bf16_supported(including_emulation=False)):
        raise Qwen3CoreError(f"{torch.cuda.get_device_name(device)} has no native bfloat16; "
                             "pass dtype='float16' or dtype='float32'")
    try:  # the operations a forward pass needs most: a matmul and a float32 upcast
        probe = torch.ones(2, 2, dtype=dtype, device=device)
        (probe @ probe).float().sum().item()
    except (RuntimeError, TypeError) as exc:
        raise Qwen3CoreError(f"dtype {dtype_name(dtype)} is not supported on device {device} "
                             f"({str(exc).splitlines()[0]}); pass a dtype the device supports, "
                             "e.g. dtype='float32'") from None
