"""The sampler: greedy, temperature, top-k, top-p (on constructed logits) and seeding."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from qwen3core.errors import GenerationError
from qwen3core.generation.sampling import SamplingParams, filter_top_k, filter_top_p, sample_next


def kept(logits: torch.Tensor) -> set[int]:
    return set(torch.nonzero(torch.isfinite(logits[0])).flatten().tolist())


def test_top_p_keeps_exactly_the_smallest_set_reaching_p():
    probs = torch.tensor([[0.05, 0.4, 0.1, 0.3, 0.15]], dtype=torch.float64)
    logits = probs.log()
    # Ranked: 1 (0.4), 3 (0.3), 4 (0.15), 2 (0.1), 0 (0.05); cumulative .4 .7 .85 .95 1.
    assert kept(filter_top_p(logits, 0.3)) == {1}
    assert kept(filter_top_p(logits, 0.5)) == {1, 3}
    assert kept(filter_top_p(logits, 0.8)) == {1, 3, 4}
    assert kept(filter_top_p(logits, 0.9)) == {1, 3, 4, 2}
    assert kept(filter_top_p(logits, 0.97)) == {0, 1, 2, 3, 4}
    assert kept(filter_top_p(logits, 1.0)) == {0, 1, 2, 3, 4}


def test_top_p_filters_each_row_on_its_own():
    logits = torch.tensor([[0.9, 0.05, 0.05], [0.2, 0.3, 0.5]], dtype=torch.float64).log()
    out = filter_top_p(logits, 0.6)
    assert torch.isfinite(out).tolist() == [[True, False, False], [False, True, True]]


@settings(max_examples=200, deadline=None)
@given(weights=st.lists(st.floats(0.001, 1.0), min_size=2, max_size=12),
       p=st.floats(0.01, 1.0))
def test_top_p_matches_a_brute_force_smallest_set(weights, p):
    total = sum(weights)
    probs = [w / total for w in weights]
    order = sorted(range(len(probs)), key=lambda i: -probs[i])
    cumulative = [sum(probs[j] for j in order[:n + 1]) for n in range(len(order))]
    # Stay away from boundaries where float rounding decides (and from equal probabilities,
    # where "the smallest set" is not unique).
    if any(abs(c - p) < 1e-9 for c in cumulative):
        return
    if len({round(x, 12) for x in probs}) < len(probs):
        return
    size = next((n + 1 for n, c in enumerate(cumulative) if c >= p), len(order))
    expected = set(order[:size])
    logits = torch.tensor([probs], dtype=torch.float64).log() + 3.0  # softmax-invariant shift
    assert kept(filter_top_p(logits, p)) == expected


def test_top_k_keeps_the_k_largest():
    logits = torch.tensor([[0.1, 2.0, -1.0, 3.0, 0.5]])
    assert kept(filter_top_k(logits, 2)) == {1, 3}
    assert kept(filter_top_k(logits, 0)) == {0, 1, 2, 3, 4}
    assert kept(filter_top_k(logits, 10)) == {0, 1, 2, 3, 4}


def test_top_k_then_top_p_renormalises_over_what_top_k_left():
    probs = torch.tensor([[0.4, 0.3, 0.2, 0.1]], dtype=torch.float64)
    # After top-k=2 the two survivors weigh 4/7 and 3/7: p=0.5 needs only the first.
    params = SamplingParams(temperature=1.0, top_k=2, top_p=0.5, seed=0)
    for _ in range(20):
        token = sample_next(probs.log(), params, params.generators(1, torch.device("cpu")))
        assert token.tolist() == [0]


def test_greedy_takes_the_argmax_and_needs_no_generator():
    logits = torch.tensor([[0.1, 2.0, -1.0], [5.0, 0.0, 4.9]])
    params = SamplingParams()
    assert params.greedy and params.generators(2, torch.device("cpu")) is None
    assert sample_next(logits, params, None).tolist() == [1, 0]


def test_sampling_follows_the_distribution():
    probs = torch.tensor([[0.7, 0.2, 0.1]], dtype=torch.float64)
    params = SamplingParams(temperature=1.0, seed=123)
    gens = params.generators(1, torch.device("cpu"))
    counts = [0, 0, 0]
    for _ in range(3000):
        counts[sample_next(probs.log(), params, gens).item()] += 1
    # Three-sigma bounds for 3000 draws.
    for c, p in zip(counts, (0.7, 0.2, 0.1), strict=True):
        assert abs(c / 3000 - p) < 3 * math.sqrt(p * (1 - p) / 3000)


def test_low_temperature_sharpens_and_high_temperature_flattens():
    logits = torch.tensor([[1.0, 0.0]])

    def share_of_first(t):
        params = SamplingParams(temperature=t, seed=7)
        gens = params.generators(1, torch.device("cpu"))
        return sum(sample_next(logits, params, gens).item() == 0 for _ in range(2000)) / 2000
    # softmax([1, 0] / T)[0]: T=0.25 -> 0.982, T=1 -> 0.731, T=10 -> 0.525.
    assert share_of_first(0.25) > 0.96
    assert 0.69 < share_of_first(1.0) < 0.77
    assert share_of_first(10.0) < 0.57


def test_rows_draw_from_their_own_generators():
    logits = torch.zeros(1, 1000)
    params = SamplingParams(temperature=1.0, seed=5)
    alone = sample_next(logits, params, params.generators(1, torch.device("cpu")))
    batch = sample_next(logits.expand(3, -1), params, params.generators(3, torch.device("cpu")))
    # Row 0 of a batch draws what the prompt alone draws; other rows use other seeds.
    assert batch[0].item() == alone.item()
    assert len(set(batch.tolist())) > 1


@pytest.mark.parametrize("kwargs, message", [
    ({"temperature": -0.5}, "temperature must be a finite number in [0, inf)"),
    ({"temperature": float("nan")}, "temperature must be a finite number in [0, inf)"),
    ({"top_p": 0.0}, "top_p must be a finite number in (0, 1]"),
    ({"top_p": 1.5}, "top_p must be a finite number in (0, 1]"),
    ({"top_k": -1}, "top_k must be an integer >= 0"),
    ({"top_k": 2.5}, "top_k must be an integer >= 0"),
    ({"seed": -3}, "seed must be an integer in [0, 2**64)"),
    ({"seed": 2**64}, "seed must be an integer in [0, 2**64)"),
    ({"seed": True}, "seed must be an integer in [0, 2**64)"),
    ({"temperature": float("inf")}, "temperature must be a finite number in [0, inf)"),
    ({"min_p": 1.5}, "min_p must be a finite number in [0, 1]"),
    ({"repetition_penalty": 0.0}, "repetition_penalty must be a finite number in (0, inf)"),
    ({"presence_penalty": 2.5}, "presence_penalty must be a finite number in [-2, 2]"),
    ({"frequency_penalty": float("nan")}, "frequency_penalty must be a finite number"),
])
def test_invalid_sampling_parameters_are_rejected(kwargs, message):
    with pytest.raises(GenerationError) as info:
        SamplingParams(**kwargs)
    assert message in str(info.value)
