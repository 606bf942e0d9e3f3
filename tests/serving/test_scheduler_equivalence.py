"""The central serving property: under continuous batching, every request's greedy output
equals the same request generated alone offline.

Requests of mixed prompt lengths and token budgets arrive at random step boundaries, wait when
the batch is full, are prefilled in chunks while others decode, join the running batch (at
their own cache positions) and leave it when done. float64 must match the offline run exactly
(every token, logits to 1e-9); float32 follows the suite's margin rule
(:mod:`qwen3core.testing.tolerances`): tokens must match wherever the offline run's top-1/top-2
margin is clear of rounding.
"""

from __future__ import annotations

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qwen3core import PRESETS
from qwen3core.cache import Cache
from qwen3core.registry import get_registry
from qwen3core.serving import Scheduler, ServeRequest
from qwen3core.testing import GreedyRun, assert_greedy_equivalent, candidate_model, specs
from qwen3core.testing.models import reference_model
from qwen3core.testing.properties import exact_run, one_cpu_thread, reference_run
from qwen3core.testing.strategies import combinations, long_specs, prompts
from qwen3core.testing.suite import scaled_examples
from qwen3core.testing.tolerances import tolerance_for

DTYPES = (torch.float64, torch.float32)


@st.composite
def arrivals(draw: st.DrawFn, vocab_size: int) -> list[tuple[int, tuple[int, ...], int]]:
    """(arrival step, prompt, max_new_tokens) for 1-5 requests of mixed lengths."""
    count = draw(st.integers(1, 5))
    return [(draw(st.integers(0, 6)), draw(prompts(vocab_size, 1, 12)), draw(st.integers(1, 6)))
            for _ in range(count)]


@st.composite
def long_arrivals(draw: st.DrawFn, vocab_size: int) -> list[tuple[int, tuple[int, ...], int]]:
    """2-3 requests whose prompts run to hundreds of tokens (crossing the cache's regrowth,
    slot 64, position 100 and a yarn spec's original context), arriving a few steps apart."""
    count = draw(st.integers(2, 3))
    return [(draw(st.integers(0, 4)), draw(prompts(vocab_size, 40, 400)), draw(st.integers(1, 4)))
            for _ in range(count)]


def serve(model, load, *, max_batch: int, prefill_chunk: int, max_waiting: int = 16,
          max_context: int = 64):
    """Run ``load`` through a scheduler, submitting each request at its step; -> per request
    (tokens, logits [steps, vocab]) in the order of ``load``."""
    scheduler = Scheduler(model, max_batch=max_batch, prefill_chunk=prefill_chunk,
                          max_waiting=max_waiting, max_context=max_context)
    outputs = [([], []) for _ in load]
    finished = [False] * len(load)

    def collector(i):
        def emit(event):
            assert not finished[i], "an event after the request finished"
            if event.token_id is not None:
                outputs[i][0].append(event.token_id)
                outputs[i][1].append(event.logits)
            if event.finish_reason is not None:
                assert event.finish_reason == "length", event
                finished[i] = True
        return emit

    step = 0
    while not all(finished):
        for i, (arrival, prompt, new) in enumerate(load):
            if arrival == step:
                scheduler.submit(ServeRequest(list(prompt), new, collector(i),
                                              record_logits=True))
        scheduler.step()
        step += 1
        assert step < 500, "the scheduler stopped making progress"
    assert scheduler.idle
    return [(tokens, torch.stack(logits)) for tokens, logits in outputs]


@settings(max_examples=scaled_examples(15), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_every_request_under_load_equals_it_generated_alone(data):
    dtype = data.draw(st.sampled_from(DTYPES), label="dtype")
    spec = data.draw(specs(), label="spec")
    load = data.draw(arrivals(spec.vocab_size), label="load")
    space = combinations(get_registry(), "cpu", dtype, runners=("eager",))
    selection = data.draw(st.sampled_from(space), label="selection")
    max_batch = data.draw(st.integers(1, 4), label="max_batch")
    prefill_chunk = data.draw(st.integers(1, 8), label="prefill_chunk")
    tolerance = tolerance_for(dtype)
    with one_cpu_thread():
        model = candidate_model(reference_model(spec, dtype), selection)
        served = serve(model, load, max_batch=max_batch, prefill_chunk=prefill_chunk)
        for i, ((_, prompt, new), (tokens, logits)) in enumerate(zip(load, served)):
            assert len(tokens) == new
            alone = reference_run(spec, dtype, "cpu", (prompt,), new)
            exact = exact_run(spec, dtype, "cpu", (prompt,), new)
            assert_greedy_equivalent(alone, GreedyRun([tokens], [logits], (0,)), tolerance,
                                     f"request {i} of {load}, {dtype}, {selection}", exact)


@settings(max_examples=scaled_examples(3), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_long_requests_under_load_equal_them_generated_alone(data):
    """The same property at real lengths: long prompts prefilled in chunks of tens to hundreds
    of tokens while the other rows decode (float64: exact)."""
    dtype = torch.float64
    spec = data.draw(long_specs(moe=None), label="spec")
    load = data.draw(long_arrivals(spec.vocab_size), label="load")
    space = combinations(get_registry(), "cpu", dtype, runners=("eager",))
    selection = data.draw(st.sampled_from(space), label="selection")
    max_batch = data.draw(st.integers(1, 3), label="max_batch")
    prefill_chunk = data.draw(st.sampled_from([17, 64, 256]), label="prefill_chunk")
    with one_cpu_thread():
        model = candidate_model(reference_model(spec, dtype), selection)
        served = serve(model, load, max_batch=max_batch, prefill_chunk=prefill_chunk,
                       max_context=512)
        for i, ((_, prompt, new), (tokens, logits)) in enumerate(zip(load, served)):
            alone = reference_run(spec, dtype, "cpu", (prompt,), new)
            assert_greedy_equivalent(alone, GreedyRun([tokens], [logits], (0,)),
                                     tolerance_for(dtype),
                                     f"request {i} (prompt {len(prompt)} tokens), {selection}")


def test_a_wrong_position_is_caught():
    """The property has teeth: a join that loses the joining row's position count (so its
    next tokens are rotated as if its prompt were not there) disagrees with the offline run."""
    model = reference_model(PRESETS["tiny"], torch.float64)
    load = [(0, (1, 2, 3, 4, 5, 6, 7), 5), (2, (9, 8), 4)]
    original = Cache.extend

    def misplaced(self, other):
        original(self, other)
        self.seen[-1] = 0

    Cache.extend = misplaced
    try:
        served = serve(model, load, max_batch=2, prefill_chunk=4)
    finally:
        Cache.extend = original
    alone = reference_run(PRESETS["tiny"], torch.float64, "cpu", (load[1][1],), 4)
    try:
        assert_greedy_equivalent(alone, GreedyRun([served[1][0]], [served[1][1]], (0,)),
                                 tolerance_for(torch.float64))
    except AssertionError:
        return
    raise AssertionError("a row at the wrong position went unnoticed")
