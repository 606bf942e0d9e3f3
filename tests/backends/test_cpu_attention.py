"""The cpu backend's decode attention against exact (float64) attention.

The operator computes scores, softmax and the weighted sum in float32 from the given q/k/v and
rounds once, so it is held to float32 accuracy before that rounding: within a few float32 ulps
of the float64 result, plus the rounding to bfloat16 (unit roundoff 2^-8) for bfloat16 outputs.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from qwen3core_backends import cpu as cpu_backend
from qwen3core_backends.cpu.attention import (
    MAX_QUERY_TOKENS,
    MIN_BLOCKED_QUERY_TOKENS,
    cpu_attention,
)
from qwen3core_backends.cpu.build import load_kernels
from qwen3core_backends.eager.attention import eager_attention
from qwen3core_backends.sdpa.attention import make_sdpa_attention

from qwen3core.contracts import AttentionBatch

CPU = torch.device("cpu")
_missing = cpu_backend._check(CPU, torch.float32)
pytestmark = pytest.mark.skipif(_missing is not None,
                                reason=f"cpu kernels unavailable here: {_missing}")


@pytest.fixture(scope="module", autouse=True)
def kernels():
    load_kernels()


def _inputs(seed, dtype, batch, heads_q, heads_kv, seq, keys, dim, room):
    """q as the model makes it ([B, S, H, D] viewed as [B, H, S, D]); k/v as views of the
    first ``keys`` slots of cache buffers with ``room`` slots; a random mask in which every
    query row keeps at least one key."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, seq, heads_q, dim, generator=g).to(dtype).transpose(1, 2)
    k = torch.randn(batch, heads_kv, room, dim, generator=g).to(dtype)[:, :, :keys]
    v = torch.randn(batch, heads_kv, room, dim, generator=g).to(dtype)[:, :, :keys]
    mask = torch.rand(batch, 1, seq, keys, generator=g) < 0.7
    mask[..., torch.randint(0, keys, (1,), generator=g)] = True
    return q, k, v, mask


def _exact(q, k, v, mask, scale):
    batch = AttentionBatch(positions=torch.zeros(1, 1, dtype=torch.long), mask=mask, start=0)
    return eager_attention(q.double(), k.double(), v.double(), batch, scale)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**16), dtype=st.sampled_from([torch.float32, torch.bfloat16]),
       batch=st.integers(1, 3), heads_kv=st.integers(1, 3), groups=st.integers(1, 10),
       seq=st.integers(1, MAX_QUERY_TOKENS), keys=st.integers(1, 70),
       dim=st.sampled_from([4, 8, 13, 64]), spare=st.integers(0, 9))
def test_matches_exact_attention(seed, dtype, batch, heads_kv, groups, seq, keys, dim, spare):
    q, k, v, mask = _inputs(seed, dtype, batch, heads_kv * groups, heads_kv, seq, keys, dim,
                            keys + spare)
    scale = dim ** -0.5
    got = torch.ops.qwen3core_cpu.attention(q, k, v, mask, scale)
    want = _exact(q, k, v, mask, scale)
    assert got.shape == q.shape and got.dtype == dtype
    rounding = 2.0 ** -8 if dtype == torch.bfloat16 else 0.0
    bound = want.abs() * rounding + 1e-5 * (1 + want.abs())
    excess = ((got.double() - want).abs() - bound).max().item()
    assert excess <= 0, f"off the exact result by {excess:.3g} beyond the bound"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_long_context_split_over_threads_matches_exact_attention(dtype):
    """Enough keys that the operator hands tasks to several threads (on a multi-core run)."""
    q, k, v, mask = _inputs(5, dtype, 2, 8, 2, 2, 1500, 64, 1503)
    got = torch.ops.qwen3core_cpu.attention(q, k, v, mask, 0.125)
    want = _exact(q, k, v, mask, 0.125)
    rounding = 2.0 ** -8 if dtype == torch.bfloat16 else 0.0
    bound = want.abs() * rounding + 1e-5 * (1 + want.abs())
    assert ((got.double() - want).abs() - bound).max().item() <= 0


def _check_against_exact(seed: int, dtype: torch.dtype, groups: int, keys: int, dim: int):
    q, k, v, mask = _inputs(seed, dtype, 2, 2 * groups, 2, 2, keys, dim, keys + 3)
    got = torch.ops.qwen3core_cpu.attention(q, k, v, mask, dim ** -0.5)
    want = _exact(q, k, v, mask, dim ** -0.5)
    rounding = 2.0 ** -8 if dtype == torch.bfloat16 else 0.0
    bound = want.abs() * rounding + 1e-5 * (1 + want.abs())
    assert ((got.double() - want).abs() - bound).max().item() <= 0


@pytest.mark.parametrize(("dtype", "groups"), [(torch.bfloat16, 8), (torch.float32, 10)])
def test_many_query_heads_per_key_value_head(dtype, groups):
    """Qwen3-32B and the MoE models put 8 query heads on each key/value head (one pass over the
    keys for all of them), and more than 8 take a further pass; 300 keys make whole blocks of
    keys and a remainder, some of them masked."""
    _check_against_exact(11, dtype, groups, 300, 128)


def test_avx2_loops_when_forced(run_forced_avx2):
    """The AVX2 loops on a machine that would pick AVX-512 (the choice follows the linear
    kernels', made once per process, so in a fresh one); on an AVX2 machine, the same loops."""
    code = ("import torch; from qwen3core_backends.cpu.build import isa; assert isa() == 'avx2';"
            "from tests.backends.test_cpu_attention import _check_against_exact as c;"
            "[c(s, t, g, n, d) for s, (t, g, n, d) in enumerate([(torch.float32, 1, 9, 13),"
            " (torch.bfloat16, 2, 70, 64), (torch.bfloat16, 5, 33, 128),"
            " (torch.float32, 3, 40, 24), (torch.bfloat16, 8, 50, 128),"
            " (torch.float32, 10, 19, 16)])]")
    run_forced_avx2(code)


