"""The cpu backend's RMSNorm, rotary and SiLU-multiply operators against the eager modules.

The operators follow the eager expressions rounding by rounding; what may differ is the order
of RMSNorm's float32 sum and the float32 cos/sin/exp routines. So float32 results agree to a
few float32 ulps, and bfloat16 results are equal except for rare last-bit differences where a
float32 value sits at a bfloat16 rounding boundary (bounded here: at most one bfloat16 ulp,
and on at most 1 % of the elements).
"""

from __future__ import annotations

import pytest
import torch
from qwen3core_backends import cpu as cpu_backend
from qwen3core_backends.cpu.build import load_kernels
from qwen3core_backends.cpu.mlp import CpuSwiGLU
from qwen3core_backends.cpu.norm import CpuRMSNorm
from qwen3core_backends.cpu.rope import CpuRotary
from qwen3core_backends.eager.norm import RMSNorm
from qwen3core_backends.eager.rope import EagerRotary, rotary_inv_freq
from torch.nn import functional as F

from qwen3core.rope_scaling import RopeScaling

DTYPES = [torch.bfloat16, torch.float32]
CPU = torch.device("cpu")
_missing = cpu_backend._check(CPU, torch.float32)
pytestmark = pytest.mark.skipif(_missing is not None,
                                reason=f"cpu kernels unavailable here: {_missing}")


@pytest.fixture(scope="module")
def ops():
    load_kernels()
    return torch.ops.qwen3core_cpu


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def assert_matches_eager(got: torch.Tensor, want: torch.Tensor) -> None:
    assert got.shape == want.shape and got.dtype == want.dtype
    if want.dtype == torch.float32:
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
        return
    diff = (got.float() - want.float()).abs()
    one_ulp = want.float().abs() * 2.0 ** -7 + 1e-30  # bfloat16 keeps 8 significant bits
    assert bool((diff <= one_ulp).all()), f"off by more than a bfloat16 ulp: {diff.max()}"
    assert (diff > 0).float().mean().item() <= 0.01


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1, 1024), (3, 5, 128), (64, 1024), (7,)])
def test_rms_norm_matches_eager(dtype, shape, ops):
    dim = shape[-1]
    eager = RMSNorm(dim, 1e-6, dtype=dtype, device=CPU)
    with torch.no_grad():
        eager.weight.copy_(torch.randn(dim, generator=gen(1)))
    x = (torch.randn(shape, generator=gen(2)) * 3).to(dtype)
    assert_matches_eager(ops.rms_norm(x, eager.weight, 1e-6), eager(x))


@pytest.mark.parametrize("dtype", DTYPES)
def test_rms_norm_module_takes_head_views_and_falls_back_for_float64(dtype, ops):
    norm = CpuRMSNorm(16, 1e-6, dtype=dtype, device=CPU)
    with torch.no_grad():
        norm.weight.copy_(torch.rand(16, generator=gen(3)) + 0.5)
    eager = RMSNorm(16, 1e-6, dtype=dtype, device=CPU)
    eager.load_state_dict(norm.state_dict())
    heads = torch.randn(2, 3, 4 * 16, generator=gen(4)).to(dtype)[..., :48].view(2, 3, 3, 16)
    assert_matches_eager(norm(heads), eager(heads))  # q/k norms see strided head views
    norm64 = CpuRMSNorm(16, 1e-6, dtype=torch.float64, device=CPU)
    x64 = torch.randn(4, 16, generator=gen(5), dtype=torch.float64)
    assert torch.equal(norm64(x64), RMSNorm(16, 1e-6, dtype=torch.float64, device=CPU)(x64))


def test_rms_norm_rejects_a_mismatched_weight(ops):
    with pytest.raises(RuntimeError, match="weight must be a \\[8\\] tensor"):
        ops.rms_norm(torch.randn(2, 8), torch.randn(4), 1e-6)


