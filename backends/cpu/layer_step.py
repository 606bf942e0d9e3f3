"""A decoder layer's decode step in two operator calls (see qwen3core.fusion.fuse_decoder_layer).

Unfused, the cpu backend's modules make ~60 calls per layer and decode step from Python (norms,
products, the q/k norm and rotation, attention, views, splits), each paying Python, the
dispatcher and an allocation: the 0.6B's 28 layers spent ~2.7 ms a step outside their products
(measured at a tiny hidden size, where the products cost nothing). Here the layer runs as
``qwen3core_cpu::layer_attention_in``, the KV cache's own ``update`` (the kv_cache component's
contract, whatever implementation is selected), and ``qwen3core_cpu::layer_attention_out``
(csrc/layer_op.cpp), which call the very operators the modules call, in the same order on the
same views: the same numbers bit for bit (tests/backends/test_cpu_layer_step.py); int4 with the
head quantized, 12.2 -> 11.4 ms a step.

Offered by :class:`~.norm.CpuRMSNorm` (the layer's input norm) for layers whose parts are all
this backend's: cpu norms, q/k/v fused and normed-and-rotated in one call, cpu attention and
cpu linears (dense tiles or quantized). The cpu MLP with gate/up fused runs in the second call;
any other MLP, and every MoE block, runs as its module after it (the stacked step of
:mod:`.layer_stack` runs the cpu MoE block in C++ too). A step the operators would not take
(prefill-sized, another dtype or device, a cache whose views the attention loop does not take,
tracing by torch.compile) is declined and the layer runs its modules, with the same numbers.
"""

from __future__ import annotations

import operator
from collections.abc import Callable

import torch

from qwen3core.contracts import AttentionBatch, KVCache

from .attention import MAX_QUERY_TOKENS, cpu_attention
from .build import load_kernels
from .linear import KERNEL_DTYPES, CpuLinear, FusedCpuLinear, FusedQuantLinear
from .mlp import CpuSwiGLU
from .moe import CpuMoE
from .quant_linear import PackedQuant
from .rope import CpuNormRotary

#: Product kinds of csrc/layer_op.cpp.
DENSE, QUANT, QUANT_A8 = 0, 1, 2

#: One product as csrc/layer_op.cpp reads it: its tensors, its five ints (kind, tensor count,
#: out_features, bits, group_size) and its zero point.
ProductArgs = tuple[list[torch.Tensor], list[int], float]


def product_args(weight: torch.Tensor | PackedQuant, out_features: int) -> ProductArgs:
    """The packed weight and the operator the unfused module calls with it: ``linear`` for
    dense tiles, ``qlinear`` / ``qlinear_a8`` for quantized levels."""
    if isinstance(weight, torch.Tensor):
        return [weight], [DENSE, 1, out_features, 0, 0], 0.0
    tensors = [weight.levels, weight.scales, weight.zeros]
    if weight.act_block is not None:
        kind = QUANT_A8
    else:
        kind = QUANT
        if weight.perm is not None:
            tensors.append(weight.perm)
    return (tensors, [kind, len(tensors), out_features, weight.bits, weight.group_size],
            float(weight.zero_const))


class ProductOperand:
    """One product's packed weight: ``current()`` returns what the module would multiply by
    now (its weight reloaded, moved, converted or repacked included), or None where its kernel
    would not run."""

    def __init__(self, current: Callable[[], torch.Tensor | PackedQuant | None],
                 out_features: int):
        self.current, self.out_features = current, out_features

    def args(self, weight: torch.Tensor | PackedQuant | None, dtype: torch.dtype
             ) -> ProductArgs | None:
        if weight is None or (isinstance(weight, torch.Tensor) and weight.dtype is not dtype):
            return None  # the module's kernel would not take it (it runs F.linear)
        return product_args(weight, self.out_features)