def test_output_is_laid_out_for_the_following_reshape():
    q, k, v, mask = _inputs(1, torch.float32, 2, 4, 2, 1, 9, 8, 9)
    out = torch.ops.qwen3core_cpu.attention(q, k, v, mask, 0.3)
    assert out.transpose(1, 2).is_contiguous()  # [B, S, H, D] memory: reshape needs no copy


def test_masked_keys_have_no_influence():
    q, k, v, mask = _inputs(2, torch.float32, 1, 2, 1, 1, 12, 8, 12)
    mask[..., 5:] = False
    mask[..., 0] = True
    poisoned_k, poisoned_v = k.clone(), v.clone()
    poisoned_k[:, :, 5:] = 1e4
    poisoned_v[:, :, 5:] = float("nan")
    op = torch.ops.qwen3core_cpu.attention
    assert torch.equal(op(q, poisoned_k, poisoned_v, mask, 0.5), op(q, k, v, mask, 0.5))


def test_continuations_between_the_loop_and_the_blocks_go_to_sdpa():
    seq = MAX_QUERY_TOKENS + 5
    assert seq < MIN_BLOCKED_QUERY_TOKENS
    q, k, v, mask = _inputs(3, torch.float32, 1, 4, 2, seq, seq, 8, seq)
    batch = AttentionBatch(positions=torch.zeros(1, seq, dtype=torch.long), mask=mask, start=0)
    sdpa = make_sdpa_attention(native_gqa=True)
    assert torch.equal(cpu_attention(q, k, v, batch, 0.3), sdpa(q, k, v, batch, 0.3))


def _prompt_mask(batch, seq, keys, pads):
    """Causal over the last ``seq`` of ``keys`` positions (a prompt after keys - seq cached
    ones), with row b's first pads[b] key slots left padding that nobody may see; a padded
    row's own query positions see nothing at all (their keys are all padding)."""
    past = keys - seq
    allowed = torch.ones(seq, keys, dtype=torch.bool).tril(past)[None, None].repeat(batch, 1, 1, 1)
    for b, pad in enumerate(pads):
        allowed[b, :, :, :pad] = False
    return allowed


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(("seq", "keys", "groups", "pads"), [
    (MIN_BLOCKED_QUERY_TOKENS, MIN_BLOCKED_QUERY_TOKENS, 2, (0,)),  # a first prefill
    (200, 200, 1, (0, 37)),  # blocks that end mid-prompt, a left-padded row
    (150, 263, 3, (5, 0)),  # a prompt after 113 cached positions
    (130, 130, 2, (70, 0)),  # padding past a whole block: rows that see no key
])
def test_prompts_run_the_eager_expression_in_blocks(dtype, seq, keys, groups, pads):
    """From MIN_BLOCKED_QUERY_TOKENS new tokens on, the blocks of blocked_attention: the
    eager reference's scores, softmax and product, over the keys each block may see. Held to
    the reference itself (both round scores and weights to the dtype), and a query row that
    may see no key gets the reference's uniform weights over every key."""
    batch = len(pads)
    q, k, v, _ = _inputs(seq + keys, dtype, batch, 2 * groups, 2, seq, keys, 64, keys + 3)
    mask = _prompt_mask(batch, seq, keys, pads)
    attention = AttentionBatch(positions=torch.zeros(batch, seq, dtype=torch.long), mask=mask,
                               start=0)
    got = cpu_attention(q, k, v, attention, 0.125)
    want = eager_attention(q, k, v, attention, 0.125)
    assert got.shape == want.shape and got.dtype == dtype
    assert got.transpose(1, 2).is_contiguous()  # [B, S, H, D] memory, as the decode loop's
    torch.testing.assert_close(got, want)
    blind = ~mask.any(-1)  # [B, 1, S]: rows with nothing to see
    if blind.any():
        b, _, s = blind.nonzero()[0].tolist()
        uniform = v[b].to(torch.float64).mean(1)  # [H_kv, D]
        torch.testing.assert_close(got[b, :, s].double(),
                                   uniform.repeat_interleave(groups, 0),
                                   atol=1e-2 if dtype == torch.bfloat16 else 1e-5, rtol=0)


def test_rejects_a_mask_of_the_wrong_shape():
    q, k, v, mask = _inputs(4, torch.float32, 1, 4, 2, 1, 6, 8, 6)
    with pytest.raises(RuntimeError, match="mask must be bool"):
        torch.ops.qwen3core_cpu.attention(q, k, v, mask[..., :5], 0.3)
    with pytest.raises(RuntimeError, match="H_kv dividing H_q"):
        torch.ops.qwen3core_cpu.attention(q[:, :3], k, v, mask, 0.3)


def test_selected_alone_loads_the_kernels(tmp_path):
    """Regression: ``attention=cpu`` with every other component eager raised AttributeError
    (torch.ops.qwen3core_cpu.attention missing) on the first forward, because only the other
    cpu components loaded the kernels. A fresh process, so no other test has loaded them."""
    script = (
        "import torch\n"
        "from qwen3core import PRESETS\n"
        "from qwen3core.testing import greedy, reference_model, reference_names\n"
        "from qwen3core.testing.models import candidate_model\n"
        "ref = reference_model(PRESETS['tiny'], torch.float32)\n"
        "model = candidate_model(ref, {**reference_names(), 'attention': 'cpu'})\n"
        "print(greedy(model, [[1, 2, 3]], 2).tokens == greedy(ref, [[1, 2, 3]], 2).tokens)\n")
    done = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "True"
