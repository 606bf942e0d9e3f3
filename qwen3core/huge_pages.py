"""Transparent huge pages under large CPU buffers that are read whole again and again.

A decode step streams every packed weight and, at long contexts, every layer's keys and values.
With 4 KiB pages each 4 KiB read is also a TLB entry to find; with 2 MiB pages one in 512. Where
Linux runs transparent huge pages in ``madvise`` mode (as many distributions do) a range gets
them only if asked, with ``madvise(MADV_HUGEPAGE)``, before its pages are first touched.

Measured (2026-11-30, AMD EPYC, 2 threads): the cpu backend's attention operator alone, over 28
layers' keys and values (a scratch loop, the buffers moved by rehome_huge_pages), read them at
34-38 GB/s from 4 KiB pages and at 38-41 GB/s from huge pages (1024-4096 keys, batch 1 and 8).
Whole int4 decode steps of the 0.6B, the two kinds of cache alternating in one process
(``python scripts/kv_huge_pages_bench.py`` at 20:31 UTC, and the same loop before it became the
script at 20:20): batch 1 at 4000 tokens of context 19.18 / 18.94 -> 18.50 / 18.41 ms a step, batch 8
at 1024 tokens 41.04 / 41.96 -> 38.65 / 40.45, batch 1 at 1536 tokens 11.61 / 14.89 -> 11.58 /
14.61 (each layer's buffer is 3.3 MB there: one huge page of it). The packed weights' own
numbers are in backends/cpu/huge_pages.py.

Best effort: nothing happens where the call is missing or refused (not Linux, THP off).
"""

from __future__ import annotations

import ctypes
import mmap
import sys

import torch

from qwen3core.memory import madvise

_MADV_HUGEPAGE = 14
HUGE_PAGE_BYTES = 2 * 2**20


def advise_huge_pages(tensor: torch.Tensor) -> bool:
    """Ask for huge pages under ``tensor``'s memory (call before writing it); True if asked."""
    nbytes = tensor.numel() * tensor.element_size()
    if tensor.device.type != "cpu" or nbytes < 2 * HUGE_PAGE_BYTES:
        return False
    return madvise(tensor.data_ptr(), nbytes, _MADV_HUGEPAGE) > 0


def zeros_on_huge_pages(shape: tuple[int, ...], *, dtype: torch.dtype,
                        device: torch.device | str) -> torch.Tensor:
    """``torch.zeros(shape, dtype=dtype, device=device)``; on Linux, a CPU buffer of a huge page
    or more gets memory of its own: a private anonymous mapping (zeros until written, resident
    only where written), starting on a 2 MiB boundary and madvised for huge pages before any
    page of it is touched. (Memory from the allocator may be reused heap whose pages are already
    small ones: madvised there, a 4000-token KV cache of the 0.6B got ~20 % of its bytes on huge
    pages.) The mapping is unmapped with the tensor's storage. Elsewhere, plain zeros."""
    device = torch.device(device)
    numel = 1
    for size in shape:
        numel *= size
    nbytes = numel * torch.empty((), dtype=dtype).element_size()
    if device.type != "cpu" or not sys.platform.startswith("linux") or nbytes < HUGE_PAGE_BYTES:
        return torch.zeros(shape, dtype=dtype, device=device)
    region = _aligned_region(nbytes)
    if region is None:
        return torch.zeros(shape, dtype=dtype, device=device)
    mapping, offset = region
    # frombuffer's tensor holds the mapping: it is closed (unmapped) with the last view.
    flat = torch.frombuffer(mapping, dtype=torch.uint8, count=nbytes, offset=offset)
    return flat.view(dtype).view(shape)


def _aligned_region(nbytes: int) -> tuple[mmap.mmap, int] | None:
    """(a private anonymous mapping, the offset of its first 2 MiB boundary), the ``nbytes``
    from there madvised for huge pages; None if the mapping or the advice is refused."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        mapping = mmap.mmap(-1, nbytes + HUGE_PAGE_BYTES,
                            flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    except (OSError, ValueError):
        return None
    view = (ctypes.c_char * len(mapping)).from_buffer(mapping)
    address = ctypes.addressof(view)
    del view  # a live export would keep the mapping from ever being closed
    offset = -address % HUGE_PAGE_BYTES
    if madvise(address + offset, nbytes, _MADV_HUGEPAGE) == 0:
        mapping.close()
        return None
    return mapping, offset
