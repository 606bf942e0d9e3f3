"""The cpu backend's integer kernels (w8a8 / w4a8) against the schemes' eager reference.

``qwen3core.testing.quant_linear.check_quantized_linear``: the kernel's own activation
quantization, read back through an identity weight, bit for bit against the reference's, and
the operator against float64 products of the reference's quantized activations and
dequantized weights (a linear that skips the activation quantization fails it); the equivalence property on fixed examples (long prompts
included) and drawn ones; two deliberately wrong packings caught by the suite; and all of it
again with the AVX2 kernels forced.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from qwen3core_backends import cpu as cpu_backend
from qwen3core_backends.cpu.linear import CpuLinear
from qwen3core_backends.eager.linear import Linear

from qwen3core import Implementation, hookimpl
from qwen3core.quant import QuantizedWeight
from qwen3core.testing import Workload, check_backend, check_example
from qwen3core.testing.quant_linear import check_quantized_linear
from tests.quant.test_cpu_quantized import SPEC

CPU = torch.device("cpu")
_missing = cpu_backend._check(CPU, torch.float32)
pytestmark = pytest.mark.skipif(_missing is not None,
                                reason=f"cpu kernels unavailable here: {_missing}")

SCHEMES = ["w8a8", "w8a8:channel", "w8a8:g128", "w4a8", "w4a8:sym", "w4a8:g64"]


def cpu_linear(inp: int, out: int, dtype: torch.dtype) -> CpuLinear:
    return CpuLinear(inp, out, dtype=dtype, device=CPU)


def check_scheme(scheme: str, shapes=((17, 33), (100, 64), (31, 1031), (48, 256))) -> None:
    assert check_quantized_linear(cpu_linear, scheme, shapes=shapes, rows=(1, 3, 8, 9, 33)) > 0


@pytest.mark.parametrize("scheme", SCHEMES)
def test_operator_matches_the_reference_product_and_levels(scheme):
    """Identical inputs: the kernel's activation levels bit for bit (an identity weight, rows
    of ties, zero blocks, 1e+-30), its products within float32 rounding of float64's."""
    check_scheme(scheme)


@pytest.mark.parametrize("scheme", ["w8a8", "w4a8"])
def test_prefill_rows_past_the_scratch_buffer(scheme):
    """Quantized activations of up to 1 MiB go to a reused per-thread buffer, larger ones
    (prefill) to memory of their own: both, in turn, match the reference."""
    assert check_quantized_linear(cpu_linear, scheme, shapes=((40, 4096),),
                                  rows=(300, 1, 300)) > 0


class _SkipsActivationQuantization(Linear):
    """A linear that holds the weight but multiplies the activations as they are."""

    def load_quantized(self, weight: QuantizedWeight) -> None:
        super().load_quantized(replace(weight, act_block=None))


def test_skipping_the_activation_quantization_is_caught_at_operator_level():
    def skipping(inp, out, dtype):
        return _SkipsActivationQuantization(inp, out, dtype=dtype, device=CPU)

    def eager(inp, out, dtype):
        return Linear(inp, out, dtype=dtype, device=CPU)

    assert check_quantized_linear(eager, "w4a8") > 0  # the reference meets its own check
    with pytest.raises(AssertionError, match="relative error"):
        check_quantized_linear(skipping, "w8a8")


def test_the_layer_holds_one_packed_copy_in_the_integer_layout():
    import qwen3core

    loaded = qwen3core.load("random:tiny", backends={"linear": "cpu", "moe": "eager"},
                            quantize="w8a8", quantize_head=True)
    attn = loaded.model.model.layers[0].self_attn
    assert attn.q_proj.quant.act_block == 32 and attn.qkv.packed.act_block == 32
    assert attn.q_proj.quant.levels.dtype == torch.uint8
    assert sum(p.numel() for n, p in loaded.model.named_parameters() if "proj" in n) == 0


# Equivalence of the short and long examples: with the int8/int4 schemes in
# tests/quant/test_cpu_quantized.py (one parametrized list).


@pytest.mark.parametrize("scheme", ["w8a8", "w4a8"])
def test_cpu_a8_under_the_drawn_suite(scheme):
    assert check_backend("linear", "cpu", quantize=scheme, max_examples=6, long_examples=1) > 0


class _WrongPacking(CpuLinear):
    """The real integer kernel fed a wrong layout: ``mistake(levels)`` applied after packing."""

    mistake = staticmethod(lambda levels: levels)

    def load_quantized(self, weight: QuantizedWeight) -> None:
        super().load_quantized(weight)
        self.quant.levels.copy_(self.mistake(self.quant.levels))


class _NoOffset(_WrongPacking):
    # int8 stored as q instead of q + 128: the kernel's -128 correction no longer cancels.
    mistake = staticmethod(lambda u: u - 128)


class _SwappedHalves(_WrongPacking):
    # int4 inputs 8b + j and 8b + 4 + j trade nibbles.
    mistake = staticmethod(lambda u: (u << 4) | (u >> 4))


class _WrongPlugin:
    def __init__(self, name, cls):
        self.name, self.cls = name, cls

    @hookimpl
    def qwen3core_linear(self):
        cls = self.cls
        return Implementation("linear", self.name,
                              lambda ctx, i, o: cls(i, o, dtype=ctx.dtype, device=ctx.device))


@pytest.mark.parametrize("name,cls,scheme", [("no-offset", _NoOffset, "w8a8"),
                                             ("swapped-halves", _SwappedHalves, "w4a8")])
def test_a_wrong_packing_is_caught_by_the_suite(name, cls, scheme):
    wrong = Workload(prompts=((5, 17, 3, 90, 41, 8), (12, 7)), max_new_tokens=4)
    with pytest.raises(AssertionError, match="diverges"):
        check_example(SPEC, wrong, {"linear": name, "moe": "eager"}, torch.float32,
                      quantize=scheme, registry=_registry(name, cls))
    with pytest.raises(AssertionError):
        check_backend("linear", name, plugins=[_WrongPlugin(name, cls)], dtypes=[torch.float32],
                      max_examples=3, long_examples=0, quantize=scheme, shrink=False)


def _registry(name, cls):
    from qwen3core.registry import get_registry

    return get_registry([_WrongPlugin(name, cls)])


def test_avx2_integer_kernels_when_forced(run_forced_avx2):
    """The vpmaddubsw kernels on a machine that would pick VNNI (the choice is made once per
    process, so in a fresh one)."""
    code = ("from qwen3core_backends.cpu.build import a8_isa; assert a8_isa() == 'avx2';"
            "import tests.quant.test_cpu_a8 as t;"
            "[t.check_scheme(s, ((31, 1031),)) for s in ('w8a8', 'w4a8', 'w4a8:sym')];"
            "[t.check_scheme(s, ((100, 64),)) for s in ('w8a8:channel', 'w4a8:g64')];"
            "import torch; from qwen3core.testing import check_example;"
            "from tests.quant.test_cpu_quantized import SHORT;"
            "assert check_example(t.SPEC, SHORT, {'linear': 'cpu', 'moe': 'eager'},"
            " torch.float32, quantize='w4a8') > 0")
    run_forced_avx2(code)
