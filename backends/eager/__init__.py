"""The eager backend: the readable reference implementation of every component.

Provides attention (GQA, explicit mask), RMSNorm, rotary embeddings, a growing KV cache, the
plain linear layer, the SwiGLU MLP, the MoE block and the eager runner. Needs only torch, works
on every device and dtype, and is what every other backend is proven equal to.
"""

from qwen3core import Implementation, hookimpl

from .attention import eager_attention
from .kv_cache import DynamicKVCache
from .linear import Linear
from .mlp import SwiGLU
from .moe import EagerMoE
from .norm import RMSNorm
from .rope import EagerRotary


def _run_as_is(step, phase):
    return step


@hookimpl
def qwen3core_attention():
    return Implementation("attention", "eager", lambda ctx: eager_attention,
                          summary="matmul + float32 softmax, the reference",
                          supports_autograd=True)


@hookimpl
def qwen3core_norm():
    return Implementation(
        "norm", "eager",
        lambda ctx, dim, eps: RMSNorm(dim, eps, dtype=ctx.dtype, device=ctx.device),
        summary="RMSNorm in float32, cast, then weight", supports_autograd=True)


@hookimpl
def qwen3core_rope():
    return Implementation("rope", "eager",
                          lambda ctx: EagerRotary(ctx.spec.head_dim, ctx.spec.rope_theta,
                                                  ctx.spec.rope_scaling),
                          summary="rotate-half RoPE, cos/sin in float32", supports_autograd=True)


@hookimpl
def qwen3core_kv_cache():
    return Implementation(
        "kv_cache", "dynamic",
        lambda ctx, batch_size, capacity: DynamicKVCache(ctx.spec.num_hidden_layers, capacity),
        summary="grows in place (doubling buffers), returns the written slots",
        supports_autograd=True)


@hookimpl
def qwen3core_linear():
    return Implementation(
        "linear", "eager",
        lambda ctx, i, o: Linear(i, o, dtype=ctx.dtype, device=ctx.device),
        summary="torch.nn.functional.linear", supports_autograd=True)


@hookimpl
def qwen3core_mlp():
    return Implementation("mlp", "eager", SwiGLU, summary="down(silu(gate(x)) * up(x))",
                          supports_autograd=True)


@hookimpl
def qwen3core_moe():
    return Implementation("moe", "eager", EagerMoE,
                          summary="loop over experts, float32 router, ordered sum",
                          supports_autograd=True)


@hookimpl
def qwen3core_runner():
    return Implementation("runner", "eager", lambda ctx: _run_as_is,
                          summary="runs steps as plain Python", supports_autograd=True)


@hookimpl
def qwen3core_quant_scheme():
    # The first-party schemes; their numerics are the eager linear's load_quantized path.
    from qwen3core.quant.schemes import INT4, INT8, W4A8, W8A8

    return [INT8, INT4, W8A8, W4A8]
