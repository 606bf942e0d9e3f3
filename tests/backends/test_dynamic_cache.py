"""The growing KV cache: exactly the written slots, in order, with amortised growth."""

import pytest
import torch
from qwen3core_backends.eager.kv_cache import MIN_SLOTS, DynamicKVCache


def _slots(b, h, s, d, first):
    """[b, h, s, d] whose every element is its slot number, so order errors show."""
    slots = torch.arange(first, first + s, dtype=torch.float32)
    return slots[None, None, :, None].expand(b, h, s, d).clone()


@pytest.mark.parametrize("capacity", [None, 40, 1000])
def test_returns_every_written_slot_in_order_across_regrowth(capacity):
    cache = DynamicKVCache(num_layers=2, capacity=capacity)
    written = 0
    for step in [7] + [1] * 20 + [5, 3]:  # a prompt, then decode steps and a few chunks
        k, v = _slots(2, 3, step, 4, written), -_slots(2, 3, step, 4, written)
        for layer in range(2):
            keys, values = cache.update(layer, written, k, v)
            expected = _slots(2, 3, written + step, 4, 0)
            assert torch.equal(keys, expected)
            assert torch.equal(values, -expected)
        written += step


def test_decode_steps_write_in_place_instead_of_copying_the_history():
    cache = DynamicKVCache(num_layers=1, capacity=None)
    cache.update(0, 0, _slots(1, 1, 10, 2, 0), _slots(1, 1, 10, 2, 0))
    buffer = cache.keys[0]
    for slot in range(10, 10 + MIN_SLOTS):
        cache.update(0, slot, _slots(1, 1, 1, 2, slot), _slots(1, 1, 1, 2, slot))
    assert cache.keys[0] is buffer  # one buffer for the prompt and MIN_SLOTS decode steps
    regrown = cache.keys[0]
    cache.update(0, 10 + MIN_SLOTS, _slots(1, 1, 1, 2, 0), _slots(1, 1, 1, 2, 0))
    assert cache.keys[0] is not regrown and cache.keys[0].shape[2] >= 2 * (10 + MIN_SLOTS)


def test_growth_stops_at_the_capacity_but_not_before_what_is_needed():
    cache = DynamicKVCache(num_layers=1, capacity=12)
    cache.update(0, 0, _slots(1, 1, 4, 2, 0), _slots(1, 1, 4, 2, 0))
    assert cache.keys[0].shape[2] == 12
    keys, _ = cache.update(0, 4, _slots(1, 1, 10, 2, 4), _slots(1, 1, 10, 2, 4))  # past it
    assert torch.equal(keys, _slots(1, 1, 14, 2, 0))


def test_a_write_at_the_wrong_slot_is_refused():
    cache = DynamicKVCache(num_layers=1, capacity=None)
    cache.update(0, 0, _slots(1, 1, 3, 2, 0), _slots(1, 1, 3, 2, 0))
    with pytest.raises(RuntimeError, match="holds 3 slots but was asked to write at slot 5"):
        cache.update(0, 5, _slots(1, 1, 1, 2, 5), _slots(1, 1, 1, 2, 5))


def test_reorder_keeps_the_chosen_rows():
    cache = DynamicKVCache(num_layers=1, capacity=None)
    k = torch.stack([_slots(1, 1, 3, 2, 0)[0], _slots(1, 1, 3, 2, 100)[0]])  # rows differ
    cache.update(0, 0, k, k)
    cache.reorder(torch.tensor([1]))
    keys, _ = cache.update(0, 3, _slots(1, 1, 1, 2, 103), _slots(1, 1, 1, 2, 103))
    assert torch.equal(keys, _slots(1, 1, 4, 2, 100))
