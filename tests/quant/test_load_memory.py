"""Quantizing while loading, a chunk of rows at a time: the very same result as whole.

The load draws, converts and quantizes large weights (the embedding, a head) in chunks of
output rows to bound its temporaries (docs/quantization.md has the peak RSS). Each step is
per output row, so the chunks must reproduce the whole weight's levels, scales and zero points
exactly; these tests shrink the chunk sizes so that a small weight is cut into several uneven
chunks. (The cpu backend's packing needs no chunks: its C++ operator makes no temporaries;
tests/quant/test_pack_ops.py holds it to its reference.)
"""

from __future__ import annotations

import mmap
import platform
import sys

import pytest
import torch

from qwen3core.init import fill_random
from qwen3core.memory import drop_file_pages, return_freed_memory
from qwen3core.quant import QuantizedWeight, apply, resolve_scheme

CPU = torch.device("cpu")
SCHEMES = ["int8", "int8:channel", "int4", "int4:zp", "int4:g32:zp", "w8a8", "w4a8"]


def _same(a: QuantizedWeight, b: QuantizedWeight) -> None:
    assert torch.equal(a.qweight, b.qweight) and torch.equal(a.scales, b.scales)
    assert (a.zeros is None) == (b.zeros is None)
    assert a.zeros is None or torch.equal(a.zeros, b.zeros)
    assert (a.group_size, a.bits, a.act_block) == (b.group_size, b.bits, b.act_block)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_quantizing_drawn_rows_in_chunks_equals_the_whole_draw(scheme, monkeypatch):
    shape = (1300, 96)  # 256-row chunks: five whole ones and a short last one
    monkeypatch.setattr(apply, "CHUNK_BYTES", 256 * 96 * 4)
    assert apply.chunk_rows(96) == 256
    whole = torch.empty(shape)
    fill_random(whole, "model.embed_tokens.weight", 3, 96)
    want = resolve_scheme(scheme).quantize(whole)
    got = apply.quantize_rows(resolve_scheme(scheme), shape,
                              apply._drawn_rows("model.embed_tokens.weight", shape, 3, 96))
    _same(got, want)
    stored = whole.bfloat16()  # a checkpoint's tensor, converted a chunk at a time
    _same(apply.quantize_rows(resolve_scheme(scheme), shape, stored.__getitem__),
          resolve_scheme(scheme).quantize(stored))


def test_returning_freed_memory_runs_where_it_can():
    # glibc on Linux: malloc_trim; elsewhere a no-op that says so.
    on_glibc = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    assert return_freed_memory() is on_glibc


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="madvise and /proc: Linux only")
def test_file_pages_are_dropped_and_anonymous_memory_is_left_alone(tmp_path):
    page = mmap.PAGESIZE
    values = torch.arange(8 * page, dtype=torch.int32)
    path = tmp_path / "weights.bin"
    path.write_bytes(values.numpy().tobytes())
    mapped = torch.from_file(str(path), shared=False, size=values.numel(), dtype=torch.int32)
    assert torch.equal(mapped, values)  # every page read: resident
    assert drop_file_pages(mapped.data_ptr(), mapped.nbytes) == mapped.nbytes  # whole pages
    assert torch.equal(mapped, values)  # read again from the file
    anonymous = values.clone()
    assert drop_file_pages(anonymous.data_ptr(), anonymous.nbytes) == 0
    assert torch.equal(anonymous, values)
