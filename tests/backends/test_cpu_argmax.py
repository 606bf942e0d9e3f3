"""qwen3core_cpu::argmax and the greedy pick it serves: torch.argmax(dim=-1)'s index exactly.

Exact, not close: the lowest index among equal maxima (ties are common in bfloat16), -0.0 and
+0.0 equal, the first NaN of a row that has one, infinities ordered. Values are drawn from a
small set of levels so that ties, signed zeros and special values actually occur.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from qwen3core_backends import cpu as cpu_backend
from qwen3core_backends.cpu.build import load_kernels

from qwen3core.generation.greedy import greedy_tokens
from qwen3core.generation.sampling import SamplingParams, sample_next

CPU = torch.device("cpu")
_missing = cpu_backend._check(CPU, torch.float32)
pytestmark = pytest.mark.skipif(_missing is not None,
                                reason=f"cpu kernels unavailable here: {_missing}")

LEVELS = [0.0, -0.0, 1.0, -1.0, 2.5, -2.5, 3.0, 1e-40, -1e-40, math.inf, -math.inf, 7.0]


@pytest.fixture(scope="module", autouse=True)
def kernels():
    load_kernels()


def row_strategy():
    return st.tuples(
        st.sampled_from([torch.bfloat16, torch.float32]),
        st.integers(1, 3),  # rows
        st.integers(1, 700),  # vocab: below, at and across the kernel's 256-element blocks
        st.integers(0, 2**31 - 1),
        st.booleans(),  # a NaN somewhere
    )


@given(row_strategy())
def test_argmax_equals_torch_on_ties_zeros_and_specials(case):
    dtype, rows, vocab, seed, with_nan = case
    g = torch.Generator().manual_seed(seed)
    levels = torch.tensor(LEVELS)
    logits = levels[torch.randint(0, len(LEVELS), (rows, vocab), generator=g)]
    logits = logits + torch.randn(rows, vocab, generator=g).round() * 0.5  # more distinct values
    if with_nan:
        logits.view(-1)[torch.randint(0, rows * vocab, (2,), generator=g)] = math.nan
    logits = logits.to(dtype)
    got = torch.ops.qwen3core_cpu.argmax(logits)
    assert got.dtype == torch.int64
    assert torch.equal(got, logits.argmax(dim=-1))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_argmax_on_the_vocabulary_lowest_tie_and_strided_rows(dtype):
    vocab = 151936
    logits = torch.randn(4, 2, vocab, generator=torch.Generator().manual_seed(3)).to(dtype)
    logits[0, 1, 5] = logits[0, 1, vocab - 1] = 100.0  # a tie: the lower index wins
    logits[2, 0, :] = -0.0
    logits[2, 0, 9] = 0.0  # equal to -0.0: index 0 wins, as in torch
    last = logits[:, -1]  # what the model's [:, -1] hands the loop: a strided view
    for x in (logits, last, logits[1, 0]):
        assert torch.equal(torch.ops.qwen3core_cpu.argmax(x), x.argmax(dim=-1))
    assert int(torch.ops.qwen3core_cpu.argmax(logits)[0, 1]) == 5
    assert int(torch.ops.qwen3core_cpu.argmax(logits)[2, 0]) == 0


def test_argmax_refuses_what_it_cannot_take():
    with pytest.raises(RuntimeError, match="bfloat16 or float32"):
        torch.ops.qwen3core_cpu.argmax(torch.zeros(2, 4, dtype=torch.float16))
    with pytest.raises(RuntimeError, match="non-empty last dimension"):
        torch.ops.qwen3core_cpu.argmax(torch.zeros(2, 0))


def test_greedy_pick_goes_through_the_kernel(monkeypatch):
    logits = torch.randn(3, 1000, generator=torch.Generator().manual_seed(4)).to(torch.bfloat16)
    calls = []
    real = torch.ops.qwen3core_cpu.argmax

    class Spy:
        def argmax(self, x):
            calls.append(x.shape)
            return real(x)

    monkeypatch.setattr(torch.ops, "qwen3core_cpu", Spy())
    picked = sample_next(logits, SamplingParams(temperature=0.0), None)
    assert torch.equal(picked, logits.argmax(dim=-1)) and calls == [(3, 1000)]
    # A dtype the kernel does not take: torch's argmax, same answer.
    half = logits.to(torch.float16)
    assert torch.equal(greedy_tokens(half), half.argmax(dim=-1)) and len(calls) == 1
