"""``BackendConformance``: every documented option reaches the suite, and a plugin's class fails
for that plugin's bugs only (another installed plugin's bug is not drawn beside it, unless
asked for, and then the failure names the implementation at fault)."""

from __future__ import annotations

from typing import ClassVar

import pytest
import torch
from hypothesis import strategies as st
from qwen3core_backends.eager.attention import eager_attention
from qwen3core_backends.eager.kv_cache import DynamicKVCache

from qwen3core import Implementation, hookimpl
from qwen3core.spec import PRESETS
from qwen3core.testing import BackendConformance, conformance


class CorrectAttention:
    """A second plugin: the reference's attention under another name (correct by design)."""

    @hookimpl
    def qwen3core_attention(self):
        return Implementation("attention", "eager-copy", lambda ctx: eager_attention)


class LosesLastSlot(DynamicKVCache):
    """A third plugin's bug: the newest slot's values come back as zeros."""

    def update(self, layer_idx, start, k, v, length):
        k, v = super().update(layer_idx, start, k, v, length)
        v = v.clone()
        v[:, :, -1] = 0
        return k, v


class BuggyCache:
    @hookimpl
    def qwen3core_kv_cache(self):
        return Implementation("kv_cache", "loses-last-slot",
                              lambda ctx, b, capacity: LosesLastSlot(ctx.spec.num_hidden_layers,
                                                                     capacity))


class TestCorrectBesideABuggyPlugin(BackendConformance):
    """Runs as a test here: the buggy cache is installed too, and this class still passes."""

    component = "attention"
    name = "eager-copy"
    plugins = (CorrectAttention(), BuggyCache())
    dtypes = (torch.float64,)
    max_examples = 8
    long_examples = 1


def test_drawing_the_others_finds_the_buggy_plugin_and_names_it():
    class Drawn(TestCorrectBesideABuggyPlugin):
        others = "drawn"
        max_examples = 30
        long_examples = 0
        shrink = False

    with pytest.raises(AssertionError) as info:
        Drawn().test_greedy_equivalent_to_the_eager_reference()
    message = str(info.value)
    assert message.startswith("kv_cache=loses-last-slot diverge")
    assert "attention=eager-copy diverge" not in message


def test_every_documented_option_reaches_the_suite(monkeypatch):
    seen = {}

    def spy(component, name, **kwargs):
        seen.update(kwargs, component=component, name=name)
        return 1

    monkeypatch.setattr(conformance, "check_backend", spy)

    def two_prompts(vocab_size):
        return st.just(None)

    spec_strategy = st.just(PRESETS["tiny"])

    class AllOptions(BackendConformance):
        component, name = "attention", "sdpa"
        device = "cpu"
        dtypes = (torch.float32,)
        max_examples, long_examples = 3, 0
        others = "drawn"
        pinned: ClassVar[dict[str, str]] = {"kv_cache": "static"}
        runners = ("eager", "compile")
        workload_strategy = two_prompts
        alone, shrink = False, False
        quantize = "int8"

    AllOptions.spec_strategy = spec_strategy
    AllOptions().test_greedy_equivalent_to_the_eager_reference()
    assert seen == {
        "component": "attention", "name": "sdpa", "plugins": (), "device": "cpu",
        "dtypes": (torch.float32,), "max_examples": 3, "long_examples": 0, "others": "drawn",
        "pinned": {"kv_cache": "static"}, "runners": ("eager", "compile"),
        "spec_strategy": spec_strategy, "workload_strategy": two_prompts, "alone": False,
        "shrink": False, "quantize": "int8"}


def test_others_must_be_drawn_or_reference():
    from qwen3core.testing import check_backend

    with pytest.raises(ValueError, match='others must be "drawn" or "reference"'):
        check_backend("attention", "sdpa", others="eager")
