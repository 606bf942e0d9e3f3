"""The cuda backend: hand-written CUDA kernels and flash attention for NVIDIA GPUs.

Provides ``norm`` "cuda" (RMSNorm for the hidden and per-head q/k norms), ``rope`` "cuda" (q
and k rotated in one launch), ``mlp`` "cuda" (SwiGLU with the SiLU and the gating product
fused) for float32, float16 and bfloat16, and ``attention`` "flash" (torch's flash kernels,
the memory-efficient or cuDNN kernel when a mask is needed) and "flash_attn" (the flash-attn
package) for float16 and bfloat16. The kernels round like the eager reference (see
docs/cuda.md); on a CUDA device they are preferred over the other backends.

Needs: a CUDA build of torch and a visible GPU; for the kernels also the CUDA toolkit (``nvcc``)
and ninja on first use, or a finished build in the kernel cache (see :mod:`.library`); for
"flash" compute capability 8.0+; for "flash_attn" the flash-attn package (2.1+). Where any is
missing the implementation is listed as unavailable with the reason.
"""

from qwen3core import Implementation, hookimpl

from .attention import flash_attention, make_flash_attn_package_attention
from .availability import flash_attn_package_reason, flash_reason, kernels_reason
from .mlp import CudaSwiGLU
from .norm import CudaRMSNorm
from .rope import CudaRotary

#: Above every portable implementation: on a GPU these are the fastest choice.
PRIORITY = 100


@hookimpl
def qwen3core_norm():
    return Implementation(
        "norm", "cuda",
        lambda ctx, dim, eps: CudaRMSNorm(dim, eps, dtype=ctx.dtype, device=ctx.device),
        summary="CUDA kernel: float32 statistics, cast, then weight", priority=PRIORITY,
        check=kernels_reason)


@hookimpl
def qwen3core_rope():
    return Implementation(
        "rope", "cuda",
        lambda ctx: CudaRotary(ctx.spec.head_dim, ctx.spec.rope_theta, device=ctx.device,
                               scaling=ctx.spec.rope_scaling),
        summary="CUDA kernel: q and k in one launch, cos/sin in float32", priority=PRIORITY,
        check=kernels_reason)


@hookimpl
def qwen3core_mlp():
    return Implementation(
        "mlp", "cuda", CudaSwiGLU, summary="SwiGLU with a fused SiLU-multiply CUDA kernel",
        priority=PRIORITY, check=kernels_reason)


@hookimpl
def qwen3core_attention():
    return [
        Implementation(
            "attention", "flash", lambda ctx: flash_attention,
            summary="torch flash kernels; memory-efficient/cuDNN kernel under a mask",
            priority=PRIORITY, check=flash_reason),
        Implementation(
            "attention", "flash_attn", lambda ctx: make_flash_attn_package_attention(),
            summary="the flash-attn package; memory-efficient/cuDNN kernel under a mask",
            priority=PRIORITY - 1, check=flash_attn_package_reason),
    ]
