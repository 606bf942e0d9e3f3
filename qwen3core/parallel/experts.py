"""The experts one MoE block holds: all of them in one process, a contiguous part per rank.

Every MoE implementation keeps its experts in an :class:`ExpertSet` built by
:func:`local_experts`: keyed by global expert id, so the state-dict keys stay the checkpoint's
``experts.{e}...`` on every rank, and indexable by that id like the ``nn.ModuleList`` it
replaces. A block routes over all experts (its router is replicated), runs only the experts it
holds, and returns their contribution; the model sums the ranks' contributions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from torch import nn

from qwen3core.contracts import BuildContext
from qwen3core.errors import ParallelError


class ExpertSet(nn.ModuleDict):
    """``nn.ModuleDict`` keyed by global expert id; iterates over the experts like a list."""

    def __getitem__(self, expert_id: int | str) -> nn.Module:
        return super().__getitem__(str(expert_id))

    def __iter__(self) -> Iterator[nn.Module]:  # type: ignore[override]
        return iter(self.values())

    def ids(self) -> list[int]:
        return [int(key) for key in self.keys()]

    def by_id(self) -> Iterator[tuple[int, nn.Module]]:
        return ((int(key), module) for key, module in self.items())


def local_experts(ctx: BuildContext, make: Callable[[], nn.Module]) -> ExpertSet:
    """One ``make()`` per expert this rank holds (every expert in one process)."""
    span = ctx.parallel.experts(ctx.spec)
    return ExpertSet({str(e): make() for e in range(span.start, span.stop)})


def require_local_experts(moe: nn.Module, ctx: BuildContext) -> None:
    """Under tensor parallelism, refuse an MoE block that holds other experts than this rank's:
    it would return all experts' output on every rank, and the sum over ranks would count each
    expert N times."""
    if not ctx.parallel.is_parallel:
        return
    held = ctx.parallel.experts(ctx.spec)
    experts = getattr(moe, "experts", None)
    if not isinstance(experts, ExpertSet) or experts.ids() != list(range(held.start, held.stop)):
        name = ctx.selection["moe"].name
        raise ParallelError(
            f"the moe implementation {name!r} does not keep its experts in "
            "qwen3core.parallel.experts.local_experts(ctx, make), so it cannot run under "
            "tensor parallelism; select another (moe=eager or moe=grouped) or run one process")