def _q_and_k(dtype, batch=2, seq=5, heads_q=4, heads_k=2, dim=16, seed=0):
    """q/k as the model makes them: [B, S, H, D] projections viewed as [B, H, S, D]."""
    q = torch.randn(batch, seq, heads_q, dim, generator=gen(seed)).to(dtype).transpose(1, 2)
    k = torch.randn(batch, seq, heads_k, dim, generator=gen(seed + 1)).to(dtype).transpose(1, 2)
    return q, k


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("theta", [10_000.0, 1_000_000.0])
def test_rotary_matches_eager_on_strided_heads_and_per_row_positions(dtype, theta, ops):
    q, k = _q_and_k(dtype)
    positions = torch.tensor([[0, 1, 2, 3, 4], [0, 0, 0, 7, 4095]])  # padding, far positions
    want_q, want_k = EagerRotary(16, theta)(q, k, positions)
    got_q, got_k = ops.rotary(q, k, positions, rotary_inv_freq(16, theta, CPU))
    assert_matches_eager(got_q, want_q)
    assert_matches_eager(got_k, want_k)
    assert got_q.stride() == q.stride()  # the input's layout, so later views stay free


@pytest.mark.parametrize("dtype", DTYPES)
def test_rotary_module_after_prepare_matches_eager(dtype, ops):
    rotary = CpuRotary(16, 1e6, device=torch.device("meta")).to_empty(device=CPU)
    rotary.prepare_weights()  # the frequency table is derived, never loaded
    q, k = _q_and_k(dtype, batch=1, seq=1, heads_q=16, heads_k=8, seed=5)
    positions = torch.tensor([[37]])
    for got, want in zip(rotary(q, k, positions), EagerRotary(16, 1e6)(q, k, positions)):
        assert_matches_eager(got, want)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scaling", [RopeScaling("yarn", 4.0, 32), RopeScaling("linear", 2.0),
                                     RopeScaling("yarn", 8.0, 24, attention_factor=0.75)])
def test_rotary_module_honours_rope_scaling(dtype, scaling, ops):
    rotary = CpuRotary(16, 1e6, device=torch.device("meta"), scaling=scaling).to_empty(
        device=CPU)
    rotary.prepare_weights()
    q, k = _q_and_k(dtype, seq=3, seed=7)
    positions = torch.tensor([[0, 31, 32], [100, 4095, 131071]])  # around and past 32
    want = EagerRotary(16, 1e6, scaling)(q, k, positions)
    unscaled = EagerRotary(16, 1e6)(q, k, positions)
    assert not torch.allclose(want[0].float(), unscaled[0].float())  # the premise
    for got, expected in zip(rotary(q, k, positions), want):
        assert_matches_eager(got, expected)


def test_rotary_rejects_bad_positions(ops):
    q, k = _q_and_k(torch.float32)
    inv_freq = rotary_inv_freq(16, 1e6, CPU)
    with pytest.raises(RuntimeError, match="positions must be int64"):
        ops.rotary(q, k, torch.zeros(2, 4, dtype=torch.int64), inv_freq)
    with pytest.raises(RuntimeError, match="positions must be int64"):
        ops.rotary(q, k, torch.zeros(2, 5, dtype=torch.int32), inv_freq)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1, 2 * 3072), (4, 3, 2 * 48), (40, 2 * 3072)])
def test_silu_mul_matches_the_eager_expression(dtype, shape, ops):
    gate_up = (torch.randn(shape, generator=gen(7)) * 4).to(dtype)
    gate, up = gate_up.chunk(2, dim=-1)
    assert_matches_eager(ops.silu_mul(gate_up), F.silu(gate) * up)


def _silu_mul_cases() -> list[torch.Tensor]:
    """SiLU-multiply inputs whose rows end off a vector (width 2 * 6149), with values at the
    ends of the exp's range, NaN and infinities among them."""
    gen = torch.Generator().manual_seed(3)
    cases = []
    for dtype in (torch.bfloat16, torch.float32):
        x = torch.randn(3, 2 * 6149, generator=gen) * 6
        x[0, :6] = torch.tensor([float("nan"), 88.5, -87.5, 200.0, -200.0, float("-inf")])
        cases.append(x.to(dtype))
    return cases


def test_silu_mul_avx512_and_avx2_loops_agree_bit_for_bit(ops, tmp_path, run_forced_avx2):
    """Where the linear kernels chose AVX-512 SiLU-multiply runs 16 lanes at a time; forced to
    AVX2 (QWEN3CORE_CPU_ISA, in a fresh process, as the choice is made once) it runs the 8-lane
    loop. The two use the same operations, each rounded apart, so every output bit agrees."""
    here = [ops.silu_mul(x) for x in _silu_mul_cases()]
    torch.save(here, tmp_path / "here.pt")
    code = ("import sys, torch; from qwen3core_backends.cpu.build import load_kernels, isa;"
            "load_kernels(); assert isa() == 'avx2';"
            "from tests.backends.test_cpu_pointwise import _silu_mul_cases as c;"
            "torch.save([torch.ops.qwen3core_cpu.silu_mul(x) for x in c()], sys.argv[1])")
    run_forced_avx2(code, str(tmp_path / "avx2.pt"))
    for got, want in zip(here, torch.load(tmp_path / "avx2.pt"), strict=True):
        bits = torch.int16 if got.dtype == torch.bfloat16 else torch.int32
        assert torch.equal(got.view(bits), want.view(bits))


