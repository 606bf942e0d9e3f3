"""Huge pages asked for under large CPU buffers before they are written (qwen3core/huge_pages.py).

Whether the kernel then backs them with huge pages is the machine's business (THP may be off,
memory fragmented); what is asserted is that the range was marked (``hg`` among the VmFlags of
its mapping in /proc/self/smaps), that small buffers are left alone, and that the buffers hold
zeros like ``torch.zeros``. Both KV caches allocate their per-layer buffers this way.
"""

from __future__ import annotations

import sys

import pytest
import torch
from qwen3core_backends.eager.kv_cache import DynamicKVCache
from qwen3core_backends.static_cache.kv_cache import StaticKVCache

from qwen3core.huge_pages import HUGE_PAGE_BYTES, advise_huge_pages, zeros_on_huge_pages

CPU = torch.device("cpu")


def _vm_flags(address: int) -> list[str] | None:
    """The VmFlags of the mapping holding ``address`` (None where /proc cannot tell)."""
    try:
        with open("/proc/self/smaps") as smaps:
            inside = False
            for line in smaps:
                head = line.split()[0]
                if "-" in head and not head.endswith(":"):
                    lo, hi = (int(part, 16) for part in head.split("-"))
                    inside = lo <= address < hi
                elif inside and line.startswith("VmFlags:"):
                    return line.split()[1:]
    except OSError:
        return None
    return None


def _marked(t: torch.Tensor) -> bool:
    flags = _vm_flags(t.data_ptr() + t.numel() * t.element_size() // 2)
    return flags is not None and "hg" in flags


def _marks_here() -> bool:
    """Whether madvise(MADV_HUGEPAGE) is taken and shows in smaps on this machine."""
    if not sys.platform.startswith("linux"):
        return False
    probe = torch.empty(4 * HUGE_PAGE_BYTES, dtype=torch.uint8)
    return advise_huge_pages(probe) and _marked(probe)


needs_marks = pytest.mark.skipif(not _marks_here(),
                                 reason="madvise(MADV_HUGEPAGE) not taken or not visible here "
                                        "(not Linux, no THP, or /proc/self/smaps unreadable)")


def test_zeros_on_huge_pages_are_zeros_of_the_shape_and_dtype():
    for shape, dtype in (((3, 5), torch.float32), ((2, 8, 4096, 128), torch.bfloat16)):
        t = zeros_on_huge_pages(shape, dtype=dtype, device=CPU)
        assert t.shape == shape and t.dtype == dtype and t.device == CPU
        assert not t.any()


@needs_marks
def test_a_large_buffer_is_marked_and_a_small_one_is_not():
    large = zeros_on_huge_pages((4 * HUGE_PAGE_BYTES // 4,), dtype=torch.float32, device=CPU)
    assert _marked(large)
    small = torch.empty(HUGE_PAGE_BYTES // 4, dtype=torch.float32)  # under two huge pages
    assert not advise_huge_pages(small)


@needs_marks
def test_both_kv_caches_put_large_layer_buffers_on_huge_pages():
    # 8 heads x 2048 slots x 128 x 2 bytes: 4 MiB a layer's keys
    static = StaticKVCache(2, 1, 8, 2048, 128, dtype=torch.bfloat16, device=CPU)
    assert _marked(static.keys[0]) and _marked(static.values[1])
    dynamic = DynamicKVCache(2, capacity=4096)
    new = torch.randn(1, 8, 2000, 128).to(torch.bfloat16)  # a long prompt's keys
    start = torch.zeros(1, dtype=torch.int64)
    keys, _ = dynamic.update(0, start, new, new, 2000)
    assert torch.equal(keys, new)
    assert _marked(dynamic.keys[0])
