"""Asking Linux for transparent huge pages under large weight tensors.

Measured on the 0.6B, 2 threads (``scripts/fusion_bench.py`` with and without
``--no-huge-pages``, docs/quantization.md): with every packed weight moved onto huge pages by
:func:`rehome_huge_pages`, int4 with the head quantized decoded at 10.5-10.7 ms a step against
11.4, bf16 at 27.3-27.6 against 30.8-31.0.

A decode step streams each chosen expert's weights once (8 experts x 48 layers per token in the
30B-A3B): every 4 KiB read from 4 KiB pages is also a TLB entry to find. Asking for huge pages
before a range is first written is the core's :func:`qwen3core.huge_pages.advise_huge_pages`
(the KV caches use it too); this module adds moving memory already written
(:func:`rehome_huge_pages`) and the switch that turns both off for the packed weights.
"""

from __future__ import annotations

import sys

import torch

from qwen3core.huge_pages import advise_huge_pages as _advise_huge_pages
from qwen3core.memory import ReturnFreedEvery

#: Whether :func:`advise_huge_pages` and :func:`rehome_huge_pages` ask at all (the scripts'
#: ``--no-huge-pages`` turns it off to measure the difference).
ENABLED = True


def advise_huge_pages(tensor: torch.Tensor) -> bool:
    """Ask for huge pages under ``tensor``'s memory (call before writing it); True if asked
    (the core's :func:`qwen3core.huge_pages.advise_huge_pages`, unless :data:`ENABLED` is off)."""
    return ENABLED and _advise_huge_pages(tensor)


def rehome_huge_pages(tensors) -> int:
    """Move the memory under each tensor's storage (and every view of it) onto transparent huge
    pages after the fact (``qwen3core_cpu::rehome_huge_pages``: copied into 2 MiB-aligned
    madvised chunks, or from 64 MiB collapsed in place); returns how many storages were asked.
    For packed weights once they are final: decode streams them every token."""
    if not ENABLED or not sys.platform.startswith("linux"):
        return 0
    asked = 0
    for tensor in tensors:
        if (tensor is not None and tensor.device.type == "cpu" and tensor.numel()
                and torch.ops.qwen3core_cpu.rehome_huge_pages(tensor)):
            asked += 1
            # The old memory was freed; glibc keeps blocks under its (rising) mmap threshold
            # in its heap: without returning them the 0.6B's bf16 load peaked 0.21 GiB higher.
            _MOVED_FREED.freed(tensor.untyped_storage().nbytes())
    return asked


_MOVED_FREED = ReturnFreedEvery(64 * 2**20)
