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
from collections.abc import Sequence

import torch
from qwen3core_backends.eager.linear import Linear, check_quantized_shape
from torch.nn import functional as F

from qwen3core.quant.weight import QuantizedWeight

from .build import cpu_has_native_bf16, load_kernels
from .quant_linear import PackedQuant, concat_packed, pack_quantized

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


class PackedWeights:
    """The kernel's copy of one or more weights stacked along the outputs, kept in step with
    them: a weight replaced or written in place after packing (load_state_dict, tying) is
    repacked before the next product instead of leaving the kernel with the old values."""

    def __init__(self) -> None:
        # Derived state, not a buffer: it is not part of the checkpoint and must not be moved
        # or loaded on its own.
        self.packed: torch.Tensor | None = None
        self._packed_from: list[tuple[int, int | None]] | None = None

    @torch.no_grad()
    def pack(self, *weights: torch.Tensor) -> None:
        stacked = weights[0] if len(weights) == 1 else torch.cat(weights)
        self.packed = pack_weight(stacked)
        self._packed_from = [_identity(w) for w in weights]

    def current(self, *weights: torch.Tensor) -> torch.Tensor | None:
        """The packed tiles of ``weights``, repacked first if they changed; None while never
        packed under torch.compile (which cannot trace data_ptr: compiled models are prepared
        before they run, so this is only a model traced without prepare_weights)."""
        if torch.compiler.is_compiling():
            return self.packed
        if self.packed is None or self._packed_from != [_identity(w) for w in weights]:
            self.pack(*weights)
        return self.packed


def _identity(weight: torch.Tensor) -> tuple[int, int | None]:
    try:
        version = weight._version
    except RuntimeError:  # inference tensors have no version counter
        version = None
    return weight.data_ptr(), version


def kernel_takes(x: torch.Tensor, weight: torch.Tensor, limit: int | None) -> bool:
    """Whether the kernel computes ``x @ weight.T``: a supported dtype on the CPU, at most
    ``limit`` rows (the dtype's :func:`kernel_row_limit`, looked up once by the caller: it asks
    the CPU, which torch.compile cannot trace)."""
    return ((limit is None or math.prod(x.shape[:-1]) <= limit)
            and x.device.type == "cpu" and weight.device.type == "cpu"
            and x.dtype == weight.dtype and x.dtype in KERNEL_DTYPES)


def packed_linear(x: torch.Tensor, packed: torch.Tensor, out_features: int) -> torch.Tensor:
    return torch.ops.qwen3core_cpu.linear(x, packed, out_features)


class CpuLinear(Linear):
    """The eager bias-free linear layer (same ``weight`` [out, in]) with a kernel for decode;
    see the module docstring."""

    def __init__(self, in_features: int, out_features: int, *, dtype: torch.dtype,
                 device: torch.device):
        super().__init__(in_features, out_features, dtype=dtype, device=device)
        self.max_kernel_rows = kernel_row_limit(dtype)
        self.kernel_weights = PackedWeights()
        # False once the layer is part of a fused group, whose packed copy serves it: packing
        # it on its own too would hold its weights a third time (it still packs if called).
        self.packs_on_prepare = True
        self.quant: PackedQuant | None = None  # set by load_quantized; not a buffer
        load_kernels()  # build the extension while the model is built, not mid-forward

    def load_quantized(self, weight: QuantizedWeight) -> None:
        """Pack ``weight`` for the int8/int4 kernel (see :mod:`.quant_linear`) and drop the
        dense ``weight``: the packed levels are the only copy."""
        check_quantized_shape(self, weight)
        self.quant = pack_quantized(weight)
        del self.weight
        self.packs_on_prepare = False

    @property
    def packed(self) -> torch.Tensor | None:
        return self.kernel_weights.packed

    def prepare_weights(self) -> None:
        if (self.packs_on_prepare and self.quant is None and self.weight.device.type == "cpu"
                and self.weight.dtype in KERNEL_DTYPES):
            self.kernel_weights.pack(self.weight)

    @classmethod
    def fuse(cls, layers: Sequence[CpuLinear]) -> FusedCpuLinear | FusedQuantLinear | None:
        """One packed weight for ``layers`` (see :class:`~qwen3core.contracts.FusedLinear`)."""
        if any(layer.quant is not None for layer in layers):
            return FusedQuantLinear.fuse(layers)
        for layer in layers:
            layer.packs_on_prepare = False
            layer.kernel_weights = PackedWeights()  # drop a copy packed before the fusion
        return FusedCpuLinear(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.quant is not None:
            return self.quant(x, self.out_features)
        if kernel_takes(x, self.weight, self.max_kernel_rows):
            packed = self.kernel_weights.current(self.weight)
            if packed is not None:
                return packed_linear(x, packed, self.out_features)
        return F.linear(x, self.weight)


class FusedCpuLinear:
    """Layers that read one input, packed as one weight (their outputs stacked): one kernel
    call per step for q/k/v or gate/up. Not a module: the layers keep their parameters."""

    def __init__(self, layers: Sequence[CpuLinear]):
        self.layers = list(layers)
        self.out_features = sum(layer.out_features for layer in layers)
        self.kernel_weights = PackedWeights()
        weights = self._weights()
        self.max_kernel_rows = kernel_row_limit(weights[0].dtype)
        if weights[0].device.type == "cpu" and weights[0].dtype in KERNEL_DTYPES:
            self.kernel_weights.pack(*weights)

    def _weights(self) -> list[torch.Tensor]:
        return [layer.weight for layer in self.layers]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        weights = self._weights()
        if kernel_takes(x, weights[0], self.max_kernel_rows):
            packed = self.kernel_weights.current(*weights)
            if packed is not None:
                return packed_linear(x, packed, self.out_features)
        return torch.cat([F.linear(x, w) for w in weights], dim=-1)


class FusedQuantLinear:
    """Quantized layers that read one input, their packed levels stacked into one weight (one
    kernel call for q/k/v or gate/up). Each layer's own packed weight becomes a view into the
    stack, so the levels are still held once."""

    def __init__(self, packed: PackedQuant, out_features: int):
        self.packed, self.out_features = packed, out_features

    @classmethod
    def fuse(cls, layers: Sequence[CpuLinear]) -> FusedQuantLinear | None:
        if any(layer.quant is None for layer in layers):
            return None  # dense and quantized layers do not stack
        outs = [layer.out_features for layer in layers]
        stacked = concat_packed([layer.quant for layer in layers], outs)
        if stacked is None:
            return None
        start = 0
        for layer in layers:
            tiles = -(-layer.out_features // TILE)
            layer.quant = stacked.tiles(start, start + tiles)
            start += tiles
        return cls(stacked, sum(outs))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.packed(x, self.out_features)