def test_silu_mul_rejects_an_odd_width(ops):
    with pytest.raises(RuntimeError, match="must be even"):
        ops.silu_mul(torch.randn(2, 5))


class _Ctx:
    """What SwiGLU needs of a BuildContext: ``linear`` from the cpu backend."""

    def __init__(self, dtype):
        self.dtype, self.device = dtype, CPU

    def linear(self, i, o):
        from qwen3core_backends.cpu.linear import CpuLinear
        return CpuLinear(i, o, dtype=self.dtype, device=CPU)


@pytest.mark.parametrize("dtype", DTYPES)
def test_swiglu_reads_gate_and_up_as_one_packed_weight(dtype, ops):
    mlp = CpuSwiGLU(_Ctx(dtype), 24, 48)  # whole tiles: fused
    with torch.no_grad():
        for proj in (mlp.gate_proj, mlp.up_proj, mlp.down_proj):
            proj.weight.copy_(torch.randn(proj.weight.shape, generator=gen(8)) * 0.2)
    mlp.prepare_weights()
    for proj in (mlp.gate_proj, mlp.up_proj, mlp.down_proj):
        proj.prepare_weights()
    assert mlp.gate_up is not None
    # not packed twice: each projection's tiles are its part of the fused stack
    stack = mlp.gate_up.stack.untyped_storage().data_ptr()
    assert mlp.gate_proj.packed.untyped_storage().data_ptr() == stack
    assert mlp.up_proj.packed.untyped_storage().data_ptr() == stack
    assert set(mlp.state_dict()) == {"gate_proj.weight", "up_proj.weight", "down_proj.weight"}
    x = torch.randn(3, 1, 24, generator=gen(9)).to(dtype)
    want = mlp.down_proj(F.silu(mlp.gate_proj(x)) * mlp.up_proj(x))
    assert_matches_eager(mlp(x), want)


def _norms(dtype, dim, eps=1e-6):
    q_norm = CpuRMSNorm(dim, eps, dtype=dtype, device=CPU)
    k_norm = CpuRMSNorm(dim, eps, dtype=dtype, device=CPU)
    with torch.no_grad():
        q_norm.weight.copy_(torch.rand(dim, generator=gen(11)) + 0.5)
        k_norm.weight.copy_(torch.rand(dim, generator=gen(12)) + 0.5)
    return q_norm, k_norm


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dim", [16, 128, 10])
def test_qk_norm_rotary_is_the_norms_then_the_rotation(dtype, dim, ops):
    """The fused operator computes exactly what the three operators compute, on the strided
    [B, S, H, D] -> [B, H, S, D] head views the model passes."""
    q_norm, k_norm = _norms(dtype, dim)
    q, k = _q_and_k(dtype, batch=2, seq=3, heads_q=4, heads_k=2, dim=dim, seed=13)
    q, k = q * 3, k * 3  # values away from 1, so the norms matter
    q = q.transpose(1, 2).contiguous().transpose(1, 2)
    k = k.transpose(1, 2).contiguous().transpose(1, 2)
    positions = torch.tensor([[0, 5, 6], [3, 4, 40000]])
    inv_freq = rotary_inv_freq(dim, 1e6, CPU)
    want = ops.rotary(ops.rms_norm(q, q_norm.weight, 1e-6), ops.rms_norm(k, k_norm.weight, 1e-6),
                      positions, inv_freq, 0.9)
    got = ops.qk_norm_rotary(q, k, q_norm.weight, k_norm.weight, 1e-6, positions, inv_freq, 0.9)
    for g, w in zip(got, want):
        assert torch.equal(g, w)
    assert got[0].stride() == q.stride()
    eager_q, eager_k = EagerRotary(dim, 1e6)(RMSNorm.forward(q_norm, q),
                                             RMSNorm.forward(k_norm, k), positions)
    plain = ops.qk_norm_rotary(q, k, q_norm.weight, k_norm.weight, 1e-6, positions, inv_freq)
    assert_matches_eager(plain[0], eager_q)
    assert_matches_eager(plain[1], eager_k)


