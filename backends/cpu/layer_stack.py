"""Every layer of a model's decode step in one operator call (see
qwen3core.fusion.fuse_decoder_stack).

With each layer fused (:mod:`.layer_step`), a decode step still goes back to Python between
layers: the layer's module call, the KV cache's ``update``, two operator calls that each
convert a layer's tensor lists. In a step whose weight reads have evicted the interpreter's own
memory from the caches that cost ~60 us a layer (0.6B, int4, 2 threads: 9.5 ms of layers
against 7.8 ms inside the operators). ``qwen3core_cpu::decode_stack`` (csrc/layer_op.cpp)
runs every layer's two calls back to back in C++ and writes the new keys and values into the
buffers the storage hands out (the ``KVCache``'s optional ``layer_buffers``: the eager
``dynamic`` and ``static`` storages have it) exactly where its ``update`` would. The
operators and their arguments are the per-layer ones, so the numbers are the modules' bit
for bit (tests/backends/test_cpu_layer_step.py).

A MoE layer's block (the cpu backend's ``CpuMoE``) runs there too: its router product, the
routing (softmax, top-k, renormalisation: the same ATen operators as
``qwen3core_backends.eager.moe.route``) and ``moe_experts``. Taken when every layer's fused step
runs its MLP or MoE block in C++ (cpu components throughout) and the storage has
``layer_buffers``; a step the layers would decline (prefill-sized, another
dtype, tracing by torch.compile) is declined here too and the layers run one by one.
"""

from __future__ import annotations

import torch

from qwen3core.contracts import AttentionBatch, KVCache

from .layer_step import CpuLayerStep, takes


class CpuLayerStack:
    """``(x, residual, batch, storage) -> (x, residual)`` through every layer, or None for a
    step it declines. Holds the layers' fused steps, whose lists it gathers into one
    ``torch.classes.qwen3core_cpu.LayerStack``, made again when any of them changed."""

    def __init__(self, steps: list[CpuLayerStep]):
        self.steps = steps
        self.stack = None
        self.made_from: list[tuple] = []

    @classmethod
    def fuse(cls, layers) -> CpuLayerStack | None:
        steps = [layer.step for layer in layers]
        if any(type(step) is not CpuLayerStep or (step.mlp_in_python and step.moe is None)
               for step in steps):
            return None  # another MLP or MoE block runs as its module between the layers
        return cls(steps)

    def _stack(self, dtype: torch.dtype):
        arguments = [step._arguments(dtype) for step in self.steps]
        if any(a is None for a in arguments):
            return None
        if self.stack is not None and all(a is b for a, b in zip(arguments, self.made_from)):
            return self.stack
        # Per layer the lengths of its nine lists (in weights, meta, reals; out ...; MoE ...).
        weights, meta, reals, counts = [], [], [], []
        for layer in arguments:
            for tensors, ints, floats in layer:
                weights += tensors
                meta += ints
                reals += floats
                counts += [len(tensors), len(ints), len(floats)]
        self.stack = torch.classes.qwen3core_cpu.LayerStack(weights, meta, reals, counts)
        self.made_from = arguments
        return self.stack

    def __call__(self, x: torch.Tensor, residual: torch.Tensor | None, batch: AttentionBatch,
                 storage: KVCache) -> tuple[torch.Tensor, torch.Tensor] | None:
        if not takes(x, residual):
            return None
        layer_buffers = getattr(storage, "layer_buffers", None)
        if layer_buffers is None:
            return None
        stack = self._stack(x.dtype)
        if stack is None:
            return None
        buffers = layer_buffers(batch.length)
        if buffers is None:
            return None
        keys, values = buffers
        length = -1 if storage.returns_full_capacity else batch.length
        return torch.ops.qwen3core_cpu.decode_stack(stack, x, residual, batch.positions,
                                                    batch.mask, batch.start, length, keys, values)
