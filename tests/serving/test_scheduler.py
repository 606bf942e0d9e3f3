"""The scheduler's policy, step by step: admission, chunked prefill, cancellation, the queue."""

from __future__ import annotations

import pytest
import torch

from qwen3core import PRESETS
from qwen3core.errors import GenerationError
from qwen3core.serving import QueueFullError, Scheduler, ServeRequest
from qwen3core.testing.models import reference_model


@pytest.fixture(scope="module")
def model():
    return reference_model(PRESETS["tiny"], torch.float32)


def request(prompt, new, log):
    return ServeRequest(list(prompt), new, log.append)


def test_running_streams_get_a_token_every_step_while_a_long_prompt_prefills(model):
    scheduler = Scheduler(model, max_batch=2, prefill_chunk=4, max_context=64)
    a, b = [], []
    scheduler.submit(request([1, 2, 3], 30, a))
    scheduler.step()  # a prefills and decodes
    scheduler.submit(request(list(range(10, 30)), 3, b))  # 20 tokens: 5 chunks of 4
    for step in range(5):
        before = len(a)
        scheduler.step()
        assert len(a) == before + 1, f"the running stream stalled at step {step}"
        assert (len(b) > 0) == (step == 4)  # b's first token after its last chunk
    assert len(b) == 2  # ... and it joined the batch and decoded in that same step
    scheduler.step()
    assert len(b) == 3 and b[-1].finish_reason == "length"


def test_a_cancelled_row_leaves_at_the_next_step_and_the_others_go_on(model):
    scheduler = Scheduler(model, max_batch=2, max_context=64)
    a, b = [], []
    first = request([1, 2, 3], 20, a)
    scheduler.submit(first)
    scheduler.submit(request([4, 5], 6, b))
    for _ in range(3):
        scheduler.step()
    first.cancel()
    tokens = len(a)
    scheduler.step()
    assert a[-1].finish_reason == "cancelled" and len(a) == tokens + 1
    assert scheduler.running == 1
    while not scheduler.idle:
        scheduler.step()
    assert b[-1].finish_reason == "length" and len([e for e in b if e.token_id]) == 6


def test_the_queue_is_bounded(model):
    scheduler = Scheduler(model, max_batch=1, max_waiting=1, max_context=64)
    scheduler.submit(request([1], 5, []))
    scheduler.step()  # admitted: now running
    scheduler.submit(request([2], 5, []))  # waits
    with pytest.raises(QueueFullError):
        scheduler.submit(request([3], 5, []))
    assert scheduler.waiting == 1 and scheduler.running == 1


def test_requests_that_can_never_run_are_refused(model):
    scheduler = Scheduler(model, max_context=16)
    with pytest.raises(GenerationError, match="context"):
        scheduler.submit(request(list(range(10)), 10, []))
    with pytest.raises(GenerationError, match="empty"):
        scheduler.submit(request([], 1, []))
    with pytest.raises(GenerationError, match="outside"):
        scheduler.submit(request([100000], 1, []))


def test_a_failed_step_ends_every_request_with_an_error(model):
    scheduler = Scheduler(model, max_batch=1, max_context=64)
    a, b = [], []
    scheduler.submit(request([1], 5, a))
    scheduler.submit(request([2], 5, b))
    scheduler.step()
    scheduler.fail_all("boom")
    assert a[-1].finish_reason == b[-1].finish_reason == "error" and scheduler.idle
