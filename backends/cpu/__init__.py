"""The cpu backend: compiled CPU kernels for decode.

Provides ``linear`` ("cpu"): products of a few rows (decode: batch x new tokens) with weights
packed once at load time into 16-output tiles, read at close to the memory bandwidth on all of
torch's threads; AVX2+FMA kernels, and AVX-512 (with BF16 dot products where present) chosen at
run time. The tiles are the only copy of each weight. Many rows (prefill) go to ``F.linear``
on the weight unpacked for the call wherever torch's own GEMM is faster (see
:func:`.linear.kernel_row_limit`).

Also ``attention`` ("cpu": the few query rows of a decode step in one loop; longer prompts go
to SDPA), ``norm``, ``rope`` and ``mlp`` ("cpu"): RMSNorm, rotary embedding and SiLU-multiply as one
operator each (the eager versions are chains of small torch operators whose dispatch costs
more than their arithmetic at decode sizes), and the MLP's gate and up read as one packed
weight. Same numerics as the eager reference, product by product (see csrc/pointwise_ops.cpp).

Needs: an x86-64 CPU with AVX2 and FMA, bfloat16 or float32, a C++ compiler and ninja on the
first use (the extension is then cached, see :mod:`.build`). Where any is missing the
implementation is unavailable with the reason, and automatic selection takes another.
"""

import torch

from qwen3core import Implementation, hookimpl
from qwen3core.dtypes import dtype_name

from .attention import cpu_attention
from .build import load_kernels, unavailable_reason
from .linear import KERNEL_DTYPES, CpuLinear
from .mlp import CpuSwiGLU
from .moe import CpuMoE
from .norm import CpuRMSNorm
from .rope import CpuRotary


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


@hookimpl
def qwen3core_norm():
    return Implementation(
        "norm", "cpu",
        lambda ctx, dim, eps: CpuRMSNorm(dim, eps, dtype=ctx.dtype, device=ctx.device),
        summary="RMSNorm as one operator", priority=50, check=_check)


@hookimpl
def qwen3core_rope():
    return Implementation(
        "rope", "cpu",
        lambda ctx: CpuRotary(ctx.spec.head_dim, ctx.spec.rope_theta, device=ctx.device,
                              scaling=ctx.spec.rope_scaling),
        summary="q and k rotated in one operator", priority=50, check=_check)


@hookimpl
def qwen3core_mlp():
    return Implementation("mlp", "cpu", CpuSwiGLU,
                          summary="gate+up as one packed weight, fused SiLU-multiply",
                          priority=50, check=_check)


@hookimpl
def qwen3core_moe():
    # Below ``grouped`` (10): for dense experts the default stays grouped (grouped_mm for
    # prefill); quantized loads choose this one (qwen3core.quant.moe_choice).
    return Implementation("moe", "cpu", CpuMoE,
                          summary="a layer's chosen experts (quantized or dense) in one operator",
                          priority=5, check=_check)


def _attention(ctx):
    # Loading here, not on first call: selected alone, attention is the only cpu component,
    # and no other component's constructor would have registered torch.ops.qwen3core_cpu.
    load_kernels()
    return cpu_attention


@hookimpl
def qwen3core_attention():
    return Implementation("attention", "cpu", _attention,
                          summary="decode rows in one loop, SDPA for prompts",
                          priority=50, check=_check)