def test_rotary_fuses_only_this_backends_norms(ops):
    """The fused callable takes the projections [B, S, H * D] as the model has them and
    returns what the three modules return on the [B, H, S, D] head views."""
    rotary = CpuRotary(16, 1e6, device=CPU)
    q_norm, k_norm = _norms(torch.float32, 16)
    fused = rotary.fuse_norms(q_norm, k_norm)
    assert fused is not None
    eager_norm = RMSNorm(16, 1e-6, dtype=torch.float32, device=CPU)
    assert rotary.fuse_norms(eager_norm, k_norm) is None  # a selected eager norm stays eager
    qkv = torch.randn(2, 5, (4 + 2 + 2) * 16, generator=gen(17))
    q, k, _ = qkv.split([4 * 16, 2 * 16, 2 * 16], dim=-1)  # strided, as the fused qkv gives
    positions = torch.tensor([[0, 1, 2, 3, 4], [9, 8, 7, 6, 5]])

    def separately(q, k):
        heads_q = q_norm(q.unflatten(-1, (-1, 16))).transpose(1, 2)
        heads_k = k_norm(k.unflatten(-1, (-1, 16))).transpose(1, 2)
        return rotary(heads_q, heads_k, positions)

    got = fused(q, k, positions)
    for g, w in zip(got, separately(q, k)):
        assert torch.equal(g, w)
    assert got[0].shape == (2, 4, 5, 16) and got[1].shape == (2, 2, 5, 16)
    q64, k64 = q.double(), k.double()  # no kernel for float64: the three modules, unfused
    for g, w in zip(fused(q64, k64, positions), separately(q64, k64)):
        assert torch.equal(g, w)


def test_qk_norm_rotary_rejects_a_mismatched_weight(ops):
    q, k = _q_and_k(torch.float32)
    inv_freq = rotary_inv_freq(16, 1e6, CPU)
    with pytest.raises(RuntimeError, match="norm weights must be contiguous \\[16\\]"):
        ops.qk_norm_rotary(q, k, torch.ones(16), torch.ones(8), 1e-6,
                           torch.zeros(2, 5, dtype=torch.int64), inv_freq)


@pytest.mark.parametrize("dtype", DTYPES)
def test_silu_mul_at_the_ends_of_the_float_range(dtype, ops):
    """The vectorised exp saturates: silu(-200) is -0 (e^200 overflows), silu(200) is 200, and
    NaN stays NaN, as in the eager expression."""
    gate = torch.tensor([-200.0, -90.0, -88.5, -20.0, 0.0, 20.0, 88.5, 90.0, 200.0,
                         float("nan"), float("inf"), -float("inf"), 1.0, 2.0, 3.0, 4.0])
    gate_up = torch.cat((gate, torch.full_like(gate, 1.5))).to(dtype)
    got = ops.silu_mul(gate_up)
    want = F.silu(gate.to(dtype)) * torch.full_like(gate, 1.5).to(dtype)
    assert torch.equal(got.isnan(), want.isnan())
    finite = ~want.isnan()
    torch.testing.assert_close(got[finite], want[finite], rtol=2 ** -7, atol=1e-30)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1, 1024), (3, 5, 128), (2, 7)])
def test_add_rms_norm_is_the_residual_add_then_the_norm(dtype, shape, ops):
    dim = shape[-1]
    norm = CpuRMSNorm(dim, 1e-6, dtype=dtype, device=CPU)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(dim, generator=gen(21)))
    x = (torch.randn(shape, generator=gen(22)) * 3).to(dtype)
    residual = (torch.randn(shape, generator=gen(23)) * 5).to(dtype)
    normed, total = norm(x, residual)
    assert torch.equal(total, x + residual)  # the add rounds as torch's does
    assert torch.equal(normed, ops.rms_norm(x + residual, norm.weight, 1e-6))
    eager = RMSNorm(dim, 1e-6, dtype=dtype, device=CPU)
    eager.load_state_dict(norm.state_dict())
    want_normed, want_total = eager(x, residual)
    assert torch.equal(total, want_total)
    assert_matches_eager(normed, want_normed)


def test_add_rms_norm_rejects_a_mismatched_residual(ops):
    with pytest.raises(RuntimeError, match="residual must be a CPU tensor of x's dtype and shape"):
        ops.add_rms_norm(torch.randn(2, 8), torch.randn(2, 4), torch.ones(8), 1e-6)
