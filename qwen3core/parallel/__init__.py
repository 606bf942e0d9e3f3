"""Tensor parallelism over ``torch.distributed``: one model split across processes.

:class:`ParallelLayout` says which part a rank holds and performs the two collectives a forward
pass needs; :mod:`.plan` maps checkpoint keys to the slice a rank reads; :mod:`.group` joins
the process group ``torchrun`` set up. See docs/parallel.md.

(:mod:`qwen3core.parallel.experts` and :mod:`.embedding` are imported by their users, not
here: they build modules on :class:`~qwen3core.contracts.BuildContext`, which imports this
package.)
"""

from qwen3core.parallel.layout import SINGLE_PROCESS, ParallelLayout
from qwen3core.parallel.span import Span, split_evenly

__all__ = ["SINGLE_PROCESS", "ParallelLayout", "Span", "split_evenly"]
