"""The eager reference of quantized weights, and quantize-on-load.

A quantized random model is the scheme applied to the very float32 draws of the unquantized
one (so its logit error can be measured); the equivalence property holds quantized models to
their own reference, and a dequantization with the nibbles of each byte swapped is caught.
"""

from __future__ import annotations

import pytest
import torch
from qwen3core_backends.eager.linear import Linear

import qwen3core
from qwen3core import Implementation, hookimpl
from qwen3core.quant import QuantizationError, QuantizedWeight, resolve_scheme
from qwen3core.spec import Qwen3Spec
from qwen3core.testing import Workload, check_backend, check_example

EAGER = {"linear": "eager", "moe": "eager"}
SPEC = Qwen3Spec(vocab_size=96, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                 max_position_embeddings=256, tie_word_embeddings=True, eos_token_id=None)
WORKLOAD = Workload(prompts=((5, 17, 3, 90, 41, 8), (12, 7)), max_new_tokens=4,
                    prefill_chunks=2)


@pytest.mark.parametrize("scheme", ["int8", "int4"])
def test_random_quantized_model_is_the_scheme_applied_to_the_same_draws(scheme):
    dense = qwen3core.load("random:tiny", backends=EAGER, dtype="float32")
    quant = qwen3core.load("random:tiny", backends=EAGER, dtype="float32", quantize=scheme,
                           quantize_head=True)
    s = resolve_scheme(scheme)
    for name, module in quant.model.named_modules():
        if name.endswith(("q_proj", "down_proj")) or name == "lm_head":
            dense_weight = dense.model.get_submodule(name).weight
            expected = s.quantize(dense_weight)
            held = module.quantized_weight()
            assert torch.equal(held.qweight, expected.qweight), name
            assert "weight" not in module._parameters
    # The embedding stays dense and is not re-tied to the quantized head.
    assert torch.equal(quant.model.model.embed_tokens.weight, dense.model.model.embed_tokens.weight)


def test_logit_error_is_small_for_int8_and_larger_for_int4():
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        dense = qwen3core.load("random:tiny", backends=EAGER).model(ids)
        errors = {s: (qwen3core.load("random:tiny", backends=EAGER, quantize=s).model(ids)
                      - dense).abs().max().item() for s in ("int8", "int4")}
    assert 0 < errors["int8"] < 0.5 < errors["int4"]


def test_quantized_reference_is_dequantize_then_product():
    w = torch.randn(20, 40)
    qw = resolve_scheme("int4:g32").quantize(w)
    layer = Linear(40, 20, dtype=torch.float32, device=torch.device("cpu"))
    layer.load_quantized(qw)
    x = torch.randn(3, 40)
    torch.testing.assert_close(layer(x), x @ qw.dequantize().T, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="layer is"):
        Linear(41, 20, dtype=torch.float32, device=torch.device("cpu")).load_quantized(qw)


def test_quantize_head_needs_a_scheme_and_moe_grouped_refuses():
    with pytest.raises(qwen3core.Qwen3CoreError):
        qwen3core.load("random:tiny", quantize_head=True)
    with pytest.raises(QuantizationError, match="moe"):
        qwen3core.load("random:tiny-moe", backends={"moe": "grouped", "linear": "eager"},
                       quantize="int4")


class _SwappedNibbles(Linear):
    """A wrong int4 dequantization: the two inputs that share a byte trade places."""

    def load_quantized(self, weight: QuantizedWeight) -> None:
        q = weight.qweight.clone()
        even = q[:, 0:q.shape[1] // 2 * 2:2].clone()
        q[:, 0:q.shape[1] // 2 * 2:2] = q[:, 1::2][:, :even.shape[1]]
        q[:, 1:q.shape[1] // 2 * 2:2] = even
        super().load_quantized(QuantizedWeight(q, weight.scales, weight.zeros,
                                               weight.group_size, weight.bits))


class _SwappedPlugin:
    @hookimpl
    def qwen3core_linear(self):
        return Implementation("linear", "swapped-nibbles",
                              lambda ctx, i, o: _SwappedNibbles(i, o, dtype=ctx.dtype,
                                                                device=ctx.device))


def test_the_equivalence_property_holds_quantized_eager_to_itself():
    for scheme in ("int8", "int4"):
        assert check_example(SPEC, WORKLOAD, EAGER, torch.float32, quantize=scheme) > 0


def test_a_swapped_nibble_order_is_caught():
    with pytest.raises(AssertionError):
        check_backend("linear", "swapped-nibbles", plugins=[_SwappedPlugin()],
                      dtypes=[torch.float32], max_examples=3, quantize="int4", shrink=False)


def test_quantized_moe_runs_only_the_chosen_experts():
    """The eager MoE block holds quantized experts (the grouped one stacks dense ones; where the
    cpu kernels run, quantized loads default to the cpu block, tests/backends/test_cpu_moe.py),
    and a one-token step runs exactly the k chosen experts of each sparse layer."""
    loaded = qwen3core.load("random:tiny-moe", quantize="int4",
                            backends={"linear": "eager", "moe": "eager"})
    spec = loaded.spec
    assert loaded.backends["moe"] == "eager"
    calls = []
    for layer in loaded.model.model.layers:
        if layer.is_sparse:
            for expert in layer.mlp.experts:
                assert expert.down_proj.quantized_weight() is not None
                expert.register_forward_hook(lambda m, i, o: calls.append(m))
    with torch.no_grad():
        loaded.model(torch.tensor([[7]]))
    sparse = sum(spec.is_sparse_layer(i) for i in range(spec.num_hidden_layers))
    assert len(calls) == spec.num_experts_per_tok * sparse < spec.num_experts * sparse
