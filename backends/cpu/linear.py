"""The cpu backend's linear layer: its own kernel for decode, F.linear where torch is faster.

Decode multiplies a few rows by every weight once per token, so its speed is the speed at which
the weights stream from memory. ``prepare_weights`` copies the weight once into 16-output
tiles (see ``csrc/kernels.h``) that the kernel reads front to back, one cache line per pair of
inputs, on all of torch's threads, and then lets go of the dense weight: **the tiles are the
only copy**. Prefill (many rows) is compute-bound instead: it goes to ``F.linear`` where
torch's GEMM is at least as fast (see :func:`kernel_row_limit`), on a dense weight unpacked
from the tiles for that call into a buffer each thread reuses (one weight at a time, never the
model).

``weight`` still reads as the dense [out, in] weight (unpacked on each read, so it is a copy:
write through ``load_state_dict`` or by assigning a new ``weight``, which the layer packs
again). The state dict, ``load_state_dict`` (written into the tiles in place) and ``.to()``
(unpacked, moved, packed again) see the dense weight as before. A tied model's embedding reads
its rows from the head's tiles (:meth:`CpuLinear.weight_rows`, ``qwen3core.tied_embedding``),
so the tied matrix too is held once. A dense weight that someone else still holds after the
layer lets go of it stays the layer's ``weight``; the tiles then follow it, repacked when it is
replaced or written.
"""

from __future__ import annotations

import math
import threading
import weakref
from collections.abc import Callable, Sequence

import torch
from qwen3core_backends.eager.linear import Linear, check_quantized_shape
from torch import nn
from torch.nn import functional as F

from qwen3core.memory import ReturnFreedEvery, drop_file_pages, is_file_mapped
from qwen3core.quant.schemes import QuantScheme
from qwen3core.quant.weight import QuantizedWeight

from .build import cpu_has_native_bf16, isa, load_kernels
from .huge_pages import rehome_huge_pages
from .quant_linear import PackedQuant, concat_packed, pack_quantized
from .tiles import (
    TILE,
    gather_rows,
    pack_in_blocks,
    pack_in_place,
    pack_weight,
    sole_owner,
    storage_tensor,
    store_weight,
    tile_shape,
    unpack_weight,
)

KERNEL_DTYPES = (torch.bfloat16, torch.float32)
#: Rows (batch x new tokens) up to which float32 goes to the kernel. Past it F.linear, on a
#: weight unpacked from the tiles for the call. Measured on AMD EPYC (Zen 4), one thread,
#: [3072, 1024], CPU time (docs/backends.md): with the AVX-512 kernels the kernel takes 22 ms at
#: 512 rows against 32 for unpack + F.linear (30 for F.linear on a dense weight; torch's MKL
#: runs AVX2 code on AMD), F.linear ahead only near 1024; with the AVX2 kernels
#: (QWEN3CORE_CPU_ISA=avx2) 14.7 against 16.4 at 256 rows, 32.4 against 30.2 at 512. (While a
#: dense twin was kept, F.linear read it and the limit was 32, equal on Zen 3 then.)
FLOAT32_KERNEL_ROWS = 512
FLOAT32_KERNEL_ROWS_AVX2 = 256
#: The same for bfloat16 on CPUs that multiply bfloat16 natively (AVX-512 BF16, AMX), whose
#: GEMM torch's oneDNN uses: there the kernel 1.19 ms at 64 rows against 1.49 for unpack +
#: F.linear, equal near 96, behind past it. Without native bfloat16 torch's GEMM stays near
#: 5 GMAC/s per core at every size on Zen 3 while the kernel runs at 28-45, so there the kernel
#: takes every input.
NATIVE_BF16_KERNEL_ROWS = 64


def kernel_row_limit(dtype: torch.dtype) -> int | None:
    """Most rows the kernel takes per call in ``dtype`` (None: no limit); more use F.linear."""
    if dtype == torch.float32:
        return FLOAT32_KERNEL_ROWS_AVX2 if isa() == "avx2" else FLOAT32_KERNEL_ROWS
    if dtype == torch.bfloat16:
        return NATIVE_BF16_KERNEL_ROWS if cpu_has_native_bf16() else None
    return 0  # not a kernel dtype


def pack_quantized_in_rows(weight: QuantizedWeight) -> PackedQuant:
    """``pack_quantized(weight)``. Its C++ operator writes the tiles straight from the int8
    levels, with no temporaries to bound: this name stays for its callers (it once packed a
    chunk of outputs at a time, to bound the int64 copies of the Python packing)."""
    return pack_quantized(weight)


