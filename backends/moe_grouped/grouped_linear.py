"""One linear layer per expert over token rows already grouped by expert.

Three ways, chosen without reading any count on the host where possible:

* ``torch.nn.functional.grouped_mm`` (torch >= 2.8; CPU float32/bfloat16/float16, CUDA
  bfloat16): one call over the jagged groups, the group ends passed as a device tensor.
* A batched matmul over each row's gathered expert matrix, for few rows (decode steps): no
  host synchronisation, at the cost of copying one matrix per row.
* Otherwise one ``F.linear`` per non-empty expert over its slice of rows; the slice ends are
  read to the host once per call (not once per expert).

Each row's result is the same dot product as ``F.linear`` on that row; the matmul kernels may
round differently (block sizes differ with the matrix shapes), so results match the eager
per-expert loop to rounding, not bit for bit.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

_GROUPED_MM_DTYPES = {torch.float32, torch.bfloat16, torch.float16}


def grouped_mm_usable(device: torch.device, dtype: torch.dtype, *features: int) -> bool:
    """Whether ``F.grouped_mm`` runs here for matrices with these feature sizes (tried once on
    tiny inputs, because support differs by device, dtype, alignment and torch version)."""
    if not hasattr(F, "grouped_mm") or dtype not in _GROUPED_MM_DTYPES or device.type == "meta":
        return False
    if device.type == "cuda" and dtype != torch.bfloat16:
        return False
    try:
        for in_f in features:
            for out_f in features:
                rows = torch.zeros(3, in_f, dtype=dtype, device=device)
                weight = torch.zeros(2, out_f, in_f, dtype=dtype, device=device)
                ends = torch.tensor([1, 3], dtype=torch.int32, device=device)
                F.grouped_mm(rows, weight.transpose(-2, -1), offs=ends)
    except (RuntimeError, TypeError, ValueError):
        return False
    return True


def grouped_linear(rows: torch.Tensor, weight: torch.Tensor, experts: torch.Tensor,
                   ends: torch.Tensor, use_grouped_mm: bool) -> torch.Tensor:
    """rows [M, in] sorted by expert, weight [E, out, in], experts [M] (the sorted ids),
    ends [E] (where each expert's rows end) -> [M, out]."""
    if use_grouped_mm and (rows.dtype == torch.bfloat16 or not torch.compiler.is_compiling()):
        # (Under torch.compile the operator's shape function accepts only bfloat16.)
        return F.grouped_mm(rows, weight.transpose(-2, -1), offs=ends.to(torch.int32))
    if rows.shape[0] <= weight.shape[0]:
        # Few rows: gathered matrices cost at most one extra copy of the layer's experts.
        picked = weight.index_select(0, experts)  # [M, out, in]
        return torch.bmm(picked, rows[:, :, None])[:, :, 0]
    out = rows.new_empty(rows.shape[0], weight.shape[1])
    begin = 0
    for e, end in enumerate(ends.tolist()):  # one host read per call, not one per expert
        if end > begin:
            out[begin:end] = F.linear(rows[begin:end], weight[e])
        begin = end
    return out
