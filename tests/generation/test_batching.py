"""Batched generation: left padding is invisible to each row, rows stop on their own and leave
the batch, and sampling is reproducible."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

MAX_NEW = 6

prompt = st.lists(st.integers(0, 511), min_size=1, max_size=12)


def _alone(loaded, prompts, **kwargs):
    return [loaded.generate(p, max_new_tokens=MAX_NEW, **kwargs).token_ids for p in prompts]


@pytest.mark.parametrize("fixture", ["tiny64", "tiny_moe64"])
@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(prompts=st.lists(prompt, min_size=2, max_size=4))
def test_greedy_row_in_a_padded_batch_equals_the_prompt_alone(fixture, prompts, request):
    loaded = request.getfixturevalue(fixture)
    batch = loaded.generate(prompts, max_new_tokens=MAX_NEW)
    assert [r.token_ids for r in batch] == _alone(loaded, prompts)
    assert [r.prompt_tokens for r in batch] == [len(p) for p in prompts]
    assert all(r.finish_reason == "length" for r in batch)


@pytest.mark.parametrize("fixture", ["tiny64", "tiny_moe64"])
@settings(max_examples=10, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(prompts=st.lists(prompt, min_size=2, max_size=4), data=st.data())
def test_each_row_stops_at_its_own_eos(fixture, prompts, data, request):
    loaded = request.getfixturevalue(fixture)
    free = [r.token_ids for r in loaded.generate(prompts, max_new_tokens=MAX_NEW)]
    # Make a token that some row generates mid-way an eos token.
    row = data.draw(st.integers(0, len(prompts) - 1))
    eos = free[row][data.draw(st.integers(0, MAX_NEW - 2))]
    stopped = loaded.generate(prompts, max_new_tokens=MAX_NEW, eos_token_ids=[eos])
    for full, result in zip(free, stopped, strict=True):
        if eos in full:
            assert result.token_ids == full[:full.index(eos) + 1]
            assert result.finish_reason == "stop"
        else:
            assert result.token_ids == full
            assert result.finish_reason == "length"


def test_finished_rows_leave_the_batch(tiny64):
    prompts = [[5, 6, 7], [8, 9], [10, 11, 12, 13]]
    free = [r.token_ids for r in tiny64.generate(prompts, max_new_tokens=MAX_NEW)]
    eos = free[1][1]  # row 1 stops after its second token
    batch_sizes = []
    hook = tiny64.model.model.embed_tokens.register_forward_pre_hook(
        lambda module, args: batch_sizes.append(args[0].shape[0]))
    try:
        results = tiny64.generate(prompts, max_new_tokens=MAX_NEW, eos_token_ids=[eos])
    finally:
        hook.remove()
    lengths = [len(r.token_ids) for r in results]
    # One forward per step while any row is live; each forward only holds the live rows.
    expected = [sum(n > step for n in lengths) for step in range(max(lengths))]
    assert batch_sizes == expected
    assert batch_sizes[-1] < len(prompts)


def test_the_cache_is_sized_from_the_request(tiny64, monkeypatch):
    capacities = []
    original = tiny64.model.new_cache

    def spy(batch_size, capacity=None):
        capacities.append((batch_size, capacity))
        return original(batch_size, capacity)

    monkeypatch.setattr(tiny64.model, "new_cache", spy)
    tiny64.generate([[1, 2, 3], [4] * 7], max_new_tokens=5)
    assert capacities == [(2, 7 + 5)]


def test_same_seed_same_samples_and_different_seed_differs(tiny64):
    prompts = [[1, 2, 3], [9, 8, 7, 6, 5]]
    kwargs = {"max_new_tokens": 12, "temperature": 1.0, "top_p": 0.95}
    first = [r.token_ids for r in tiny64.generate(prompts, seed=11, **kwargs)]
    again = [r.token_ids for r in tiny64.generate(prompts, seed=11, **kwargs)]
    other = [r.token_ids for r in tiny64.generate(prompts, seed=12, **kwargs)]
    assert first == again
    assert first != other


def test_sampled_row_does_not_depend_on_its_batch_mates(tiny64):
    kwargs = {"max_new_tokens": 10, "temperature": 0.8, "seed": 3}
    alone = tiny64.generate([4, 5, 6], **kwargs).token_ids
    in_batch = tiny64.generate([[4, 5, 6], [1, 2, 3, 4, 5, 6, 7]], **kwargs)[0].token_ids
    assert in_batch == alone


@pytest.mark.parametrize("fixture", ["tiny64", "tiny_moe64"])
def test_top_k_one_is_greedy(fixture, request):
    loaded = request.getfixturevalue(fixture)
    prompts = [[3, 1, 4, 1, 5], [9, 2, 6]]
    greedy = [r.token_ids for r in loaded.generate(prompts, max_new_tokens=10)]
    top1 = [r.token_ids for r in loaded.generate(prompts, max_new_tokens=10, temperature=1.5,
                                                 top_k=1, seed=0)]
    assert top1 == greedy


def test_a_single_prompt_gives_one_result_and_a_list_gives_a_list(tiny64):
    one = tiny64.generate([1, 2, 3], max_new_tokens=2)
    many = tiny64.generate([[1, 2, 3]], max_new_tokens=2)
    assert isinstance(many, list) and len(many) == 1
    assert many[0].token_ids == one.token_ids and len(one.token_ids) == 2
    assert one.text is None  # random models have no tokenizer
    t = one.timings
    assert t.prefill_s > 0 and t.time_to_first_token_s >= t.prefill_s and t.decode_s >= 0
