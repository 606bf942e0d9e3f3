"""A runner that hands the model's steps to ``torch.compile``."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache, wraps

import torch
from torch.utils._pytree import tree_map_only


@cache
def compiled(step: Callable, backend: str, mode: str | None) -> Callable:
    """One compiled wrapper per (step function, backend, mode), shared by every model.

    Dynamo keeps compiled code per code object behind guards, so models of the same shapes
    reuse one another's code. Shapes that change between calls (batch size, a growing cache)
    are specialised on first sight and made dynamic on their first change ("automatic
    dynamic"), which bounds recompilation to about one per changing dimension.
    """
    compiled_step = torch.compile(step, backend=backend, mode=mode)
    if mode != "reduce-overhead":
        return compiled_step

    @wraps(step)
    def replayed(*args, **kwargs):
        # Each call is a new step of the generation loop: its graph may overwrite the outputs of
        # the last replay, so what the caller keeps (the logits) is copied out of the graph's
        # memory. Everything else a step leaves behind it writes into its inputs in place.
        torch.compiler.cudagraph_mark_step_begin()
        return tree_map_only(torch.Tensor, torch.clone, compiled_step(*args, **kwargs))

    return replayed


class CompileRunner:
    """``wrap(step, phase)``: compiled for the phases in ``phases``, unchanged otherwise."""

    def __init__(self, phases: tuple[str, ...], backend: str = "inductor",
                 mode: str | None = None):
        self.phases = phases
        self.backend = backend
        self.mode = mode

    def __call__(self, step: Callable[..., torch.Tensor], phase: str
                 ) -> Callable[..., torch.Tensor]:
        if phase not in self.phases:
            return step
        return compiled(step, self.backend, self.mode)

    def __repr__(self) -> str:
        return f"CompileRunner(phases={self.phases}, backend={self.backend!r}, mode={self.mode!r})"
