"""Asking Linux for transparent huge pages under large weight tensors.

Measured on the 0.6B, 2 threads (``scripts/fusion_bench.py`` with and without
``--no-huge-pages``, docs/quantization.md): with every packed weight moved onto huge pages by
:func:`rehome_huge_pages`, int4 with the head quantized decoded at 10.5-10.7 ms a step against
11.4, bf16 at 27.3-27.6 against 30.8-31.0.

A decode step streams each chosen expert's weights once (8 experts x 48 layers per token in the
30B-A3B); with 4 KiB pages every 4 KiB read is also a TLB entry to find, with 2 MiB pages one in
512. Where transparent huge pages are in ``madvise`` mode (as on many distributions) a range
gets them only if asked, with ``madvise(MADV_HUGEPAGE)``, before its pages are first touched.
Best effort: nothing happens where the call is missing or refused (not Linux, THP off).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import sys

import torch

from qwen3core.memory import ReturnFreedEvery

_MADV_HUGEPAGE = 14
_HUGE = 2 * 2**20  # below a huge page's size there is nothing to gain
#: Whether :func:`advise_huge_pages` and :func:`rehome_huge_pages` ask at all (the scripts'
#: ``--no-huge-pages`` turns it off to measure the difference).
ENABLED = True
_madvise = None


def advise_huge_pages(tensor: torch.Tensor) -> bool:
    """Ask for huge pages under ``tensor``'s memory (call before writing it); True if asked."""
    global _madvise
    nbytes = tensor.numel() * tensor.element_size()
    if not ENABLED or not sys.platform.startswith("linux") or tensor.device.type != "cpu" \
            or nbytes < 2 * _HUGE:
        return False
    if _madvise is None:
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            _madvise = libc.madvise
        except (OSError, AttributeError):
            _madvise = False
    if not _madvise:
        return False
    page = mmap.PAGESIZE
    lo = -(-tensor.data_ptr() // page) * page
    hi = (tensor.data_ptr() + nbytes) // page * page
    return _madvise(ctypes.c_void_p(lo), ctypes.c_size_t(hi - lo), _MADV_HUGEPAGE) == 0


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
