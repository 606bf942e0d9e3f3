"""Cache.begin's decode shortcut (one real token per row) against its general path.

The shortcut skips the prefix sums and the causal comparison; these tests hold it to the masks
and positions the general path builds (it is taken when an explicit all-ones mask is given) in
batches whose rows sit at different positions, with padding, joined and reordered rows.
"""

from __future__ import annotations

import pytest
import torch
from qwen3core_backends.eager.kv_cache import DynamicKVCache
from qwen3core_backends.static_cache.kv_cache import StaticKVCache

from qwen3core.cache import Cache

CPU = torch.device("cpu")


def _cache(kind: str, batch: int) -> Cache:
    storage = (DynamicKVCache(1, 40) if kind == "dynamic" else
               StaticKVCache(1, batch, 1, 40, 2, dtype=torch.float32, device=CPU))
    return Cache(storage, batch, 40, CPU)


def _prefill(cache: Cache, mask: list[list[int]]) -> None:
    mask_t = torch.tensor(mask)
    cache.begin(mask_t, mask_t.shape[1])


def _pair(kind: str, mask: list[list[int]]) -> tuple[Cache, Cache]:
    a, b = _cache(kind, len(mask)), _cache(kind, len(mask))
    _prefill(a, mask)
    _prefill(b, mask)
    return a, b


def _assert_steps_agree(fast: Cache, general: Cache, steps: int) -> None:
    for _ in range(steps):
        rows = fast.batch_size
        got = fast.begin(None, 1)
        want = general.begin(torch.ones(rows, 1, dtype=torch.int64), 1)
        assert torch.equal(got.mask, want.mask)
        assert torch.equal(got.positions, want.positions)
        assert torch.equal(got.start, want.start) and got.length == want.length
        assert got.mask.shape == (rows, 1, 1, want.mask.shape[-1])


@pytest.mark.parametrize("kind", ["dynamic", "static"])
def test_decode_steps_after_a_padded_prefill(kind):
    fast, general = _pair(kind, [[0, 0, 1, 1], [1, 1, 1, 1], [0, 1, 1, 1]])
    _assert_steps_agree(fast, general, 5)


@pytest.mark.parametrize("kind", ["dynamic", "static"])
def test_decode_steps_after_rows_join_and_leave(kind):
    fast, general = _pair(kind, [[1, 1, 1], [0, 1, 1]])
    _assert_steps_agree(fast, general, 2)
    for cache in (fast, general):
        late = _cache(kind, 1)
        _prefill(late, [[1, 1, 1, 1, 1, 1, 1]])  # further along than the running rows
        cache.extend(late)
    _assert_steps_agree(fast, general, 3)
    for cache in (fast, general):
        cache.reorder(torch.tensor([2, 0]))
    _assert_steps_agree(fast, general, 3)


def test_the_mask_of_a_step_is_not_changed_by_the_next():
    cache = _cache("dynamic", 1)
    _prefill(cache, [[1, 1]])
    first = cache.begin(None, 1).mask
    kept = first.clone()
    cache.begin(None, 1)
    assert torch.equal(first, kept)


@pytest.mark.parametrize("kind", ["dynamic", "static"])
def test_a_step_keeps_its_positions_and_slots_when_the_cache_advances_in_place(kind):
    """The counters advance in place (a CUDA graph leaves its state only in its inputs), so what
    a step was handed must be a copy: a later step must not move an earlier one's positions."""
    cache = _cache(kind, 2)
    _prefill(cache, [[0, 1, 1], [1, 1, 1]])
    seen, next_slot = cache.seen, cache.next_slot
    first = cache.begin(None, 1)
    positions, start = first.positions.clone(), first.start.clone()
    assert positions.tolist() == [[2], [3]] and start.tolist() == [3, 3]
    cache.begin(None, 1)
    cache.begin(torch.tensor([[1, 1]]).expand(2, 2), 2)
    assert torch.equal(first.positions, positions) and torch.equal(first.start, start)
    assert cache.seen is seen and cache.next_slot is next_slot  # the same tensors, advanced
    assert cache.seen.tolist() == [6, 7] and cache.next_slot.tolist() == [7, 7]
