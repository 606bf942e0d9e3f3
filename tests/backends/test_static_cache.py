"""The static KV cache: allocated once, written in place, exact with left padding and reorder."""

from __future__ import annotations

import pytest
import torch
from qwen3core_backends.static_cache import CAPACITY_MULTIPLE
from qwen3core_backends.static_cache.kv_cache import StaticKVCache

from qwen3core import PRESETS, GenerationError
from qwen3core.build import build_random, select_backends
from qwen3core.cache import Cache
from qwen3core.testing.models import reference_names

CPU = torch.device("cpu")
GEN = torch.Generator().manual_seed(0)


def _model(kv_cache: str, preset: str = "tiny", dtype=torch.float64):
    selection = select_backends({**reference_names(), "kv_cache": kv_cache}, device=CPU,
                                dtype=dtype)
    return build_random(PRESETS[preset], selection, dtype=dtype, device=CPU, seed=1)


def test_buffers_are_allocated_once_at_the_requested_capacity_rounded_up():
    cache = StaticKVCache(2, 3, 2, 70, 8, dtype=torch.float32, device=CPU, round_to=64)
    assert cache.capacity == 128
    assert cache.keys[0].shape == (3, 2, 128, 8)
    pointers = [t.data_ptr() for t in cache.keys + cache.values]
    k = torch.randn(3, 2, 4, 8, generator=GEN)
    keys, values = cache.update(1, torch.zeros(3, dtype=torch.long), k, k + 1, None)
    keys2, _ = cache.update(1, torch.full((3,), 4), k * 2, k, None)
    assert [t.data_ptr() for t in cache.keys + cache.values] == pointers
    assert keys2 is keys and keys.shape == (3, 2, 128, 8)
    assert torch.equal(keys[:, :, :4], k) and torch.equal(keys[:, :, 4:8], k * 2)
    assert torch.equal(values[:, :, :4], k + 1)
    assert not keys[:, :, 8:].any()


def test_a_write_past_the_capacity_is_refused():
    cache = StaticKVCache(1, 1, 1, 4, 2, dtype=torch.float32, device=CPU)
    with pytest.raises((IndexError, RuntimeError)):
        cache.update(0, torch.tensor([3]), torch.ones(1, 1, 2, 2), torch.ones(1, 1, 2, 2), None)


def test_reorder_keeps_the_chosen_rows_in_order():
    cache = StaticKVCache(1, 3, 1, 4, 2, dtype=torch.float32, device=CPU)
    k = torch.arange(3.0)[:, None, None, None].expand(3, 1, 4, 2)
    cache.update(0, torch.zeros(3, dtype=torch.long), k, k, None)
    cache.reorder(torch.tensor([2, 0]))
    assert cache.keys[0][:, 0, 0, 0].tolist() == [2.0, 0.0]
    joining = StaticKVCache(1, 1, 1, 4, 2, dtype=torch.float32, device=CPU)
    joining.update(0, torch.tensor([1]), torch.full((1, 1, 1, 2), 7.0), k[:1, :, :1], None)
    cache.extend(joining)
    assert cache.keys[0][:, 0, :, 0].tolist() == [[2.0] * 4, [0.0] * 4, [0, 7.0, 0, 0]]


def test_the_cache_asks_for_no_more_than_the_request_and_checks_the_bound():
    model = _model("static")
    cache = model.new_cache(2, 5)
    assert cache.capacity == CAPACITY_MULTIPLE  # rounded up, not the 2048-slot context
    assert cache.storage.keys[0].shape[2] == CAPACITY_MULTIPLE
    with pytest.raises(GenerationError, match="larger capacity"):
        model(torch.zeros(2, CAPACITY_MULTIPLE + 1, dtype=torch.long), cache=cache)


def test_begin_passes_per_row_device_starts_and_a_mask_over_every_slot():
    storage = StaticKVCache(1, 2, 1, 8, 2, dtype=torch.float32, device=CPU)
    cache = Cache(storage, 2, 8, CPU)
    first = cache.begin(torch.tensor([[0, 1, 1], [1, 1, 1]]), 3)
    second = cache.begin(None, 1)
    assert second.start.tolist() == [3, 3] and second.length is None
    assert second.mask.shape == (2, 1, 1, 8) and not second.plain_causal
    assert second.mask[0, 0, 0].tolist() == [False, True, True, True] + [False] * 4
    assert first.mask[0, 0, 0].tolist() == [True] + [False] * 7  # a padding query: own slot
    assert second.positions.tolist() == [[2], [3]]
    assert cache.length == 4


@pytest.mark.parametrize("preset", ["tiny", "tiny-moe"])
def test_left_padded_prefill_and_decode_equal_the_dynamic_cache(preset):
    # The transformers#30688 failure: static cache + left padding gave garbage.
    dynamic, static = _model("dynamic", preset), _model("static", preset)
    static.load_state_dict(dynamic.state_dict())
    ids = torch.randint(0, 512, (3, 6), generator=GEN)
    mask = torch.ones(3, 6, dtype=torch.long)
    mask[0, :4] = 0
    mask[1, :1] = 0
    outs = []
    with torch.no_grad():
        for model in (dynamic, static):
            cache = model.new_cache(3, 12)
            steps = [model(ids, attention_mask=mask, cache=cache)[:, -1]]
            token = steps[0].argmax(-1, keepdim=True)
            for i in range(5):
                if i == 2:  # drop the middle row and swap the others, as finished rows leave
                    cache.reorder(torch.tensor([2, 0]))
                    token = token[[2, 0]]
                steps.append(model(token, cache=cache)[:, -1])
                token = steps[-1].argmax(-1, keepdim=True)
            outs.append(steps)
    for want, got in zip(*outs):
        assert torch.allclose(got, want, atol=1e-10, rtol=0)
