"""Fuzzing every generation argument: each call either succeeds or raises one of the project's
own exceptions with a message; never a raw exception, never a hang (an alarm bounds each call).
Memory stays bounded by construction: at most 4 new tokens on random:tiny."""

import math
import signal

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from qwen3core.errors import Qwen3CoreError
from qwen3core.generation.results import GenerationResult
from qwen3core.generation.sampling import SamplingParams

SECONDS_PER_CALL = 30

junk = st.one_of(st.none(), st.booleans(), st.text(max_size=3), st.lists(st.integers(), max_size=2),
                 st.just(object()), st.just(math.inf), st.just(math.nan))
any_float = st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                      st.integers(min_value=-(2**70), max_value=2**70), junk)


def mostly(valid, bad=any_float):
    """Nine draws in ten from ``valid``: with several arguments bad at once only the first is
    reported, so mostly valid ones let every check (and generation itself) run often."""
    return st.integers(0, 9).flatmap(lambda i: bad if i == 0 else valid)


prompts = mostly(st.one_of(
    st.lists(st.integers(0, 511), min_size=1, max_size=6),  # valid ids of random:tiny
    st.lists(st.lists(st.integers(0, 511), min_size=1, max_size=4), min_size=1, max_size=3)),
    st.one_of(st.lists(st.integers(-(2**70), 2**70), max_size=4),
              st.lists(st.lists(st.integers(0, 511), max_size=4), max_size=3),
              st.text(max_size=5),  # text without a tokenizer
              st.just([{"role": "user", "content": "hi"}]), junk))
arguments = st.fixed_dictionaries({}, optional={
    "max_new_tokens": mostly(st.integers(1, 4), st.one_of(st.integers(-2, 0), st.just(10**9),
                                                          junk)),
    "temperature": mostly(st.floats(0, 3)),
    "top_k": mostly(st.integers(0, 600)),
    "top_p": mostly(st.floats(0, 1, exclude_min=True)),
    "min_p": mostly(st.floats(0, 1)),
    "repetition_penalty": mostly(st.floats(0.1, 3)),
    "presence_penalty": mostly(st.floats(-2, 2)),
    "frequency_penalty": mostly(st.floats(-2, 2)),
    "seed": mostly(st.integers(0, 2**64 - 1),
                   st.one_of(st.integers(min_value=-(2**80), max_value=-1),
                             st.integers(min_value=2**64, max_value=2**80), junk)),
    "stop": st.one_of(st.none(), st.text(max_size=3), st.lists(st.text(max_size=2), max_size=2),
                      st.integers(), junk),
    "enable_thinking": mostly(st.booleans(), junk),
    "eos_token_ids": mostly(st.one_of(st.none(), st.integers(0, 511),
                                      st.lists(st.integers(0, 511), max_size=3)),
                            st.one_of(st.integers(-5, -1), junk)),
    "sampling": mostly(st.sampled_from([None, SamplingParams(temperature=1.0, seed=1)]), junk),
})


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang(f"a generate call ran longer than {SECONDS_PER_CALL} s")


@pytest.mark.parametrize("how", ["generate", "stream"])
@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                HealthCheck.too_slow])
@given(prompt=prompts, kwargs=arguments)
def test_generation_arguments_succeed_or_raise_a_project_error(tiny64, how, prompt, kwargs):
    kwargs.setdefault("max_new_tokens", 3)
    if isinstance(kwargs["max_new_tokens"], int) and not isinstance(
            kwargs["max_new_tokens"], bool) and 0 < kwargs["max_new_tokens"] < 10**9:
        kwargs["max_new_tokens"] = min(kwargs["max_new_tokens"], 4)
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(SECONDS_PER_CALL)
    try:
        if how == "generate":
            result = tiny64.generate(prompt, **kwargs)
        else:
            result = tiny64.stream(prompt, **kwargs).collect()
    except Qwen3CoreError as exc:
        assert str(exc).strip(), f"{type(exc).__name__} without a message"
        event(f"refused: {str(exc)[:30]}")
        return
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    event("generated")
    results = result if isinstance(result, list) else [result]
    assert all(isinstance(r, GenerationResult) and 1 <= len(r.token_ids) <= 4 for r in results)
