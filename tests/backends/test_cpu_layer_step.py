"""The cpu backend's fused decoder layer (backends/cpu/layer_step.py) and all layers in one call
(backends/cpu/layer_stack.py) against the model's own modules.

Both call the operators the modules call, in the same order on the same views, so their
logits must equal the unfused model's bit for bit: dense bfloat16/float32 and every
quantized scheme the cpu linear runs, batches with left padding, chunked prefill, rows dropped
mid-decode and rows joining a running batch (rows at different positions), a MoE model (the
attention half fused, the block as its module), the dynamic and the static KV cache. Also:
the fusions really run (and decline prefill-sized steps), weights replaced after the model was
built are the ones used, a deliberately wrong operand is caught, and selections they cannot
run are left unfused.
"""

from __future__ import annotations

import pytest
import torch
from qwen3core_backends import cpu as cpu_backend
from qwen3core_backends.cpu.layer_stack import CpuLayerStack
from qwen3core_backends.cpu.layer_step import CpuLayerStep

from qwen3core.build import build_random, select_backends
from qwen3core.quant import resolve_scheme
from qwen3core.quant.apply import build_random_quantized
from qwen3core.spec import Qwen3Spec
from qwen3core.testing.harness import greedy
from qwen3core.testing.joining import greedy_joining

CPU = torch.device("cpu")
_missing = cpu_backend._check(CPU, torch.float32)
pytestmark = pytest.mark.skipif(_missing is not None,
                                reason=f"cpu kernels unavailable here: {_missing}")

DENSE = Qwen3Spec(vocab_size=101, hidden_size=64, intermediate_size=80, num_hidden_layers=3,
                  num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                  max_position_embeddings=256, tie_word_embeddings=True, eos_token_id=None)
MOE = DENSE.replace(tie_word_embeddings=False, num_experts=4, num_experts_per_tok=2,
                    moe_intermediate_size=32, norm_topk_prob=True)
PROMPTS = [[5, 17, 3, 90, 41, 8, 66], [12, 7], [60, 61, 62, 2, 33]]
CPU_ALL = {"attention": "cpu", "norm": "cpu", "rope": "cpu", "linear": "cpu", "mlp": "cpu"}


def _model(spec: Qwen3Spec, dtype: torch.dtype, scheme: str | None, selection=None):
    chosen = select_backends(selection or CPU_ALL, device=CPU, dtype=dtype)
    if scheme is None:
        model = build_random(spec, chosen, dtype=dtype, device=CPU, seed=5)
    else:
        model = build_random_quantized(spec, chosen, dtype=dtype, device=CPU, seed=5,
                                       scheme=resolve_scheme(scheme), quantize_head=True)
    return model.eval()


class Counting:
    """Wraps a layer's fused step, counting the steps it ran (not declined)."""

    def __init__(self, step):
        self.step, self.ran, self.declined = step, 0, 0

    def __call__(self, *args):
        out = self.step(*args)
        if out is None:
            self.declined += 1
        else:
            self.ran += 1
        return out


def _fused_and_unfused(model, run, stack: bool = False):
    """``run(model)`` with the layers' fused steps (counted; with ``stack``, the stack of them
    instead, counted), then with neither."""
    steps = [layer.step for layer in model.model.layers]
    assert all(isinstance(s, CpuLayerStep) for s in steps), steps
    layer_stack = model.layer_stack
    if stack:
        assert isinstance(layer_stack, CpuLayerStack)
        counters = [Counting(layer_stack)]
        model.layer_stack = counters[0]
    else:
        counters = [Counting(s) for s in steps]
        model.layer_stack = None
        for layer, counter in zip(model.model.layers, counters):
            layer.step = counter
    fused = run(model)
    model.layer_stack = None
    for layer in model.model.layers:
        layer.step = None
    unfused = run(model)
    model.layer_stack = layer_stack
    for layer, step in zip(model.model.layers, steps):
        layer.step = step
    return fused, unfused, counters


def _assert_identical(fused, unfused):
    assert fused.tokens == unfused.tokens
    for a, b in zip(fused.logits, unfused.logits, strict=True):
        assert torch.equal(a, b), (a - b).abs().max()