def _operand(linear) -> ProductOperand | None:
    """The operand of a cpu linear, a fused q/k/v or gate/up, or None for anything else."""
    if isinstance(linear, FusedQuantLinear):
        return ProductOperand(lambda: linear.packed, linear.out_features)
    if isinstance(linear, FusedCpuLinear):
        if not _rows_fit(linear.max_kernel_rows):
            return None
        return ProductOperand(linear.current, linear.out_features)
    if type(linear) is CpuLinear:
        if linear.quant is None and not _rows_fit(linear.max_kernel_rows):
            return None
        return ProductOperand(lambda: linear.quant if linear.quant is not None
                              else linear.current_tiles(), linear.out_features)
    return None


def takes(x: torch.Tensor, residual: torch.Tensor | None) -> bool:
    """Whether a fused step runs these inputs as the modules would run their operators: a
    decode-sized CPU step in a kernel dtype, outside torch.compile's tracing."""
    if (x.shape[0] * x.shape[1] > MAX_QUERY_TOKENS or x.dtype not in KERNEL_DTYPES
            or not x.is_cpu or torch.compiler.is_compiling()):
        return False
    return residual is None or (residual.dtype is x.dtype and residual.shape == x.shape)


def _rows_fit(limit: int | None) -> bool:
    # The dense kernel takes up to ``limit`` rows; every step this fusion takes has at most
    # MAX_QUERY_TOKENS, so the unfused module would run the kernel too.
    return limit is None or limit >= MAX_QUERY_TOKENS


