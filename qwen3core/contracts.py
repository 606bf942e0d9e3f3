"""The contracts every backend implements, written down once, with tensor shapes.

Shape letters: B batch, S new tokens in this call, T key slots visible to attention,
H_q query heads, H_kv key/value heads, D head_dim, E hidden size.

A backend is a set of :class:`Implementation` objects, one per component it provides. The
plugin hooks in :mod:`qwen3core.hookspecs` return them; :mod:`qwen3core.registry` selects one
per component; :mod:`qwen3core.model` builds the forward pass from the selected factories.
Factories run while a model is *built*; ``forward`` only calls plain modules and functions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import torch

from qwen3core.parallel.layout import SINGLE_PROCESS, ParallelLayout

if TYPE_CHECKING:
    from qwen3core.spec import Qwen3Spec

#: The pluggable components of a Qwen3 forward pass, in the order they are listed to users.
COMPONENTS: tuple[str, ...] = (
    "attention", "norm", "rope", "kv_cache", "linear", "mlp", "moe", "runner")


@dataclass(frozen=True)
class AttentionBatch:
    """What attention needs besides q, k, v: built once per forward by the model.

    ``mask`` is always present, so no implementation can attend where it must not simply by
    forgetting an argument: True where query ``s`` of row ``b`` may attend key slot ``t``
    (causality and left padding are both folded in). Every query row has at least one True: a
    left-padding query, which has no real key to see, sees only its own slot, so no kernel
    meets an all-False row (a NaN softmax in most kernels); padding outputs are never read.

    Every row has its own cache slots: ``start`` [B] (int64, on the device) is the slot of each
    row's first new token, and row ``b`` writes its S new tokens at ``start[b] .. start[b]+S``.
    Rows of one left-padded batch share their offsets; rows of a continuously batched server sit
    at different positions (a row that joined later has written fewer slots), and ``mask``
    hides each row's slots beyond its own. ``length`` is the number of key slots T a growing
    storage returns (the longest row's end, a python int); it is None for storages with
    ``returns_full_capacity`` (then T is the capacity, ``mask`` covers every slot and
    ``plain_causal`` is False), so that a compiled decode step, which then reads no changing
    python number, is traced once and reused at every slot.
    """

    positions: torch.Tensor  # [B, S] int64 rotary positions of the new tokens
    mask: torch.Tensor  # [B, 1, S, T] bool
    start: torch.Tensor  # [B] int64: cache slot of each row's first new token (see above)
    #: True when ``mask`` is exactly the plain causal mask: no padding, every row at the same
    #: slots and T == start + S, so a kernel may use its built-in causal path (``is_causal``)
    #: instead of the tensor.
    plain_causal: bool = False
    #: T for growing storages, None for full-capacity ones (last, so that positional
    #: construction keeps its old meaning).
    length: int | None = None


class AttentionFn(Protocol):
    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                 batch: AttentionBatch, scale: float) -> torch.Tensor:
        """q [B, H_q, S, D], k/v [B, H_kv, T, D] -> [B, H_q, S, D] in q's dtype.

        H_q is a multiple of H_kv (grouped-query attention): query head h reads kv head
        ``h // (H_q // H_kv)``. Softmax accumulates in float32 (in float64 for float64
        inputs, so that float64 runs are exact references).
        """


@runtime_checkable
class KVCache(Protocol):
    """Per-layer key/value storage for one batch of sequences.

    Every row writes at its own slots (rows may sit at different positions, see
    :class:`AttentionBatch`); which slots hold real tokens is tracked by
    :class:`qwen3core.cache.Cache`, not by the storage. Slots a row has not written must read
    as finite values (zeros): the mask hides them, but a kernel multiplies the zero weights
    it gives them by whatever they hold.

    Optional: ``layer_buffers(length) -> (keys, values)``, every layer's buffers
    [B, H_kv, room, D] that ``update`` writes into, made ready for a step whose ``length`` is
    given (grown now as ``update`` would grow them), or None where the storage cannot hand them
    out. A caller that takes them writes row ``b``'s new slots at ``start[b]..`` itself, as
    ``update`` would, and attends over each buffer's first ``length`` slots (all of them for a
    full-capacity storage): a fused decode step then runs every layer without a call back into
    Python (the cpu backend's ``decode_stack``). The storage must keep no other state that
    ``update`` would have changed.
    """

    #: Maximum slots per row, None when it grows without bound. A full-capacity storage may
    #: hold more than the capacity asked for (rounded up); the cache then masks them all.
    capacity: int | None
    #: When True, ``update`` returns all ``capacity`` slots (unwritten ones masked out), which
    #: keeps shapes static for compiled code; otherwise it returns slots ``[0, length)``.
    returns_full_capacity: bool

    def update(self, layer_idx: int, start: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               length: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Store row ``b`` of k, v [B, H_kv, S, D] at slots ``start[b] .. start[b]+S``
        (``start`` [B] int64 on the device) and return all keys and values attention may see,
        [B, H_kv, T, D]: T = ``length`` (a python int, at least every row's end) for a growing
        storage, the capacity for a full-capacity one (which receives ``length=None``).

        Every layer of a step receives the same ``start`` tensor, and the next step a new one
        (the caller never changes it in place), so a storage may build its per-step index work
        once per step, keyed on that object."""

    def reorder(self, rows: torch.Tensor) -> None:
        """Keep only the batch rows ``rows`` (int64 [B']) in this order."""

    def extend(self, other: KVCache) -> None:
        """Append the rows of ``other`` (the same class, built by the same factory for the
        same capacity) after this storage's rows, keeping every row's slots as they are."""


class RotaryFn(Protocol):
    def __call__(self, q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """q [B, H_q, S, D], k [B, H_kv, S, D], positions [B, S] -> rotated q, k ("rotate
        half" layout, cos/sin computed in float32 then cast to the activation dtype)."""


class FusedLinear(Protocol):
    """Several linear layers applied to one input as one product: what a linear module class
    may return from an optional ``fuse(layers)`` classmethod (e.g. q/k/v, or gate/up).

    ``fuse`` receives layers of its own class with the same ``in_features`` and returns a
    callable, or None to decline. The callable maps [..., in] to the layers' outputs
    concatenated along the last dimension, [..., sum(out)], equal to
    ``torch.cat([layer(x) for layer in layers], -1)`` within the linear layer's numerics. It
    reads the layers' current weights (they stay the parameters and checkpoint keys), so it
    must follow a weight that is replaced or rewritten. It is not a module: it adds no state.
    """

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class WeightRows(Protocol):
    """A linear module that can read rows of its weight: the optional ``weight_rows`` method.

    ``weight_rows(ids)`` takes int64 ids of any shape and returns ``F.embedding(ids, weight)``:
    ``[*ids.shape, in_features]`` in the weight's dtype, the rows exactly (no rounding); ids
    outside ``[0, out_features)`` raise ``IndexError``. A tied model's embedding then reads its
    rows through the LM head (:mod:`qwen3core.tied_embedding`), so a linear that keeps its
    weight in a layout of its own (packed tiles) holds the tied matrix once instead of leaving
    the embedding a dense copy. It is asked only while the head holds a dense weight; a module
    that later takes a quantized weight may refuse it.
    """

    def weight_rows(self, ids: torch.Tensor) -> torch.Tensor: ...


class Runner(Protocol):
    def __call__(self, step: Callable[..., torch.Tensor], phase: str) -> Callable[..., torch.Tensor]:
        """Wrap a model step function; ``phase`` is "prefill" or "decode"."""


@dataclass
class BuildContext:
    """Handed to every factory: the spec, the runtime dtype/device and the selection, so that
    one component can build another with whatever implementation the user selected.

    Under tensor parallelism ``parallel`` says which part of the model this process holds, and
    the factories receive :meth:`shard`'s context: its ``spec`` has this rank's query heads,
    KV heads and MLP width (see :meth:`ParallelLayout.local_spec`), so an implementation builds
    its shard from the sizes it is given, unaware of the split. MoE blocks take their experts
    from :func:`qwen3core.parallel.experts.local_experts`.
    """

    spec: Qwen3Spec
    dtype: torch.dtype
    device: torch.device
    selection: Selection
    parallel: ParallelLayout = SINGLE_PROCESS

    def shard(self) -> BuildContext:
        """This context with the spec of the part this rank holds (itself for one process)."""
        local = self.parallel.local_spec(self.spec)
        if local is self.spec:
            return self
        return BuildContext(local, self.dtype, self.device, self.selection, self.parallel)

    def build(self, component: str, *args: Any, **kwargs: Any) -> Any:
        from qwen3core.errors import PluginError, Qwen3CoreError

        impl = self.selection[component]
        try:
            return impl.factory(self, *args, **kwargs)
        except Qwen3CoreError:
            raise
        except Exception as exc:  # a plugin's bug: name the plugin, keep the cause chained
            raise PluginError(
                f"the {component} implementation {impl.name!r} of plugin {impl.plugin!r} failed "
                f"to build: {type(exc).__name__}: {exc}. Select another with backends="
                f"{{'{component}': ...}} or block the plugin with "
                f"QWEN3CORE_BLOCK_PLUGINS={impl.plugin}") from exc

    # Convenience wrappers for the components that build each other.
    def linear(self, in_features: int, out_features: int) -> torch.nn.Module:
        return self.build("linear", in_features, out_features)

    def norm(self, dim: int) -> torch.nn.Module:
        return self.build("norm", dim, self.spec.rms_norm_eps)

    def mlp(self, hidden_size: int, intermediate_size: int) -> torch.nn.Module:
        return self.build("mlp", hidden_size, intermediate_size)


#: Returns None when usable on (device, dtype), else a reason a person can act on.
AvailabilityCheck = Callable[[torch.device, torch.dtype], "str | None"]


@dataclass(frozen=True)
class Implementation:
    """One named implementation of one component, as a plugin hook returns it.

    Factory signatures by component (``ctx`` is a :class:`BuildContext`):

    ===========  ===========================================  =================================
    component    factory(ctx, ...)                            returns
    ===========  ===========================================  =================================
    attention    ``(ctx)``                                    :class:`AttentionFn`
    norm         ``(ctx, dim, eps)``                          module with ``weight`` [dim]
    rope         ``(ctx)``                                    :class:`RotaryFn`
    kv_cache     ``(ctx, batch_size, capacity)``              :class:`KVCache`
    linear       ``(ctx, in_features, out_features)``         module with ``weight`` [out, in]
    mlp          ``(ctx, hidden_size, intermediate_size)``    module with ``gate_proj``,
                                                              ``up_proj``, ``down_proj``
    moe          ``(ctx)``                                    module loading ``gate.weight`` and
                                                              ``experts.{e}.{gate,up,down}_proj
                                                              .weight``
    runner       ``(ctx)``                                    :class:`Runner`
    ===========  ===========================================  =================================

    Modules map ``[..., E] -> [..., E']``. A module whose weights need a layout of its own
    (fused, stacked, packed) converts them in ``prepare_weights()``, which the loader calls once
    after the checkpoint's tensors are in place.
    """

    component: str
    name: str
    factory: Callable[..., Any]
    summary: str = ""
    #: Higher wins when no selection is given for this component.
    priority: int = 0
    check: AvailabilityCheck | None = None
    #: True when gradients flow through it to every parameter it owns and agree with the eager
    #: reference's (``qwen3core.testing.gradients`` holds it to that). False (the safe default)
    #: makes ``load(..., training=True)`` pass it over, and a forward pass that needs gradients
    #: through it refuses with an error instead of leaving ``.grad`` silently empty.
    supports_autograd: bool = False
    #: Provided by the registry: the plugin (entry point) that contributed it.
    plugin: str = field(default="", compare=False)

    def unavailable_reason(self, device: torch.device, dtype: torch.dtype) -> str | None:
        if self.check is None:
            return None
        try:
            return self.check(torch.device(device), dtype)
        except Exception as exc:  # noqa: BLE001 - a broken check must not hide the others
            return (f"availability check of plugin {self.plugin!r} raised "
                    f"{type(exc).__name__}: {exc}")


class Selection(dict):
    """component name -> the chosen :class:`Implementation` (a plain dict with a summary)."""

    def names(self) -> dict[str, str]:
        return {component: impl.name for component, impl in self.items()}
