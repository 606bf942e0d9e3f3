"""Fuzzing config.json (issue 18): whatever its values' types and ranges and whichever keys are
missing, loading either succeeds or raises one of qwen3core's own errors with a message; never
a raw exception, a hang (each load is bounded by an alarm) or an allocation beyond the bound
below (the memory check is told the machine has only that much free, so a config whose weights
would need more must be refused before anything is allocated).
"""

from __future__ import annotations

import json
import math
import resource
import signal
from contextlib import contextmanager
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import qwen3core
from qwen3core import memory
from qwen3core.errors import Qwen3CoreError
from qwen3core.testing.suite import scaled_examples

BOUND_BYTES = 256 * 2**20  # what the memory check is told is free
LOAD_SECONDS = 60  # per load; a tiny checkpoint loads in well under a second
FIELDS = ("model_type", "architectures", "vocab_size", "hidden_size", "num_hidden_layers",
          "num_attention_heads", "num_key_value_heads", "intermediate_size", "head_dim",
          "rms_norm_eps", "rope_theta", "rope_parameters", "max_position_embeddings",
          "tie_word_embeddings", "attention_bias", "num_experts", "num_experts_per_tok",
          "moe_intermediate_size", "decoder_sparse_step", "mlp_only_layers", "eos_token_id",
          "bos_token_id", "hidden_act", "dtype", "quantization_config", "use_sliding_window")

_DELETE = object()
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 300), st.sampled_from([0, 2**31, 10**7, 2**70]),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([64.0, 1e6, -1.0]),
    st.text(max_size=8), st.sampled_from(["qwen3", "qwen3_moe", "llama", "silu", "bfloat16"]))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                           max_leaves=6)
# Plausible sizes as often as wild values, so range and consistency checks get exercised too.
plausible = st.one_of(st.integers(-2, 300), st.sampled_from([0, 1, 2, 4, 8, 16, 64, 10**7, 2**40,
                                                            2**70, 1e-6, 1e4, -1.0]))
edits = st.dictionaries(st.sampled_from(FIELDS),
                        st.one_of(st.just(_DELETE), plausible, json_values),
                        min_size=1, max_size=5)


@contextmanager
def _alarm(seconds: int):
    def hang(signum, frame):
        raise AssertionError(f"a load took more than {seconds} s: a hang")

    previous = signal.signal(signal.SIGALRM, hang)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module")
def base(hf_checkpoint):
    return hf_checkpoint("moe-rawtopk-step2-gqa4"), hf_checkpoint("dense-tied-gqa1")


def _rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def test_any_config_loads_or_fails_with_a_qwen3core_error(base, tmp_path_factory, ref):
    root = tmp_path_factory.mktemp("fuzz")
    counter = iter(range(10**9))
    rss_before = _rss_bytes()

    @settings(max_examples=scaled_examples(60), deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(source=st.sampled_from(base), changes=edits)
    def check(source, changes):
        config = json.loads((source / "config.json").read_text())
        for key, value in changes.items():
            if value is _DELETE:
                config.pop(key, None)
            else:
                config[key] = value
        directory = root / str(next(counter))
        directory.mkdir()
        (directory / "config.json").write_text(json.dumps(config))
        for weights in source.glob("*.safetensors*"):
            (directory / weights.name).symlink_to(weights)
        with _alarm(LOAD_SECONDS), mock.patch.object(memory, "available_bytes",
                                                     lambda device: BOUND_BYTES):
            try:
                loaded = qwen3core.load(directory, device="cpu", backends=ref.EAGER)
            except Qwen3CoreError as exc:
                assert str(exc).strip(), f"{type(exc).__name__} without a message"
                return
        assert memory.weight_bytes(loaded.spec, loaded.dtype) <= BOUND_BYTES
        assert all(math.isfinite(v) for v in (loaded.spec.rope_theta, loaded.spec.rms_norm_eps))

    check()
    # The process as a whole stayed far below what any refused config would have needed.
    assert _rss_bytes() - rss_before < 4 * BOUND_BYTES