class CpuLayerStep:
    """``(x, residual, batch, storage) -> (x, residual)`` for one decoder layer, as
    :meth:`qwen3core.model.DecoderLayer.forward` computes it, or None for a step it declines.
    Holds the modules, not their tensors: weights loaded or repacked later are the ones used."""

    def __init__(self, layer, qkv: ProductOperand, o_proj: ProductOperand,
                 gate_up: ProductOperand | None, down: ProductOperand | None):
        attn = layer.self_attn
        self.layer, self.attn = layer, attn
        self.mlp_in_python = gate_up is None
        self.operands = [qkv, o_proj] + ([] if self.mlp_in_python else [gate_up, down])
        # The cpu MoE block (and its router, the last operand), which the stacked step runs in
        # C++ too; None for any other block, or a router the kernels do not run.
        router = _operand(layer.mlp.gate) if type(layer.mlp) is CpuMoE else None
        self.moe = layer.mlp if router is not None else None
        if router is not None:
            self.operands.append(router)
        self.q_size, self.kv_size = attn.qkv_sizes[0], attn.qkv_sizes[1]
        self.cached: tuple | None = None  # (what the lists were made from, the lists)
        # Where the step's small tensors live: read each step from these dictionaries (the
        # modules' own), so a parameter reassigned or converted later is the one used.
        norms = attn.norm_rotary
        self.tensor_homes = (layer.input_layernorm._parameters, norms.q_norm._parameters,
                             norms.k_norm._parameters, norms.rotary._buffers,
                             layer.post_attention_layernorm._parameters)
        load_kernels()

    @classmethod
    def fuse(cls, layer) -> CpuLayerStep | None:
        attn = layer.self_attn
        if layer.is_parallel or type(layer.post_attention_layernorm) is not type(
                layer.input_layernorm):
            return None  # a sharded layer sums partial outputs across ranks between the calls
        if attn.qkv is None or type(attn.norm_rotary) is not CpuNormRotary:
            return None
        if attn.attend is not cpu_attention:
            return None
        if layer.input_layernorm.eps != layer.post_attention_layernorm.eps:
            return None
        qkv, o_proj = _operand(attn.qkv), _operand(attn.o_proj)
        if qkv is None or o_proj is None:
            return None
        gate_up = down = None
        if type(layer.mlp) is CpuSwiGLU and layer.mlp.gate_up is not None:
            gate_up, down = _operand(layer.mlp.gate_up), _operand(layer.mlp.down_proj)
            if gate_up is None or down is None:
                gate_up = down = None
        # Any other MLP or MoE block runs as its module after the fused attention half.
        return cls(layer, qkv, o_proj, gate_up, down)

    def fuse_stack(self, layers):
        """Every layer as one operator call per decode step (see
        qwen3core.fusion.fuse_decoder_stack), or None where a layer's MLP runs in Python."""
        from .layer_stack import CpuLayerStack  # imports this module

        return CpuLayerStack.fuse(layers)

    def _arguments(self, dtype: torch.dtype) -> tuple | None:
        """The two operators' lists, made again when anything they were made from changed (a
        tensor reassigned or converted, a weight repacked); None where a module would not run
        its operator. Called on every step of every layer, hence the plain dictionary reads
        and one identity comparison for the common case: nothing changed."""
        params = self.tensor_homes
        tensors = (params[0]["weight"], params[1]["weight"], params[2]["weight"],
                   params[3]["inv_freq"], params[4]["weight"])
        weights = [op.current() for op in self.operands]
        experts = self._experts()
        key = (dtype, *tensors, *(t.dtype for t in tensors), *weights, *experts)
        cached = self.cached
        if cached is not None and all(map(operator.is_, cached[0], key)):
            return cached[1]
        self.cached = None
        if any(t.dtype is not dtype for t in tensors[:3] + tensors[4:]):
            return None  # the modules would take their torch fallbacks
        products = [op.args(weight, dtype) for op, weight in zip(self.operands, weights)]
        if any(p is None for p in products):
            return None
        layer, attn = self.layer, self.attn
        q_norm, rotary = attn.norm_rotary.q_norm, attn.norm_rotary.rotary
        moe = ([], [], [])
        if self.moe is not None:
            *products, (router_t, router_m, router_z) = products
            if experts[0] is None:
                return None
            moe = ([*router_t, *experts[2:]],
                   [*router_m, self.moe.top_k, int(self.moe.norm_topk_prob),
                    self.moe.first_expert, *experts[:2], self.moe.intermediate_size],
                   [router_z])
        (qkv_t, qkv_m, qkv_z), *out_products = products
        arguments = (
            ([*tensors[:4], *qkv_t], [self.q_size, self.kv_size, attn.head_dim, *qkv_m],
             [layer.input_layernorm.eps, q_norm.eps, rotary.scale, qkv_z]),
            ([tensors[4], *(t for p in out_products for t in p[0])],
             [len(out_products), *(i for p in out_products for i in p[1])],
             [attn.scale, layer.post_attention_layernorm.eps, *(p[2] for p in out_products)]),
            moe)
        self.cached = (key, arguments)
        return arguments

    def _experts(self) -> tuple:
        """The MoE block's expert operands (``CpuMoE.expert_operands``), () for a dense layer,
        (None,) while the block has none (not prepared)."""
        if self.moe is None:
            return ()
        return self.moe.expert_operands() or (None,)

    def __call__(self, x: torch.Tensor, residual: torch.Tensor | None, batch: AttentionBatch,
                 storage: KVCache) -> tuple[torch.Tensor, torch.Tensor] | None:
        if not takes(x, residual):
            return None
        b, s = x.shape[0], x.shape[1]
        arguments = self._arguments(x.dtype)
        if arguments is None:
            return None
        (in_weights, in_meta, in_reals), (out_weights, out_meta, out_reals), _ = arguments
        layer, attn = self.layer, self.attn
        q, k, v, residual = torch.ops.qwen3core_cpu.layer_attention_in(
            x, residual, in_weights, in_meta, in_reals, batch.positions)
        k, v = storage.update(attn.layer_idx, batch.start, k, v, batch.length)
        if k.stride(-1) != 1 or v.stride(-1) != 1:
            # The attention loop takes unit-stride heads only (cpu_attention sends others to
            # SDPA): finish the layer with its modules, exactly as unfused.
            out = attn.attend(q, k, v, batch, attn.scale)
            out = attn.reduce(attn.o_proj(out.transpose(1, 2).reshape(b, s, -1)))
            h, residual = layer.post_attention_layernorm(out, residual)
            return layer.reduce(layer.mlp(h)), residual
        h, residual = torch.ops.qwen3core_cpu.layer_attention_out(
            q, k, v, batch.mask, residual, out_weights, out_meta, out_reals)
        if self.mlp_in_python:
            h = layer.reduce(layer.mlp(h))
        return h, residual
