"""Every plugin hook of qwen3core, in one place.

A backend plugin is a module (or object) with functions decorated by ``qwen3core.hookimpl``
whose names are the hooks below. Each hook returns one
:class:`~qwen3core.contracts.Implementation` of its component, a list of them, or None. Results
of all plugins are combined into one registry; two implementations with the same component and
name are an error, never a silent override.

Hooks are called once, when the registry is built; a model's ``forward`` never calls pluggy.
The factory signatures per component are documented on
:class:`~qwen3core.contracts.Implementation`.
"""

from __future__ import annotations

from collections.abc import Iterable

import pluggy

from qwen3core.contracts import Implementation

PROJECT = "qwen3core"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

Provided = Implementation | Iterable[Implementation] | None


@hookspec
def qwen3core_attention() -> Provided:
    """Attention implementations.

    Factory ``(ctx) -> fn(q, k, v, batch, scale)`` with q [B, H_q, S, D], k/v [B, H_kv, T, D]
    and ``batch`` an :class:`~qwen3core.contracts.AttentionBatch` whose boolean ``mask``
    [B, 1, S, T] must be honoured. Returns [B, H_q, S, D].
    """


@hookspec
def qwen3core_norm() -> Provided:
    """RMSNorm implementations.

    Factory ``(ctx, dim, eps) -> module`` with a ``weight`` [dim] parameter; computes in float32,
    casts to the input dtype, then multiplies by the weight. Used for the layer norms, the final
    norm and the per-head q/k norms.
    """


@hookspec
def qwen3core_rope() -> Provided:
    """Rotary position embedding implementations.

    Factory ``(ctx) -> fn(q, k, positions)`` rotating q [B, H_q, S, D] and k [B, H_kv, S, D] at
    integer ``positions`` [B, S] with ``ctx.spec.rope_theta`` ("rotate half" layout).
    """


@hookspec
def qwen3core_kv_cache() -> Provided:
    """Key/value cache storage implementations.

    Factory ``(ctx, batch_size, capacity) -> KVCache`` (see
    :class:`~qwen3core.contracts.KVCache`); ``capacity`` is the number of slots the request
    needs (prompt + new tokens), so preallocating storage can size itself from it.
    """


@hookspec
def qwen3core_linear() -> Provided:
    """Bias-free linear layer implementations (all projections and the LM head).

    Factory ``(ctx, in_features, out_features) -> module`` with a ``weight`` [out, in]
    parameter, mapping [..., in] -> [..., out].
    """


@hookspec
def qwen3core_mlp() -> Provided:
    """Dense SwiGLU MLP implementations: ``down(silu(gate(x)) * up(x))``.

    Factory ``(ctx, hidden_size, intermediate_size) -> module`` with ``gate_proj``, ``up_proj``
    and ``down_proj`` submodules (checkpoint key names); build them with ``ctx.linear``.
    """


@hookspec
def qwen3core_moe() -> Provided:
    """Mixture-of-Experts block implementations (router and routed SwiGLU experts).

    Factory ``(ctx) -> module`` mapping [B, S, E] -> [B, S, E] whose state dict accepts the
    checkpoint keys ``gate.weight`` and ``experts.{e}.{gate,up,down}_proj.weight``. Router
    softmax in float32 over all experts, top-k, renormalise iff ``ctx.spec.norm_topk_prob``.
    """


@hookspec
def qwen3core_runner() -> Provided:
    """Step runners: how the model's prefill and decode steps are executed.

    Factory ``(ctx) -> wrap(step, phase)`` returning a callable with the step's signature;
    ``phase`` is "prefill" or "decode". The eager runner returns ``step`` unchanged; a
    compiling runner returns a compiled version.
    """


HOOK_FOR_COMPONENT = {
    "attention": "qwen3core_attention",
    "norm": "qwen3core_norm",
    "rope": "qwen3core_rope",
    "kv_cache": "qwen3core_kv_cache",
    "linear": "qwen3core_linear",
    "mlp": "qwen3core_mlp",
    "moe": "qwen3core_moe",
    "runner": "qwen3core_runner",
}


@hookspec
def qwen3core_quant_scheme():
    """Quantization schemes: a :class:`~qwen3core.quant.schemes.SchemeFamily` or a list.

    Not a model component: a scheme says how weights are quantized and stored, and every
    ``linear`` implementation with ``load_quantized`` (see
    :class:`~qwen3core.quant.weight.QuantizedLinearModule`) runs it. See docs/hooks.md.
    """
