"""Fusing linear layers that share an input (q/k/v): the optional ``fuse`` protocol."""

from __future__ import annotations

from typing import ClassVar

import pytest
import torch
from qwen3core_backends import cpu as cpu_backend
from qwen3core_backends.cpu.linear import CpuLinear, FusedCpuLinear
from qwen3core_backends.eager.linear import Linear
from torch.nn import functional as F

import qwen3core
from qwen3core.fusion import fuse_linears
from qwen3core.testing.models import reference_names

CPU = torch.device("cpu")
_missing = cpu_backend._check(CPU, torch.float32)
needs_kernels = pytest.mark.skipif(_missing is not None,
                                   reason=f"cpu kernels unavailable here: {_missing}")


class Recording(Linear):
    """A linear class that fuses by stacking weights, and records what it was asked."""

    asked: ClassVar[list[int]] = []

    @classmethod
    def fuse(cls, layers):
        cls.asked.append(len(layers))
        return lambda x: F.linear(x, torch.cat([layer.weight for layer in layers]))


def _layer(kind, i, o, seed):
    layer = kind(i, o, dtype=torch.float32, device=CPU)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(o, i, generator=torch.Generator().manual_seed(seed)))
    return layer


def test_layers_without_fuse_are_left_alone():
    assert fuse_linears(_layer(Linear, 4, 3, 0), _layer(Linear, 4, 5, 1)) is None


def test_fuse_is_asked_only_for_one_class_and_one_input_size():
    Recording.asked = []
    assert fuse_linears(_layer(Recording, 4, 3, 0), _layer(Linear, 4, 5, 1)) is None
    assert fuse_linears(_layer(Recording, 4, 3, 0), _layer(Recording, 6, 5, 1)) is None
    layers = [_layer(Recording, 4, n, n) for n in (3, 5, 2)]
    fused = fuse_linears(*layers)
    assert Recording.asked == [3]
    x = torch.randn(2, 4)
    torch.testing.assert_close(fused(x), torch.cat([layer(x) for layer in layers], -1))


@needs_kernels
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cpu_fused_output_equals_the_layers_one_by_one(dtype):
    layers = [_layer(CpuLinear, 40, n, n).to(dtype) for n in (48, 16, 32)]
    for layer in layers:
        layer.prepare_weights()
    fused = fuse_linears(*layers)
    assert isinstance(fused, FusedCpuLinear)
    # their copy is the fused one: each layer's tiles are its slice of the stack
    stack = fused.stack.untyped_storage().data_ptr()
    assert all(layer.packed.untyped_storage().data_ptr() == stack for layer in layers)
    for rows in (1, 3, 40):  # 40 float32 rows: past the kernel's limit, F.linear
        x = torch.randn(rows, 40).to(dtype)
        want = torch.cat([layer(x) for layer in layers], dim=-1)
        assert torch.equal(fused(x), want)


@needs_kernels
def test_cpu_layers_that_do_not_fill_whole_tiles_are_not_fused():
    # A layer's tiles could not be a slice of one stack: they are called one by one.
    layers = [_layer(CpuLinear, 40, n, n) for n in (37, 16)]
    assert fuse_linears(*layers) is None


@needs_kernels
def test_cpu_fused_weights_follow_a_rewritten_weight():
    layers = [_layer(CpuLinear, 8, n, n) for n in (16, 32)]
    fused = fuse_linears(*layers)
    x = torch.randn(1, 8)
    fused(x)
    layers[1].load_state_dict({"weight": torch.ones(32, 8)})
    torch.testing.assert_close(fused(x)[:, 16:], x.sum(-1, keepdim=True).expand(1, 32))
    layers[0].weight = torch.nn.Parameter(torch.full((16, 8), 2.0))  # replaced, as tying does
    torch.testing.assert_close(fused(x)[:, :16], 2 * x.sum(-1, keepdim=True).expand(1, 16))
    torch.testing.assert_close(fused(x)[:, 16:], x.sum(-1, keepdim=True).expand(1, 32))


@needs_kernels
def test_the_model_fuses_qkv_with_the_cpu_linear_and_keeps_checkpoint_keys():
    eager = qwen3core.load("random:tiny", dtype="float32", backends=reference_names())
    fast = qwen3core.load("random:tiny", dtype="float32",
                          backends={**reference_names(), "linear": "cpu"})
    assert all(layer.self_attn.qkv is None for layer in eager.model.model.layers)
    assert all(isinstance(layer.self_attn.qkv, FusedCpuLinear)
               for layer in fast.model.model.layers)
    assert fast.model.state_dict().keys() == eager.model.state_dict().keys()
    ids = torch.tensor([[5, 3, 9, 1]])
    torch.testing.assert_close(fast.model(ids), eager.model(ids), rtol=1e-4, atol=1e-4)
