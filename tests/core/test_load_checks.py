"""load()'s arguments and the memory check: one clear error each, before any work (issue 18
items 2 and 6)."""

import pathlib

import pytest
import torch

import qwen3core
from qwen3core import memory
from qwen3core.errors import BackendSelectionError, Qwen3CoreError
from qwen3core.spec import PRESETS

GIB = 2**30


@pytest.mark.parametrize("kwargs, complaint", [
    ({"source": None}, "source must be a string or a path"),
    ({"source": 7}, "source must be a string or a path"),
    ({"source": ""}, "source is empty"),
    ({"source": "random:tiny", "dtype": torch.int8}, "not a float type"),
    ({"source": "random:tiny", "dtype": 5}, "dtype must be a name"),
    ({"source": "random:tiny", "device": "mps"}, "not supported: qwen3core runs on cpu and cuda"),
    ({"source": "random:tiny", "device": 3.5}, "device must be a name"),
    ({"source": "random:tiny", "backends": "eager"}, r"is a string; pass a mapping"),
    ({"source": "random:tiny", "backends": {"attention": 1}}, "both strings"),
    ({"source": "random:tiny", "seed": 2**64}, r"seed must be in 0\.\.2\*\*64-1"),
    ({"source": "random:tiny", "seed": 1.5}, "seed must be an integer"),
    ({"source": "random:tiny", "revision": 3}, "revision must be a string"),
])
def test_bad_load_arguments_are_clear_errors(kwargs, complaint):
    with pytest.raises(Qwen3CoreError, match=complaint):
        qwen3core.load(**kwargs)


def test_a_string_for_backends_is_a_backend_selection_error():
    with pytest.raises(BackendSelectionError, match=r"backends=\{'attention': 'eager'\}"):
        qwen3core.load("random:tiny", backends="eager")


def test_a_torch_float_dtype_object_is_accepted():
    loaded = qwen3core.load("random:tiny", dtype=torch.float64, backends={"linear": "eager"})
    assert {p.dtype for p in loaded.model.parameters()} == {torch.float64}


def test_a_path_object_is_a_local_directory(tmp_path):
    with pytest.raises(qwen3core.CheckpointError, match="has no config.json"):
        qwen3core.load(pathlib.Path(tmp_path))


def test_closed_form_parameter_count_agrees_with_the_spec():
    for name, spec in PRESETS.items():
        assert memory.parameter_count(spec) == spec.parameter_count(count_tied_twice=False), name
    odd = PRESETS["tiny-moe"].replace(num_hidden_layers=7, decoder_sparse_step=2,
                                      mlp_only_layers=(1, 2, 99))
    assert memory.parameter_count(odd) == odd.parameter_count(count_tied_twice=False)


def test_235b_on_a_24_gib_machine_is_a_clear_error_not_an_allocator_death(monkeypatch):
    monkeypatch.setattr(memory, "available_bytes", lambda device: 24 * GIB)
    with pytest.raises(memory.InsufficientMemoryError) as info:
        qwen3core.load("random:235B-A22B", dtype="bfloat16", device="cpu")
    message = str(info.value)
    assert "random:235B-A22B" in message and "24.0 GiB free" in message
    assert "needs 43" in message  # ~235e9 parameters * 2 bytes = ~438 GiB
    assert "quantized" in message and "device='cuda'" in message
    with pytest.raises(memory.InsufficientMemoryError, match="dtype='bfloat16' needs"):
        qwen3core.load("random:8B", dtype="float32", device="cpu")


def test_the_memory_check_can_be_skipped_on_purpose(monkeypatch):
    monkeypatch.setattr(memory, "available_bytes", lambda device: 1)
    with pytest.raises(memory.InsufficientMemoryError):
        qwen3core.load("random:tiny", backends={"linear": "eager"})
    monkeypatch.setenv(memory.SKIP_ENV, "1")
    assert qwen3core.load("random:tiny", backends={"linear": "eager"}).spec.hidden_size == 64


def test_this_machines_free_memory_is_read():
    free = memory.available_bytes(torch.device("cpu"))
    assert free is not None and free > 0
