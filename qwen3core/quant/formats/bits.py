"""Unpacking integer levels from the int32 words AWQ and GPTQ checkpoints store them in.

Both formats put ``32 // bits`` levels in one int32, level ``k`` of a word in bits
``[k*bits, (k+1)*bits)`` (least significant first); they differ only in the axis the words run
along and, for AWQ, the order of the levels inside a word. The words are signed int32 in the
files, so levels are masked after an arithmetic shift.
"""

from __future__ import annotations

import torch

Dtypes = dict[str, tuple[torch.dtype, ...]]  # part -> the dtypes it may be stored in


def unpack_int32(packed: torch.Tensor, bits: int, dim: int) -> torch.Tensor:
    """Levels [..., n * 32/bits, ...] (int32, 0..2^bits-1) from words packed along ``dim``:
    word ``w`` holds the levels ``w*32/bits ... (w+1)*32/bits - 1`` of that axis, in order."""
    per_word = 32 // bits
    shifts = torch.arange(0, 32, bits, dtype=torch.int32, device=packed.device)
    words = packed.to(torch.int32).movedim(dim, -1)  # [..., n]
    levels = (words.unsqueeze(-1) >> shifts) & ((1 << bits) - 1)  # [..., n, per_word]
    levels = levels.reshape(*words.shape[:-1], words.shape[-1] * per_word)
    return levels.movedim(-1, dim)


def shape_mismatches(want: dict[str, tuple[int, ...]], got: dict[str, tuple[int, ...]]
                     ) -> list[str]:
    """Each part whose shape is not the one its qweight implies, as "part is [..], expected
    [..]" (empty when all agree)."""
    return [f"{k} is {list(got[k])}, expected {list(v)}" for k, v in want.items()
            if got[k] != v]