#: Weights from this size on are packed in place when their memory is the layer's alone (a
#: head: 0.62 GiB of the 30B-A3B's that packing beside it would add to the load's peak).
#: Smaller ones are copied: in place, the 0.6B's layers raised its peak RSS (1.66 to 1.83
#: GiB, glibc keeping the blocks copied aside) for no gain.
IN_PLACE_MIN_BYTES = 64 * 2**20


def kernel_takes(x: torch.Tensor, weight: torch.Tensor, limit: int | None) -> bool:
    """Whether the kernel computes ``x @ weight.T`` (``weight`` dense or its tiles): a
    supported dtype on the CPU, at most ``limit`` rows (the dtype's :func:`kernel_row_limit`,
    looked up once by the caller: it asks the CPU, which torch.compile cannot trace)."""
    # Cheapest tests first: this runs before each of a decode step's ~57 dense products.
    return (x.dtype == weight.dtype and x.dtype in KERNEL_DTYPES and x.is_cpu and weight.is_cpu
            and (limit is None or math.prod(x.shape[:-1]) <= limit))


def _drop_pages_of(rows: torch.Tensor) -> None:
    drop_file_pages(rows.data_ptr(), rows.numel() * rows.element_size())


def packable(weight: torch.Tensor) -> bool:
    return weight.device.type == "cpu" and weight.dtype in KERNEL_DTYPES


def packed_linear(x: torch.Tensor, packed: torch.Tensor, out_features: int) -> torch.Tensor:
    return torch.ops.qwen3core_cpu.linear.default(x, packed, out_features)


def _identity(weight: torch.Tensor) -> tuple[int, int | None]:
    try:
        version = weight._version
    except RuntimeError:  # inference tensors have no version counter
        version = None
    return weight.data_ptr(), version