@pytest.mark.parametrize("scheme", [None, "int8", "int4", "int4:g64", "int8:channel", "w8a8",
                                    "w4a8", "w4a8:g64:sym"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_fused_layer_equals_its_modules_bit_for_bit(scheme, dtype):
    model = _model(DENSE, dtype, scheme)
    fused, unfused, counters = _fused_and_unfused(
        model, lambda m: greedy(m, PROMPTS, 6, prefill_chunks=2, reorder=(3, (2, 0))))
    _assert_identical(fused, unfused)
    # Every decode step ran fused (5 per layer); the prefill chunks (more rows) were declined.
    assert all(c.ran == 5 and c.declined == 2 for c in counters), [
        (c.ran, c.declined) for c in counters]


def test_fused_layer_with_rows_joining_a_running_batch():
    model = _model(DENSE, torch.bfloat16, "int4")
    fused, unfused, counters = _fused_and_unfused(
        model, lambda m: greedy_joining(m, PROMPTS, 5, arrivals=[0, 2, 3]))
    _assert_identical(fused, unfused)
    assert all(c.ran > 0 for c in counters)


@pytest.mark.parametrize("scheme", [None, "int4"])
def test_moe_layers_fuse_their_attention_half(scheme):
    model = _model(MOE, torch.float32, scheme, {**CPU_ALL, "moe": "cpu" if scheme else "eager"})
    assert all(layer.step.mlp_in_python for layer in model.model.layers)
    fused, unfused, counters = _fused_and_unfused(model, lambda m: greedy(m, PROMPTS, 5))
    _assert_identical(fused, unfused)
    assert all(c.ran == 4 for c in counters)


def test_weights_replaced_after_building_are_the_ones_used():
    model = _model(DENSE, torch.bfloat16, None)
    greedy(model, PROMPTS, 2)  # the fused steps made their operand lists
    other = _model(DENSE, torch.bfloat16, None)
    with torch.no_grad():
        for p in other.parameters():
            p.mul_(-1.5)
    model.load_state_dict(other.state_dict())
    expected = greedy(other, PROMPTS, 4)
    fused, unfused, _ = _fused_and_unfused(model, lambda m: greedy(m, PROMPTS, 4))
    _assert_identical(fused, unfused)
    _assert_identical(fused, expected)


def test_a_converted_model_is_still_fused_correctly():
    model = _model(DENSE, torch.bfloat16, None)
    greedy(model, PROMPTS, 2)
    model.to(torch.float32)
    fused, unfused, counters = _fused_and_unfused(model, lambda m: greedy(m, PROMPTS, 4))
    _assert_identical(fused, unfused)
    assert all(c.ran == 3 for c in counters)


def test_a_wrong_operand_is_caught():
    # The same comparison with the q and k norms' weights swapped in the fused lists only: it
    # must fail, or the bit-for-bit test above could not.
    model = _model(DENSE, torch.float32, "int8")
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.k_norm.weight.uniform_(0.5, 1.5)
    greedy(model, PROMPTS, 2)  # one decode step: the lists are made
    for layer in model.model.layers:
        (weights, meta, reals), *rest = layer.step.cached[1]
        weights = [weights[0], weights[2], weights[1], *weights[3:]]  # q norm <-> k norm
        layer.step.cached = (layer.step.cached[0], ((weights, meta, reals), *rest))
    fused, unfused, _ = _fused_and_unfused(model, lambda m: greedy(m, PROMPTS, 4))
    assert any(not torch.equal(a, b) for a, b in zip(fused.logits, unfused.logits))


def test_selections_it_cannot_run_stay_unfused():
    eager_attention = _model(DENSE, torch.float32, None, {**CPU_ALL, "attention": "sdpa"})
    assert all(layer.step is None for layer in eager_attention.model.layers)
    eager_linear = _model(DENSE, torch.float32, None, {**CPU_ALL, "linear": "eager"})
    assert all(layer.step is None for layer in eager_linear.model.layers)
    eager_norm = _model(DENSE, torch.float32, None, {**CPU_ALL, "norm": "eager"})
    assert all(layer.step is None for layer in eager_norm.model.layers)


def test_a_model_converted_out_of_the_kernel_dtypes_declines():
    # float64: the cpu modules take their torch fallbacks, so the fused step, which would not,
    # declines every step and the layers run their modules.
    model = _model(DENSE, torch.float32, None)
    model.to(torch.float64)
    fused, unfused, counters = _fused_and_unfused(model, lambda m: greedy(m, PROMPTS, 3))
    _assert_identical(fused, unfused)
    assert all(c.ran == 0 and c.declined > 0 for c in counters)


@pytest.mark.parametrize("scheme", [None, "int8", "int4:g64", "w8a8", "w4a8"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("kv_cache", ["dynamic", "static"])
def test_all_layers_in_one_call_equal_the_modules_bit_for_bit(scheme, dtype, kv_cache):
    model = _model(DENSE, dtype, scheme, {**CPU_ALL, "kv_cache": kv_cache})
    fused, unfused, (counter,) = _fused_and_unfused(
        model, lambda m: greedy(m, PROMPTS, 6, prefill_chunks=2, reorder=(3, (2, 0))),
        stack=True)
    _assert_identical(fused, unfused)
    assert (counter.ran, counter.declined) == (5, 2)  # every decode step; not the prefills


@pytest.mark.parametrize("kv_cache", ["dynamic", "static"])
def test_all_layers_in_one_call_with_rows_joining(kv_cache):
    model = _model(DENSE, torch.bfloat16, "int4", {**CPU_ALL, "kv_cache": kv_cache})
    fused, unfused, (counter,) = _fused_and_unfused(
        model, lambda m: greedy_joining(m, PROMPTS, 5, arrivals=[0, 2, 3]), stack=True)
    _assert_identical(fused, unfused)
    assert counter.ran > 0


def test_the_stack_follows_weights_replaced_after_building():
    model = _model(DENSE, torch.bfloat16, "int8")
    greedy(model, PROMPTS, 2)  # the stack made its lists
    for layer in model.model.layers:  # a reassigned parameter, not an in-place copy
        norm = layer.post_attention_layernorm
        norm.weight = torch.nn.Parameter(norm.weight.detach() * 1.25, requires_grad=False)
    fused, unfused, (counter,) = _fused_and_unfused(model, lambda m: greedy(m, PROMPTS, 4),
                                                    stack=True)
    _assert_identical(fused, unfused)
    assert counter.ran == 3


@pytest.mark.parametrize("scheme", [None, "int4", "w4a8", "int8:channel"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_moe_models_stack_their_blocks_too(scheme, dtype):
    # The cpu MoE block (router product, routing, moe_experts) inside the one call per step.
    model = _model(MOE, dtype, scheme, {**CPU_ALL, "moe": "cpu"})
    fused, unfused, (counter,) = _fused_and_unfused(
        model, lambda m: greedy(m, PROMPTS, 6, prefill_chunks=2, reorder=(3, (2, 0))),
        stack=True)
    _assert_identical(fused, unfused)
    assert (counter.ran, counter.declined) == (5, 2)


def test_moe_blocks_of_another_implementation_and_storages_without_buffers_are_not_stacked():
    eager_moe = _model(MOE, torch.float32, None, {**CPU_ALL, "moe": "eager"})
    assert eager_moe.layer_stack is None  # its blocks run in Python between the layers
    model = _model(DENSE, torch.float32, None)
    cache = model.new_cache(1, 16)
    with torch.no_grad():
        model(torch.tensor([[3, 4, 5]]), cache=cache)
    batch = cache.begin(None, 1)

    class NoBuffers:  # a storage with only the required methods
        returns_full_capacity = False

        def update(self, *args):
            return cache.storage.update(*args)

    x = torch.zeros(1, 1, DENSE.hidden_size)
    with torch.no_grad():
        assert model.layer_stack(x, None, batch, NoBuffers()) is None
        assert model.layer_stack(x, None, batch, cache.storage) is not None


@pytest.mark.parametrize("scheme", [None, "int4"])
def test_all_layers_in_one_call_at_a_long_context(scheme):
    # Up to 309 cached keys, the long prompt prefilled in three chunks: the attention loop
    # splits over both threads, and every decode step runs through the stack.
    prompts = [[(i * 37 + 11) % 100 for i in range(250)], [4, 9, 2]]
    model = _model(DENSE, torch.bfloat16, scheme)
    fused, unfused, (counter,) = _fused_and_unfused(
        model, lambda m: greedy(m, prompts, 60, prefill_chunks=3), stack=True)
    _assert_identical(fused, unfused)
    assert counter.ran == 59


@pytest.mark.parametrize("change", ["reassign a projection", "convert the model"])
def test_the_stack_notices_a_dense_weight_changed_after_building(change):
    # A projection given a new dense weight (its fused q/k/v restacks) and a model converted
    # to float32 (every weight repacked) must both reach the stack's next step.
    model = _model(DENSE, torch.bfloat16, None)
    greedy(model, PROMPTS, 2)  # the stack made its lists
    if change == "reassign a projection":
        proj = model.model.layers[1].self_attn.k_proj
        proj.weight = torch.nn.Parameter(proj.weight.detach() * -2.0, requires_grad=False)
    else:
        model.to(torch.float32)
    fused, unfused, (counter,) = _fused_and_unfused(model, lambda m: greedy(m, PROMPTS, 4),
                                                    stack=True)
    _assert_identical(fused, unfused)
    assert counter.ran == 3
