"""The ``grouped`` MoE routing backend: tokens grouped by expert, stacked expert weights.

Provides ``moe`` "grouped". Needs only torch; uses ``torch.nn.functional.grouped_mm`` where the
installed torch, device and dtype support it (see ``grouped_linear``), else batched or
per-expert matmuls. Deterministic: no atomics, the same summation order as the eager block.
The state dict keeps the checkpoint keys ``gate.weight`` and
``experts.{e}.{gate,up,down}_proj.weight``; ``prepare_weights()`` stacks them (sharing memory).
"""

from qwen3core import Implementation, hookimpl

from .moe import GroupedMoE


@hookimpl
def qwen3core_moe():
    # supports_autograd stays False: the stacked expert copies, not the checkpoint's
    # parameters, would receive the gradients.
    return Implementation("moe", "grouped", GroupedMoE, priority=10,
                          summary="tokens sorted by expert, stacked weights, grouped matmuls")