class CpuLinear(Linear):
    """The eager bias-free linear layer (same ``weight`` [out, in], same state dict) whose
    weight lives as the kernel's tiles once prepared; see the module docstring."""

    # Class defaults: Linear.__init__ assigns ``weight`` (through __setattr__ below) before
    # this class's __init__ body runs.
    tiles: torch.Tensor | None = None  # the packed weight; derived state, not a buffer
    _packed_from: tuple[int, int | None] | None = None  # the dense weight the tiles follow

    def __init__(self, in_features: int, out_features: int, *, dtype: torch.dtype,
                 device: torch.device):
        super().__init__(in_features, out_features, dtype=dtype, device=device)
        self.max_kernel_rows = kernel_row_limit(dtype)
        self.quant: PackedQuant | None = None  # set by load_quantized; not a buffer
        load_kernels()  # build the extension while the model is built, not mid-forward

    # -- the dense weight, read from wherever it lives ------------------------------------------
    @property
    def weight(self) -> torch.Tensor:
        """The dense weight: the parameter while the layer holds one, else unpacked from the
        tiles (a new tensor on each read)."""
        dense = self._parameters.get("weight")
        if dense is not None:
            return dense
        if self.tiles is None:  # quantized (load_quantized): no dense weight at all
            raise AttributeError(f"{type(self).__name__} holds a quantized weight, no `weight`")
        return unpack_weight(self.tiles, self.out_features, self.in_features)

    def __setattr__(self, name: str, value: object) -> None:
        # A new dense weight (tying, an assigning load_state_dict) becomes the layer's truth;
        # the tiles follow it on the next product. Registered directly: nn.Module's check
        # (hasattr) would read the property, unpacking the tiles only to refuse the name.
        if name == "weight" and isinstance(value, nn.Parameter):
            if self._parameters.get("weight") is not value:  # tie_weights again: no change
                self._parameters["weight"] = value
                self._packed_from = None
            return
        super().__setattr__(name, value)

    def weight_rows(self, ids: torch.Tensor) -> torch.Tensor:
        """``F.embedding(ids, weight)`` (:class:`qwen3core.contracts.WeightRows`): from the
        tiles when they are the only copy, so a tied model's embedding reads the head's tiles
        instead of keeping the dense matrix beside them (``qwen3core.tied_embedding``)."""
        dense = self._parameters.get("weight")
        if dense is not None:  # not packed yet, or a dtype the kernel does not take
            return F.embedding(ids, dense)
        if self.tiles is None:
            raise RuntimeError(f"{type(self).__name__} holds a quantized weight: its rows are "
                               "levels, not the embedding's values")
        if not torch.compiler.is_compiling() and ids.numel():
            low, high = (int(v) for v in torch.aminmax(ids))
            if low < 0 or high >= self.out_features:  # F.embedding's refusal, not a wrap
                raise IndexError(f"token ids must be in [0, {self.out_features}), got "
                                 f"{low}..{high}")
        # ~13 us for one id against F.embedding's 2 (0.6B, bfloat16): ~0.1 % of a decode step.
        return gather_rows(self.tiles, ids, self.in_features)

    @property
    def packed(self) -> torch.Tensor | None:
        return self.tiles

    def load_quantized(self, weight: QuantizedWeight) -> None:
        """Pack ``weight`` for the int8/int4 kernel (see :mod:`.quant_linear`) and drop the
        dense ``weight``: the packed levels are the only copy."""
        check_quantized_shape(self, weight)
        self.quant = pack_quantized_in_rows(weight)
        self._parameters.pop("weight", None)
        self.tiles = None

    def load_quantized_rows(self, scheme: QuantScheme,
                            rows: Callable[[slice], torch.Tensor]) -> None:
        """``load_quantized(quantize_rows(scheme, shape, rows))`` (the same packed weight),
        quantized and packed a chunk of rows at a time with the C++ operators: the whole
        weight's levels never exist at once (:mod:`.quantize_load`)."""
        from qwen3core.quant.apply import quantize_rows

        from .quantize_load import pack_rows

        shape = (self.out_features, self.in_features)
        packed = pack_rows(scheme, shape, rows)
        if packed is None:  # a chunk packs in another layout: the whole weight at once
            self.load_quantized(quantize_rows(scheme, shape, rows))
            return
        self.quant = packed
        self._parameters.pop("weight", None)
        self.tiles = None

    # -- packing ----------------------------------------------------------------------------------
    @torch.no_grad()
    def prepare_weights(self) -> None:
        """Pack the dense weight and let go of it (a fused group may already have packed it),
        then put the packed weight on huge pages (a fused group's stack, which this layer's
        weight is a view of, moves as a whole)."""
        dense = self._parameters.get("weight")
        if self.quant is None and dense is not None and packable(dense):
            stale = self.tiles is None or self._packed_from != _identity(dense)
            del dense  # no reference of ours may outlive the release
            self._release_dense(pack=stale)
        else:
            del dense
        held = ((self.quant.levels, self.quant.scales, self.quant.zeros) if self.quant is not None
                else (self.tiles,))
        rehome_huge_pages(held)

    def _release_dense(self, pack: bool = False) -> None:
        """Drop the dense weight (packing it first with ``pack``; else the tiles hold it). It is
        freed unless someone else holds it too (a tied embedding the model did not hand to the
        head, see ``qwen3core.tied_embedding``), and then it stays this layer's truth: keeping
        it costs nothing and the tiles follow it when it is written. A large weight whose memory
        is the layer's alone is packed in place; one mapped from a checkpoint, a block of rows
        at a time with each block's file pages dropped."""
        dense = self._parameters.pop("weight")
        storage = dense.untyped_storage()  # keeps the memory, not the parameter, alive
        where = (dense.storage_offset(), tuple(dense.shape), dense.dtype)
        span = (dense.data_ptr(), dense.numel() * dense.element_size(),
                dense.device.type == "cpu" and dense.is_contiguous())
        in_place = (span[2] and span[1] >= IN_PLACE_MIN_BYTES and dense.shape[0] % TILE == 0
                    and dense.shape[1] % 2 == 0)
        held_elsewhere = weakref.ref(dense)
        del dense
        held_elsewhere = held_elsewhere()
        if held_elsewhere is not None:
            if pack:
                self.tiles = pack_weight(held_elsewhere)
            self._parameters["weight"] = held_elsewhere
            self._packed_from = _identity(held_elsewhere)
            return
        self._packed_from = None
        mapped = span[2] and is_file_mapped(*span[:2])
        if pack and in_place and sole_owner(storage) and not mapped:
            self.tiles = pack_in_place(storage, *where)
            return
        if pack and mapped:
            # A block of rows at a time, each block's file pages dropped once packed: the
            # 0.6B's tied head (0.29 GiB) was read whole beside its tiles, the load's peak.
            self.tiles = pack_in_blocks(storage_tensor(storage, *where), _drop_pages_of)
        elif pack:
            self.tiles = pack_weight(storage_tensor(storage, *where))
        # A checkpoint mapped from its file: its pages would stay resident as long as the
        # mapping (another weight in the file) lives. No-op for memory of our own.
        if span[2]:
            drop_file_pages(span[0], span[1])
        del storage

    def current_tiles(self) -> torch.Tensor | None:
        """The tiles of the current weight (None where the kernel cannot take it: another
        dtype or device, quantized). A layer still holding its dense weight packs it here
        (prepare_weights, first call) or repacks after the weight was replaced or written."""
        dense = self._parameters.get("weight")
        if dense is None or torch.compiler.is_compiling():
            return self.tiles  # compiled models are prepared before they run
        if not packable(dense):
            return None
        if self.tiles is None or self._packed_from != _identity(dense):
            self.tiles = None  # a copy packed from an older weight: no longer this weight
            del dense  # no reference of ours may outlive prepare_weights' release
            self.prepare_weights()
        return self.tiles

    def packing_source(self) -> torch.Tensor | None:
        """What packs this layer's current weight: its tiles when they are current, else its
        dense weight; None when the kernel cannot take it."""
        dense = self._parameters.get("weight")
        if dense is None:
            return self.tiles
        if not packable(dense):
            return None
        if self.tiles is not None and self._packed_from == _identity(dense):
            return self.tiles
        return dense

    def _adopt_tiles(self, tiles: torch.Tensor) -> None:
        """Take ``tiles`` (a view into a fused group's stack, holding this layer's current
        weight) as this layer's, dropping a separate copy."""
        self.tiles = tiles
        if "weight" in self._parameters:
            self._packed_from = _identity(self._parameters["weight"])
            self._release_dense()

    # -- the dense weight's contracts: state dict, loading, moves ---------------------------------
    def _save_to_state_dict(self, destination, prefix, keep_vars) -> None:
        super()._save_to_state_dict(destination, prefix, keep_vars)
        if "weight" not in self._parameters and self.tiles is not None:
            destination[prefix + "weight"] = self.weight  # unpacked: a checkpoint's weight

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs) -> None:
        if "weight" in self._parameters or self.tiles is None:
            super()._load_from_state_dict(state_dict, prefix, local_metadata, strict,
                                          missing_keys, unexpected_keys, error_msgs)
            return
        # torch checks the entry (shape, missing, unexpected) against a dense stand-in (no
        # values: only a loaded entry is used); what it loaded is then written into the tiles
        # in place, where a fused group's stack sees it.
        stand_in = torch.empty(self.out_features, self.in_features, dtype=self.tiles.dtype,
                               device=self.tiles.device)
        self._parameters["weight"] = nn.Parameter(stand_in, requires_grad=False)
        errors_before = len(error_msgs)
        try:
            super()._load_from_state_dict(state_dict, prefix, local_metadata, strict,
                                          missing_keys, unexpected_keys, error_msgs)
        finally:
            loaded = self._parameters.pop("weight")
        self._packed_from = None
        if prefix + "weight" in state_dict and len(error_msgs) == errors_before:
            if loaded.dtype == self.tiles.dtype and loaded.device == self.tiles.device:
                store_weight(self.tiles, loaded)
            else:  # an assigning load in another dtype or device: that is the weight now
                self._parameters["weight"] = loaded
                self.tiles = None
                del loaded  # no reference of ours may outlive prepare_weights' release
                self.prepare_weights()

    def _apply(self, fn, recurse=True):
        if "weight" in self._parameters or self.tiles is None:
            return super()._apply(fn, recurse)
        # .to(), .float(), ...: move or convert the dense weight, then pack it again (the
        # layout depends on the dtype). A fused group notices its stack was left and restacks.
        self._parameters["weight"] = nn.Parameter(self.weight, requires_grad=False)
        self.tiles = None
        super()._apply(fn, recurse)
        self.prepare_weights()
        return self

    @classmethod
    def fuse(cls, layers: Sequence[CpuLinear]) -> FusedCpuLinear | FusedQuantLinear | None:
        """One packed weight for ``layers`` (see :class:`~qwen3core.contracts.FusedLinear`)."""
        if any(layer.quant is not None for layer in layers):
            return FusedQuantLinear.fuse(layers)
        return FusedCpuLinear.fuse(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.quant is not None:
            return self.quant(x, self.out_features)
        tiles = self.current_tiles()
        if tiles is not None and kernel_takes(x, tiles, self.max_kernel_rows):
            return packed_linear(x, tiles, self.out_features)
        dense = self._parameters.get("weight")
        if dense is None:  # unpacked for this call only, into this thread's scratch
            dense = unpack_weight(self.tiles, self.out_features, self.in_features,
                                  into=_unpack_scratch(self.tiles))
        return F.linear(x, dense)


#: Weights up to this size are unpacked for a many-row product (prefill past the kernel's row
#: limit) into one buffer per thread, kept between calls. A fresh tensor per call made glibc
#: keep up to ~0.17 GiB of them resident after a batch-8 prefill of the 0.6B, a different
#: amount each run (high-water mark 1.53-1.60 GiB after the load's 1.42); larger ones (an LM
#: head's 0.3-1.2 GiB) are mapped and unmapped by glibc as they come and go.
UNPACK_SCRATCH_MAX_BYTES = 32 * 2**20
_scratch = threading.local()


def _unpack_scratch(tiles: torch.Tensor) -> torch.Tensor | None:
    """This thread's unpack buffer, grown to hold ``tiles``' weight (None for a weight above
    :data:`UNPACK_SCRATCH_MAX_BYTES`, or while compiling: a traced graph must not capture it)."""
    nbytes = tiles.numel() * tiles.element_size()
    if nbytes > UNPACK_SCRATCH_MAX_BYTES or tiles.device.type != "cpu" or \
            torch.compiler.is_compiling():
        return None
    held = getattr(_scratch, "buffer", None)
    if held is None or held.numel() < nbytes:
        held = _scratch.buffer = torch.empty(nbytes, dtype=torch.uint8)
    return held


class FusedCpuLinear:
    """Layers that read one input, packed as one weight (their outputs stacked): one kernel
    call per step for q/k/v or gate/up. Not a module: the layers keep their weights, each
    layer's tiles being a view into the stack, so the weights are still held once."""

    def __init__(self, layers: Sequence[CpuLinear]):
        self.layers = list(layers)
        self.out_features = sum(layer.out_features for layer in layers)
        self.max_kernel_rows = layers[0].max_kernel_rows
        self.stack: torch.Tensor | None = None
        self.views: list[torch.Tensor] = []
        self.restack()

    @classmethod
    def fuse(cls, layers: Sequence[CpuLinear]) -> FusedCpuLinear | None:
        """None (the layers are then called one by one) unless every layer fills whole tiles
        (each one's tiles must be a slice of the stack) in one packable dtype."""
        held = [layer._parameters.get("weight", layer.tiles) for layer in layers]
        if any(w is None or not packable(w) or w.dtype != held[0].dtype for w in held):
            return None
        if any(layer.out_features % TILE or layer.in_features % 2 for layer in layers):
            return None
        return cls(layers)

    @torch.no_grad()
    def restack(self) -> bool:
        """(Re)build the stack from the layers' current weights, each written straight into
        its place, and make each layer's tiles a view into it (dropping its own copy); False
        (no stack) while a layer's weight cannot be packed."""
        sources = [layer.packing_source() for layer in self.layers]
        if any(s is None or s.dtype != sources[0].dtype or s.device != sources[0].device
               for s in sources):
            self.stack, self.views = None, []
            return False
        counts = [layer.out_features // TILE for layer in self.layers]
        self.stack = torch.empty(sum(counts), *tile_shape(sources[0].dtype,
                                                          self.layers[0].in_features),
                                 dtype=sources[0].dtype, device=sources[0].device)
        self.views, start = [], 0
        for i, (layer, count) in enumerate(zip(self.layers, counts)):
            view = self.stack[start:start + count]
            start += count
            if sources[i] is layer.tiles:
                view.copy_(sources[i])
            else:
                store_weight(view, sources[i])
            sources[i] = None  # the layer's dense weight must be free to go (_release_dense)
            layer._adopt_tiles(view)
            self.views.append(view)
        return True

    def current(self) -> torch.Tensor | None:
        """The stack, rebuilt first when a layer's weight is no longer in it (a new weight
        assigned or written, the layer moved or converted)."""
        if torch.compiler.is_compiling():
            return self.stack
        if self.stack is None or any(layer.packing_source() is not view
                                     for layer, view in zip(self.layers, self.views)):
            self.restack()
        return self.stack

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        stack = self.current()
        if stack is not None and kernel_takes(x, stack, self.max_kernel_rows):
            return packed_linear(x, stack, self.out_features)
        # Prefill: each layer's own product (each weight unpacked in turn), exactly the
        # layers called one by one.
        return torch.cat([layer(x) for layer in self.layers], dim=-1)


#: Returns the memory of fused parts every this many bytes stacked (see FusedQuantLinear.fuse).
_FUSED_PARTS_FREED = ReturnFreedEvery(64 * 2**20)


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
        # The parts are freed now, each smaller than the next group's stack: glibc keeps them
        # resident (the 0.6B int8's fusions added 0.17 GiB to its load's peak) unless returned.
        _FUSED_PARTS_FREED.freed(stacked.nbytes)
        return cls(stacked, sum(outs))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.packed(x, self.out_features)
