"""Python entry points to the CUDA kernels, with their preconditions checked before launch.

Each function validates shapes, dtypes, strides and devices first (a clear ``ValueError``
rather than a failed launch or a silently wrong read), makes sure the kernel library is loaded
(:func:`.library.load_kernels`; the modules already did it in ``prepare_weights()``) and calls
the operator ``torch.ops.qwen3core_cuda.*``.
Inputs may have any leading shape; rows must have unit stride along the last dimension, and
whatever cannot be described as rows with one row stride is copied to a contiguous tensor.
"""

from __future__ import annotations

import torch

from qwen3core.dtypes import dtype_name

from .library import load_kernels

KERNEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """x [..., D], weight [D] -> [..., D]: ``weight * cast(x * rsqrt(mean(x^2) + eps))``."""
    _check_dtype(x, "x")
    if x.dim() == 0 or x.shape[-1] == 0:
        raise ValueError(f"rms_norm: x must have a non-empty last dimension, got {tuple(x.shape)}")
    dim = x.shape[-1]
    if weight.shape != (dim,):
        raise ValueError(f"rms_norm: weight has shape {tuple(weight.shape)}, expected ({dim},) "
                         f"to match the last dimension of x {tuple(x.shape)}")
    _check_same(weight, x, "weight", "x")
    if not weight.is_contiguous():
        raise ValueError("rms_norm: weight must be contiguous")
    _check_cuda(x, "rms_norm")
    rows = _as_rows(x)  # [N, D]
    load_kernels(x.device)
    return torch.ops.qwen3core_cuda.rms_norm(rows, weight, float(eps)).view(x.shape)


def silu_mul(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """gate, up [..., I] -> [..., I]: ``silu(gate) * up`` rounded as ``F.silu(gate) * up``."""
    _check_dtype(gate, "gate")
    if gate.dim() == 0 or gate.shape[-1] == 0:
        raise ValueError(f"silu_mul: gate must have a non-empty last dimension, got "
                         f"{tuple(gate.shape)}")
    if gate.shape != up.shape:
        raise ValueError(f"silu_mul: gate {tuple(gate.shape)} and up {tuple(up.shape)} must "
                         f"have the same shape")
    _check_same(up, gate, "up", "gate")
    _check_cuda(gate, "silu_mul")
    load_kernels(gate.device)
    out = torch.ops.qwen3core_cuda.silu_mul(_as_rows(gate), _as_rows(up))  # [N, I]
    return out.view(gate.shape)


def rotary(q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor, inv_freq: torch.Tensor
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """q [B, H_q, S, D], k [B, H_kv, S, D], positions [B, S] int64, inv_freq [D/2] float32 ->
    rotated (q, k), new tensors in the inputs' memory layout."""
    _check_dtype(q, "q")
    _check_same(k, q, "k", "q")
    if q.dim() != 4 or k.dim() != 4:
        raise ValueError(f"rotary: q and k must be [B, H, S, D], got {tuple(q.shape)} and "
                         f"{tuple(k.shape)}")
    b, _, s, d = q.shape
    if (k.shape[0], k.shape[2], k.shape[3]) != (b, s, d):
        raise ValueError(f"rotary: q {tuple(q.shape)} and k {tuple(k.shape)} must agree on "
                         f"batch, sequence and head_dim")
    if d % 2:
        raise ValueError(f"rotary: head_dim must be even, got {d}")
    if positions.shape != (b, s) or positions.dtype != torch.int64:
        raise ValueError(f"rotary: positions must be int64 [{b}, {s}], got "
                         f"{dtype_name(positions.dtype)} {tuple(positions.shape)}")
    if inv_freq.shape != (d // 2,) or inv_freq.dtype != torch.float32:
        raise ValueError(f"rotary: inv_freq must be float32 [{d // 2}], got "
                         f"{dtype_name(inv_freq.dtype)} {tuple(inv_freq.shape)}")
    for name, t in (("positions", positions), ("inv_freq", inv_freq), ("k", k)):
        if t.device != q.device:
            raise ValueError(f"rotary: {name} is on {t.device}, q on {q.device}")
    _check_cuda(q, "rotary")
    load_kernels(q.device)
    q = q if q.stride(-1) == 1 else q.contiguous()
    k = k if k.stride(-1) == 1 else k.contiguous()
    return torch.ops.qwen3core_cuda.rotary(q, k, positions, inv_freq.contiguous())


def prepare_kernels(device: torch.device) -> None:
    """Compile or load the kernels for ``device`` now (modules call this from
    ``prepare_weights()``), so that a build failure surfaces while the model loads and no
    first call inside a compiled step has to build anything."""
    if device.type == "cuda":
        load_kernels(device)


def register_fake_kernels() -> None:
    """Output shapes without running the kernels, so torch.compile can trace through them.
    Mirrors bindings.cpp: row outputs are contiguous, rotary outputs keep the input layout."""

    @torch.library.register_fake("qwen3core_cuda::rms_norm")
    def _(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        return x.new_empty(x.shape)

    @torch.library.register_fake("qwen3core_cuda::silu_mul")
    def _(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
        return gate.new_empty(gate.shape)

    @torch.library.register_fake("qwen3core_cuda::rotary")
    def _(q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor, inv_freq: torch.Tensor
          ) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.empty_like(q), torch.empty_like(k)


def _check_dtype(t: torch.Tensor, name: str) -> None:
    if t.dtype not in KERNEL_DTYPES:
        raise ValueError(f"{name} has dtype {dtype_name(t.dtype)}; the cuda kernels support "
                         f"float32, float16 and bfloat16")


def _check_same(t: torch.Tensor, reference: torch.Tensor, name: str, ref_name: str) -> None:
    if t.dtype != reference.dtype:
        raise ValueError(f"{name} has dtype {dtype_name(t.dtype)} but {ref_name} has "
                         f"{dtype_name(reference.dtype)}; they must match")
    if t.device != reference.device:
        raise ValueError(f"{name} is on {t.device} but {ref_name} is on {reference.device}")


def _check_cuda(t: torch.Tensor, op: str) -> None:
    if t.device.type != "cuda":
        raise ValueError(f"{op}: the cuda kernels need CUDA tensors, got one on {t.device}; "
                         f"select the eager implementations for {t.device.type}")


def _as_rows(x: torch.Tensor) -> torch.Tensor:
    """[..., C] -> [N, C] with unit column stride: a view whenever the leading dimensions
    collapse into one row stride (e.g. a column slice of a wider tensor), else a copy."""
    rows = x.reshape(-1, x.shape[-1])
    return rows if rows.stride(-1) == 1 else rows.contiguous()
