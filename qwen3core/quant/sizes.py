"""Weight bytes of a model shape per quantization scheme: resident, and read per decoded token.

Counted from the spec alone (no weights loaded). A decode step reads every projection of the
dense layers, the router and the ``num_experts_per_tok`` routed experts of each MoE layer, the
LM head and the norms; the embedding contributes one row. Quantized projections count their
levels, scales and zero points (:meth:`QuantScheme.nbytes`); the rest is in ``dtype``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from qwen3core.dtypes import bytes_per_element
from qwen3core.quant.schemes import QuantScheme
from qwen3core.spec import Qwen3Spec


@dataclass(frozen=True)
class WeightBytes:
    resident: int
    per_token: int


def _projections(spec: Qwen3Spec, layer: int, active_only: bool) -> list[tuple[int, int]]:
    e, d = spec.hidden_size, spec.head_dim
    shapes = [(spec.num_attention_heads * d, e), (spec.num_key_value_heads * d, e),
              (spec.num_key_value_heads * d, e), (e, spec.num_attention_heads * d)]
    if spec.is_sparse_layer(layer):
        experts = spec.num_experts_per_tok if active_only else spec.num_experts
        i = spec.moe_intermediate_size
        shapes += [(i, e), (i, e), (e, i)] * experts
    else:
        i = spec.intermediate_size
        shapes += [(i, e), (i, e), (e, i)]
    return shapes


def weight_bytes(spec: Qwen3Spec, dtype: torch.dtype, scheme: QuantScheme | None = None,
                 quantize_head: bool = False) -> WeightBytes:
    dense = bytes_per_element(dtype)

    def size(out: int, inp: int, quantized: bool) -> int:
        return scheme.nbytes(out, inp) if quantized and scheme is not None else out * inp * dense

    e, v = spec.hidden_size, spec.vocab_size
    norms = (spec.num_hidden_layers * (2 * e + 2 * spec.head_dim) + e) * dense
    routers = sum(spec.num_experts * e * dense for i in range(spec.num_hidden_layers)
                  if spec.is_sparse_layer(i))
    head = size(v, e, quantize_head)
    embed = v * e * dense
    resident_head = head if (quantize_head or not spec.tie_word_embeddings) else 0
    all_layers = sum(size(o, i, True) for n in range(spec.num_hidden_layers)
                     for o, i in _projections(spec, n, False))
    active = sum(size(o, i, True) for n in range(spec.num_hidden_layers)
                 for o, i in _projections(spec, n, True))
    return WeightBytes(resident=all_layers + routers + norms + embed + resident_head,
                       per_token=active + routers + norms + head + e * dense)


def kv_cache_bytes_per_token(spec: Qwen3Spec, dtype: torch.dtype) -> int:
    """Bytes one position of one sequence holds in the KV cache: keys and values of every layer."""
    return (2 * spec.num_hidden_layers * spec.num_key_value_heads * spec.head_dim
            * bytes_per_element(dtype))
