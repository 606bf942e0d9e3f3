"""The cpu backend: compiled CPU kernels for the linear layers of decode.

Provides ``linear`` ("cpu"): products of a few rows (decode: batch x new tokens) with weights
packed once at load time into 16-output tiles, read at close to the memory bandwidth on all of
torch's threads; AVX2+FMA kernels, and AVX-512 (with BF16 dot products where present) chosen at
run time. Many rows (prefill) go to ``F.linear`` on the original weight wherever torch's own
GEMM is as fast (see :func:`.linear.kernel_row_limit`).

Needs: an x86-64 CPU with AVX2 and FMA, bfloat16 or float32, a C++ compiler and ninja on the
first use (the extension is then cached, see :mod:`.build`). Where any is missing the
implementation is unavailable with the reason, and automatic selection takes another.
"""

import torch

from qwen3core import Implementation, hookimpl
from qwen3core.dtypes import dtype_name

from .build import unavailable_reason
from .linear import KERNEL_DTYPES, CpuLinear


def _check(device: torch.device, dtype: torch.dtype) -> str | None:
    if device.type != "cpu":
        return f"the cpu kernels run on the CPU, not on {device.type}"
    if dtype not in KERNEL_DTYPES:
        return f"cpu kernels support bfloat16 and float32, not {dtype_name(dtype)}"
    return unavailable_reason()


@hookimpl
def qwen3core_linear():
    return Implementation(
        "linear", "cpu",
        lambda ctx, i, o: CpuLinear(i, o, dtype=ctx.dtype, device=ctx.device),
        summary="packed-weight AVX2/AVX-512 kernel for decode",
        priority=50, check=_check)
