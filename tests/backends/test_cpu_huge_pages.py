"""Packed weights moved onto transparent huge pages after the fact (csrc/huge_page_op.cpp).

The move must be invisible: the same tensor objects, views and values, writes through any view
seen by the others, memory freed with the last view; small storages are left alone, and a
model whose weights moved computes what it computed before. Whether the kernel grants huge
pages is the machine's business (THP may be off): only the move itself is asserted.
"""

from __future__ import annotations

import gc

import pytest
import torch
from qwen3core_backends import cpu as cpu_backend
from qwen3core_backends.cpu import huge_pages
from qwen3core_backends.cpu.build import load_kernels

from qwen3core.build import build_random, select_backends
from qwen3core.spec import Qwen3Spec
from qwen3core.testing.harness import greedy

CPU = torch.device("cpu")
_missing = cpu_backend._check(CPU, torch.float32)
pytestmark = pytest.mark.skipif(_missing is not None,
                                reason=f"cpu kernels unavailable here: {_missing}")


def _rehome(t: torch.Tensor) -> bool:
    return bool(torch.ops.qwen3core_cpu.rehome_huge_pages(t))


def _moves_here() -> bool:
    """Whether this machine lets a storage move at all (Linux, madvise(MADV_HUGEPAGE) taken)."""
    if _missing is not None:
        return False
    load_kernels()
    return _rehome(torch.zeros(1 << 20))


needs_moves = pytest.mark.skipif(not _moves_here(),
                                 reason="no huge-page moves here (not Linux, or madvise refused)")


@needs_moves
def test_a_moved_storage_keeps_its_tensors_views_and_values():
    base = torch.randn(3 << 18)  # 3 MiB of float32: copied into a chunk
    view = base[1000:5000].view(40, 100)
    expected = base.clone()
    pointer = base.data_ptr()
    assert _rehome(view)  # moves the whole storage, whichever view asks
    assert base.data_ptr() != pointer  # the memory moved ...
    assert torch.equal(base, expected)  # ... with every value
    assert view.data_ptr() == base.data_ptr() + 1000 * 4  # views follow their storage
    view[3, 7] = 123.0
    assert base[1000 + 307] == 123.0  # one memory under both
    assert not _rehome(base)  # already moved: nothing to do
    del base, view
    gc.collect()  # the last view frees the chunk's share (a crash here would be a bad free)


def test_small_storages_stay_where_they_are():
    load_kernels()
    small = torch.randn(1000)
    pointer = small.data_ptr()
    assert not _rehome(small)
    assert small.data_ptr() == pointer


@needs_moves
def test_many_storages_share_chunks_and_outlive_each_other():
    tensors = [torch.full((1 << 18,), float(i)) for i in range(70)]  # 1 MiB each: > one chunk
    for t in tensors:
        _rehome(t)
    del tensors[::2]
    gc.collect()
    assert [float(t[123]) for t in tensors] == [float(i) for i in range(1, 70, 2)]


def test_a_model_with_weights_moved_generates_the_same_tokens(monkeypatch):
    spec = Qwen3Spec(vocab_size=4099, hidden_size=256, intermediate_size=1536,
                     num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                     head_dim=64, max_position_embeddings=128, tie_word_embeddings=False,
                     eos_token_id=None)  # products of 1-2 MiB in float32: they move
    selection = select_backends({"linear": "cpu", "mlp": "cpu", "attention": "cpu"},
                                device=CPU, dtype=torch.float32)
    moved = build_random(spec, selection, dtype=torch.float32, device=CPU, seed=2)
    monkeypatch.setattr(huge_pages, "ENABLED", False)
    stayed = build_random(spec, selection, dtype=torch.float32, device=CPU, seed=2)
    prompts = [[5, 17, 3, 900, 41], [12, 7]]
    a, b = greedy(moved, prompts, 5), greedy(stayed, prompts, 5)
    assert a.tokens == b.tokens
    for x, y in zip(a.logits, b.logits):
        assert torch.equal(x, y)
