"""The cpu backend's int8/int4 kernels against the schemes' eager reference.

The operator against float64 products of the dequantized weight (odd sizes, several row
counts, both dtypes, signed and zero-pointed levels, a g_idx in activation order); the layer
holding one packed copy only; and the equivalence property (quantized cpu linear vs quantized
eager) on fixed examples, long prompts included, with AVX-512 and with AVX2 forced.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from qwen3core_backends import cpu as cpu_backend

import qwen3core
from qwen3core.quant import QuantizedWeight, resolve_scheme
from qwen3core.spec import Qwen3Spec
from qwen3core.testing import BackendConformance, Workload, check_example

CPU = torch.device("cpu")
_missing = cpu_backend._check(CPU, torch.float32)
pytestmark = pytest.mark.skipif(_missing is not None,
                                reason=f"cpu kernels unavailable here: {_missing}")

SCHEMES = ["int8", "int8:channel", "int4", "int4:sym", "int4:g128"]
SHAPES = [(17, 33), (100, 64), (31, 1031), (48, 258)]


def _check_operator(scheme: str, out: int, inp: int, g_idx: bool = False,
                    row_counts: tuple[int, ...] = (1, 3, 6, 8, 13, 33, 64),
                    qw: QuantizedWeight | None = None) -> None:
    from qwen3core_backends.cpu.quant_linear import pack_quantized

    gen = torch.Generator().manual_seed(out * 1000 + inp)
    if qw is None:
        qw = resolve_scheme(scheme).quantize(torch.randn(out, inp, generator=gen))
    if g_idx:  # the same weight with its columns in a shuffled (activation) order
        perm = torch.randperm(inp, generator=gen)
        qw = QuantizedWeight(qw.qweight[:, perm], qw.scales, qw.zeros, qw.group_size, qw.bits,
                             g_idx=qw.column_groups()[perm])
    packed = pack_quantized(qw)
    for rows in row_counts:
        for dtype, tol in ((torch.float32, 1e-5), (torch.bfloat16, 8e-3)):
            x = torch.randn(rows, inp, generator=gen).to(dtype)
            ref = x.double() @ qw.dequantize(torch.float64).T
            got = packed(x, out)
            assert got.dtype == dtype and got.shape == (rows, out)
            err = ((got.double() - ref).abs().max() / ref.abs().max()).item()
            assert err < tol, (scheme, out, inp, rows, dtype, err)


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("shape", SHAPES)
def test_operator_matches_the_dequantized_product(scheme, shape):
    _check_operator(scheme, *shape)


@pytest.mark.parametrize("scheme", ["int8", "int4", "int4:sym"])
@pytest.mark.parametrize("shape", [(40, 1024), (31, 1031)])
def test_row_counts_in_multiples_of_64_read_a_padded_layout(scheme, shape):
    """Activations are laid out with a row stride of R + 8 when R is a multiple of 64
    (kernels.h's activation_stride: a 2 KiB stride stalled the kernels): every kernel reads that
    layout, through the 8x8 transposes (K a multiple of 16) and the row-by-row loop alike."""
    _check_operator(scheme, *shape, row_counts=(128, 63, 192))


@pytest.mark.parametrize("scheme", ["int8", "int4"])
def test_prefill_rows_past_the_scratch_buffer(scheme):
    """The operator lays out up to 1 MiB of activations in a reused per-thread buffer and
    larger ones (prefill) in memory of their own: both, in turn, give the right product."""
    _check_operator(scheme, 40, 1024, row_counts=(300, 1, 300, 2))


@pytest.mark.parametrize("scheme", ["int4", "int4:sym", "int4:g64", "int8"])
def test_rows_in_eights_sum_their_groups_as_row_by_row(scheme):
    """8 or 16 bfloat16 rows (K a multiple of the group) get their input pairs and per-group
    sums from one transposing pass (bf16_pairs_by_eights); inside a batch of 9 or 17 the same
    rows get them from the row-by-row loops. The sums are added in the same order, so the
    products agree bit for bit: a sum off in its last bit would show."""
    from qwen3core_backends.cpu.quant_linear import pack_quantized

    gen = torch.Generator().manual_seed(7)
    out, inp = 40, 256
    packed = pack_quantized(resolve_scheme(scheme).quantize(torch.randn(out, inp, generator=gen)))
    for rows in (8, 16):
        x = torch.randn(rows + 1, inp, generator=gen).bfloat16()
        assert torch.equal(packed(x[:rows], out), packed(x, out)[:rows])


@pytest.mark.parametrize("scheme", ["int4", "int8"])
def test_whole_and_partial_tiles_round_alike(scheme):
    """A tile of 16 outputs is written to bfloat16 by a vector path when whole and by the
    generic loop when the outputs end inside it. Asking the same packed weight for 48 and then
    47 outputs puts the third tile through each in turn: its values must agree bit for bit."""
    from qwen3core_backends.cpu.quant_linear import pack_quantized

    gen = torch.Generator().manual_seed(11)
    packed = pack_quantized(resolve_scheme(scheme).quantize(torch.randn(48, 256, generator=gen)))
    for rows in (1, 8, 11):
        x = torch.randn(rows, 256, generator=gen).bfloat16()
        assert torch.equal(packed(x, 48)[:, :47], packed(x, 47))


def test_int8_levels_with_zero_points():
    """Asymmetric int8 (GPTQ 8-bit): every kernel subtracts z * sum(x) per group."""
    gen = torch.Generator().manual_seed(5)
    out, inp, gs = 40, 192, 64
    qw = QuantizedWeight(torch.randint(-128, 128, (out, inp), generator=gen, dtype=torch.int8),
                         torch.rand(out, inp // gs, generator=gen).to(torch.float16) * 0.01,
                         torch.randint(-20, 20, (out, inp // gs), generator=gen,
                                       dtype=torch.int8), gs, 8)
    _check_operator("int8", out, inp, qw=qw)


def test_activation_order_groups():
    _check_operator("int4:g32", 40, 256, g_idx=True)


def test_layer_keeps_one_packed_copy_and_fuses_by_views():
    loaded = qwen3core.load("random:tiny", backends={"linear": "cpu", "moe": "eager"},
                            quantize="int4", quantize_head=True)
    attn = loaded.model.model.layers[0].self_attn
    for proj in (attn.q_proj, attn.k_proj, attn.v_proj):
        assert "weight" not in proj._parameters and proj.quant is not None
        assert proj.quant.levels.untyped_storage().data_ptr() == (
            attn.qkv.packed.levels.untyped_storage().data_ptr())
    dense = sum(p.numel() for n, p in loaded.model.named_parameters() if "proj" in n)
    assert dense == 0


SPEC = Qwen3Spec(vocab_size=96, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                 max_position_embeddings=512, tie_word_embeddings=True, eos_token_id=None)
MOE = Qwen3Spec(vocab_size=97, hidden_size=72, intermediate_size=40, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                max_position_embeddings=512, tie_word_embeddings=False, num_experts=4,
                num_experts_per_tok=2, moe_intermediate_size=34, norm_topk_prob=True,
                eos_token_id=None)
SHORT = Workload(prompts=((5, 17, 3, 90, 41, 8), (12, 7), (60, 61, 62, 2)), max_new_tokens=5,
                 prefill_chunks=2, reorder=(2, (2, 0)))
LONG = Workload(prompts=(tuple((i * 37 + 11) % 90 for i in range(300)), (4, 9)),
                max_new_tokens=24, prefill_chunks=3)


# The float-activation schemes and the integer-kernel ones (int8 activations), one list.
@pytest.mark.parametrize("scheme", ["int8", "int4", "int4:g64:sym", "int8:channel",
                                    "w8a8", "w4a8", "w4a8:g64:sym", "w8a8:channel"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cpu_quantized_is_equivalent_to_the_eager_reference(scheme, dtype):
    selection = {"linear": "cpu", "moe": "eager"}
    assert check_example(SPEC, SHORT, selection, dtype, quantize=scheme) > 0
    assert check_example(MOE, SHORT, selection, dtype, quantize=scheme) > 0


@pytest.mark.parametrize(("scheme", "dtypes"), [
    ("int8", (torch.bfloat16,)), ("int4", (torch.bfloat16,)),
    # The integer kernels in float32 too: their activation levels must match the reference's
    # from either input dtype.
    ("w8a8", (torch.bfloat16, torch.float32)), ("w4a8", (torch.bfloat16, torch.float32))])
def test_cpu_quantized_long_workload(scheme, dtypes):
    selection = {"linear": "cpu", "mlp": "cpu", "moe": "eager"}
    for dtype in dtypes:
        assert check_example(SPEC, LONG, selection, dtype, quantize=scheme, alone=False) > 0


def test_avx2_path_when_forced():
    """The AVX2 kernels on a machine that would pick AVX-512 (the ISA is chosen once per
    process, so in a fresh one)."""
    code = ("import torch; from qwen3core_backends.cpu.build import isa; assert isa()=='avx2';"
            "from tests.quant.test_cpu_quantized import _check_operator as c;"
            "[c(s, 31, 1031) for s in ('int8', 'int4', 'int4:sym')];"
            "[c(s, 40, 1024, row_counts=(128,)) for s in ('int8', 'int4')];"
            "[c(s, 100, 64) for s in ('int8:channel', 'int4:g64')]")
    env = {**os.environ, "QWEN3CORE_CPU_ISA": "avx2"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=False,
                          cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.parametrize("scheme", ["int8", "int4"])
def test_cpu_quantized_under_the_drawn_suite(scheme):
    """The public entry point: hypothesis draws specs, workloads, dtypes and the other
    components; linear=cpu holds the scheme's weights, the reference the same levels."""
    from qwen3core.testing import check_backend

    assert check_backend("linear", "cpu", quantize=scheme, max_examples=4) > 0


class TestCpuLinearInt4(BackendConformance):
    """The class form, as a plugin author would write it: reference components around it."""

    component, name, quantize = "linear", "cpu", "int4:g64"
    max_examples, long_examples = 3, 1
