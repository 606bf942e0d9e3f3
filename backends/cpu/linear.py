"""The cpu backend's linear layer: its own kernel for decode, F.linear where torch is faster.

Decode multiplies a few rows by every weight once per token, so its speed is the speed at which
the weights stream from memory. ``prepare_weights`` copies the weight once into 16-output
tiles (see ``csrc/kernels.h``) that the kernel reads front to back, one cache line per pair of
inputs, on all of torch's threads. Prefill (many rows) is compute-bound instead: it goes to
``F.linear`` on the original weight where torch's GEMM is at least as fast (see
:func:`kernel_row_limit`). The original weight is kept for that, for the state dict and for
tying, so the layer holds its weights twice.
"""

from __future__ import annotations

import math

import torch
from qwen3core_backends.eager.linear import Linear
from torch.nn import functional as F

from .build import cpu_has_native_bf16, load_kernels

TILE = 16  # output features per packed tile (kTile in csrc/kernels.h)
KERNEL_DTYPES = (torch.bfloat16, torch.float32)
#: Rows (batch x new tokens) up to which float32 goes to the kernel. Past it torch's float32
#: GEMM (MKL) is as fast or faster: measured equal at 32 rows on AMD Zen 3, one thread.
FLOAT32_KERNEL_ROWS = 32
#: The same for bfloat16 on CPUs that multiply bfloat16 natively (AVX-512 BF16, AMX), whose
#: GEMM torch's oneDNN uses. Without them torch's bfloat16 GEMM stays near 5 GMAC/s per core at
#: every size on Zen 3 while the kernel runs at 28-45, so there the kernel takes every input.
NATIVE_BF16_KERNEL_ROWS = 16


def kernel_row_limit(dtype: torch.dtype) -> int | None:
    """Most rows the kernel takes per call in ``dtype`` (None: no limit); more use F.linear."""
    if dtype == torch.float32:
        return FLOAT32_KERNEL_ROWS
    if dtype == torch.bfloat16:
        return NATIVE_BF16_KERNEL_ROWS if cpu_has_native_bf16() else None
    return 0  # not a kernel dtype


def pack_weight(weight: torch.Tensor) -> torch.Tensor:
    """[N, K] -> the kernel's tiles: bfloat16 [ceil(N/16), ceil(K/2), 16, 2] with input pairs
    interleaved, float32 [ceil(N/16), ceil(K/2)*2, 16]; zero-padded."""
    n, k = weight.shape
    n_pad, k_pad = -(-n // TILE) * TILE, -(-k // 2) * 2
    padded = weight.detach()
    if (n_pad, k_pad) != (n, k):
        padded = weight.new_zeros(n_pad, k_pad)
        padded[:n, :k] = weight
    if weight.dtype == torch.bfloat16:
        tiles = padded.view(n_pad // TILE, TILE, k_pad // 2, 2).transpose(1, 2)
    else:
        tiles = padded.view(n_pad // TILE, TILE, k_pad).transpose(1, 2)
    return tiles.contiguous()


class CpuLinear(Linear):
    """The eager bias-free linear layer (same ``weight`` [out, in]) with a kernel for decode;
    see the module docstring."""

    def __init__(self, in_features: int, out_features: int, *, dtype: torch.dtype,
                 device: torch.device):
        super().__init__(in_features, out_features, dtype=dtype, device=device)
        self.max_kernel_rows = kernel_row_limit(dtype)
        # Derived state, not a buffer: it is not part of the checkpoint and must not be moved
        # or loaded on its own. Rebuilt whenever the weight changes (see _repack_if_stale).
        self.packed: torch.Tensor | None = None
        self._packed_from: tuple[int, int | None] | None = None
        load_kernels()  # build the extension while the model is built, not mid-forward

    @torch.no_grad()
    def prepare_weights(self) -> None:
        if self.weight.device.type == "cpu" and self.weight.dtype in KERNEL_DTYPES:
            self._pack()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._kernel_takes(x):
            return F.linear(x, self.weight)
        if not torch.compiler.is_compiling():
            self._repack_if_stale()
        elif self.packed is None:  # traced without prepare_weights: nothing to read
            return F.linear(x, self.weight)
        return torch.ops.qwen3core_cpu.linear(x, self.packed, self.out_features)

    def _kernel_takes(self, x: torch.Tensor) -> bool:
        limit = self.max_kernel_rows
        return ((limit is None or math.prod(x.shape[:-1]) <= limit)
                and x.device.type == "cpu" and self.weight.device.type == "cpu"
                and x.dtype == self.weight.dtype and x.dtype in KERNEL_DTYPES)

    def _repack_if_stale(self) -> None:
        # A weight replaced or written in place after prepare_weights (load_state_dict, tying)
        # must not leave the kernel multiplying by the old values. (Skipped under torch.compile,
        # which cannot trace data_ptr: compiled models are prepared before they run.)
        if self.packed is None or self._packed_from != self._weight_identity():
            with torch.no_grad():
                self._pack()

    def _pack(self) -> None:
        self.packed = pack_weight(self.weight)
        self._packed_from = self._weight_identity()

    def _weight_identity(self) -> tuple[int, int | None]:
        try:
            version = self.weight._version
        except RuntimeError:  # inference tensors have no version counter
            version = None
        return self.weight.data_ptr(), version
