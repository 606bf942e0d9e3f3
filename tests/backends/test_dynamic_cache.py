"""The growing KV cache: exactly the written slots, in order, with amortised growth."""

import torch
from qwen3core_backends.eager.kv_cache import MIN_SLOTS, DynamicKVCache


def _slots(b, h, s, d, first):
    """[b, h, s, d] whose every element is its slot number, so order errors show."""
    slots = torch.arange(first, first + s, dtype=torch.float32)
    return slots[None, None, :, None].expand(b, h, s, d).clone()


def _at(slot, rows=1):
    return torch.full((rows,), slot, dtype=torch.int64)


def test_returns_every_written_slot_in_order_across_regrowth():
    for capacity in (None, 40, 1000):
        cache = DynamicKVCache(num_layers=2, capacity=capacity)
        written = 0
        for step in [7] + [1] * 20 + [5, 3]:  # a prompt, then decode steps and a few chunks
            k, v = _slots(2, 3, step, 4, written), -_slots(2, 3, step, 4, written)
            for layer in range(2):
                keys, values = cache.update(layer, _at(written, 2), k, v, written + step)
                expected = _slots(2, 3, written + step, 4, 0)
                assert torch.equal(keys, expected)
                assert torch.equal(values, -expected)
            written += step


def test_decode_steps_write_in_place_instead_of_copying_the_history():
    cache = DynamicKVCache(num_layers=1, capacity=None)
    cache.update(0, _at(0), _slots(1, 1, 10, 2, 0), _slots(1, 1, 10, 2, 0), 10)
    buffer = cache.keys[0]
    for slot in range(10, 10 + MIN_SLOTS):
        cache.update(0, _at(slot), _slots(1, 1, 1, 2, slot), _slots(1, 1, 1, 2, slot), slot + 1)
    assert cache.keys[0] is buffer  # one buffer for the prompt and MIN_SLOTS decode steps
    regrown = cache.keys[0]
    end = 10 + MIN_SLOTS
    cache.update(0, _at(end), _slots(1, 1, 1, 2, 0), _slots(1, 1, 1, 2, 0), end + 1)
    assert cache.keys[0] is not regrown and cache.keys[0].shape[2] >= 2 * end


def test_growth_stops_at_the_capacity_but_not_before_what_is_needed():
    cache = DynamicKVCache(num_layers=1, capacity=12)
    cache.update(0, _at(0), _slots(1, 1, 4, 2, 0), _slots(1, 1, 4, 2, 0), 4)
    assert cache.keys[0].shape[2] == 12
    keys, _ = cache.update(0, _at(4), _slots(1, 1, 10, 2, 4), _slots(1, 1, 10, 2, 4), 14)
    assert torch.equal(keys, _slots(1, 1, 14, 2, 0))


def test_rows_write_at_their_own_slots_and_unwritten_slots_read_zero():
    cache = DynamicKVCache(num_layers=1, capacity=None)
    k = _slots(2, 1, 3, 2, 0)
    cache.update(0, torch.tensor([0, 2]), k, k, 5)  # row 1 starts two slots later
    keys, _ = cache.update(0, torch.tensor([3, 5]), _slots(2, 1, 1, 2, 7), k[:, :, :1], 6)
    assert keys[0, 0, :, 0].tolist() == [0, 1, 2, 7, 0, 0]
    assert keys[1, 0, :, 0].tolist() == [0, 0, 0, 1, 2, 7]


def test_reorder_and_extend_keep_each_row_at_its_position():
    cache = DynamicKVCache(num_layers=1, capacity=None)
    k = torch.stack([_slots(1, 1, 3, 2, 0)[0], _slots(1, 1, 3, 2, 100)[0]])  # rows differ
    cache.update(0, _at(0, 2), k, k, 3)
    cache.reorder(torch.tensor([1]))
    keys, _ = cache.update(0, _at(3), _slots(1, 1, 1, 2, 103), _slots(1, 1, 1, 2, 103), 4)
    assert torch.equal(keys, _slots(1, 1, 4, 2, 100))
    joining = DynamicKVCache(num_layers=1, capacity=None)
    joining.update(0, _at(0), _slots(1, 1, 2, 2, 50), _slots(1, 1, 2, 2, 50), 2)
    cache.extend(joining)
    keys, _ = cache.update(0, torch.tensor([4, 2]), _slots(2, 1, 1, 2, 9), k[:, :, :1], 5)
    assert keys[0, 0, :, 0].tolist() == [100, 101, 102, 103, 9]
    assert keys[1, 0, :, 0].tolist() == [50, 51, 9, 0, 0]


def test_layer_buffers_grow_as_update_would_and_hand_out_the_same_buffers():
    # One storage grows through update, the other through layer_buffers (then written by the
    # caller, as the cpu backend's stacked decode step writes): same buffers, same contents.
    for capacity in (None, 300):
        by_update = DynamicKVCache(num_layers=2, capacity=capacity)
        by_buffers = DynamicKVCache(num_layers=2, capacity=capacity)
        assert by_buffers.layer_buffers(5) is None  # nothing written yet: nothing to hand out
        k, v = _slots(1, 3, 7, 4, 0), -_slots(1, 3, 7, 4, 0)
        for layer in range(2):
            by_update.update(layer, _at(0), k, v, 7)
            by_buffers.update(layer, _at(0), k, v, 7)
        for written in range(7, 7 + MIN_SLOTS + 40):  # decode steps, past the first room
            k, v = _slots(1, 3, 1, 4, written), -_slots(1, 3, 1, 4, written)
            keys, values = by_buffers.layer_buffers(written + 1)
            for layer in range(2):
                by_update.update(layer, _at(written), k, v, written + 1)
                keys[layer][:, :, written] = k[:, :, 0]
                values[layer][:, :, written] = v[:, :, 0]
                assert keys[layer] is by_buffers.keys[layer]
                assert keys[layer].shape == by_update.keys[layer].shape
                assert torch.equal(keys[layer], by_update.keys[layer])
                assert torch.equal(values[layer], by_update.values[layer])
