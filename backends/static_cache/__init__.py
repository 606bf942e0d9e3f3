"""The ``static`` KV cache: buffers for the whole request allocated once per batch.

Provides ``kv_cache`` "static". Needs only torch; works on every device and dtype. Its
``update`` returns every slot, so the shapes attention sees do not change from step to step,
which is what lets a compiled decode step be reused (see ``qwen3core.cache.Cache``). It trades
memory for that: the buffers hold the request's full capacity from the first step, and
attention reads every slot (masked) at every step. Selected by name; the growing ``dynamic``
cache stays the default.
"""

from qwen3core import Implementation, hookimpl

from .kv_cache import StaticKVCache

#: Capacities are rounded up to a multiple of this many slots, so that requests whose prompt +
#: new tokens differ a little reuse the same compiled decode step.
CAPACITY_MULTIPLE = 64


def _build(ctx, batch_size: int, capacity: int) -> StaticKVCache:
    spec = ctx.spec
    return StaticKVCache(spec.num_hidden_layers, batch_size, spec.num_key_value_heads, capacity,
                         spec.head_dim, dtype=ctx.dtype, device=ctx.device,
                         round_to=CAPACITY_MULTIPLE)


@hookimpl
def qwen3core_kv_cache():
    # A forward pass without a cache (training) never touches the storage.
    return Implementation("kv_cache", "static", _build, priority=-10, supports_autograd=True,
                          summary="preallocated [B, H_kv, capacity, D] buffers, written in place")
