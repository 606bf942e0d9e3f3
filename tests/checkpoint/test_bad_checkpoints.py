"""Every way a checkpoint can be wrong gives one clear CheckpointError that says what and where."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

import qwen3core
from qwen3core import CheckpointError, Qwen3CoreError


@pytest.fixture
def good(hf_checkpoint, tmp_path):
    """A private copy of a small untied float32 checkpoint (single file) to damage."""
    directory = tmp_path / "model"
    shutil.copytree(hf_checkpoint("dense-untied-gqa2-sharded"), directory)
    return directory


@pytest.fixture
def single(tmp_path, ref):
    directory = tmp_path / "single"
    _, overrides, _ = ref.CASES["dense-untied-gqa2-sharded"]
    return ref.write_hf_checkpoint(directory, "dense", overrides)


def _load(directory, ref, **kwargs):
    return qwen3core.load(str(directory), device="cpu", backends=ref.EAGER, **kwargs)


def _edit_config(directory, **changes):
    path = directory / "config.json"
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))


def test_missing_unexpected_and_misshapen_keys_are_reported_together(single, ref):
    path = single / "model.safetensors"
    tensors = load_file(path)
    del tensors["model.layers.1.mlp.up_proj.weight"]
    tensors["model.layers.0.mlp.extra_proj.weight"] = torch.zeros(4, 4)
    tensors["model.norm.weight"] = torch.ones(63)
    save_file(tensors, path, metadata={"format": "pt"})
    with pytest.raises(CheckpointError) as info:
        _load(single, ref)
    message = str(info.value)
    assert str(single) in message and "model.safetensors" in message
    assert "missing from the checkpoint (1): model.layers.1.mlp.up_proj.weight" in message
    assert ("unexpected in the checkpoint (1): model.layers.0.mlp.extra_proj.weight "
            "[model.safetensors]") in message
    assert "model.norm.weight [model.safetensors] is [63], the model needs [64]" in message


def test_the_error_names_the_shard_that_holds_a_bad_key(good, ref):
    index = json.loads((good / "model.safetensors.index.json").read_text())
    shard = index["weight_map"]["model.layers.2.self_attn.q_proj.weight"]
    tensors = load_file(good / shard)
    tensors["model.layers.2.self_attn.q_proj.weight"] = torch.zeros(8, 64)
    save_file(tensors, good / shard, metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=rf"q_proj.weight \[{shard}\] is \[8, 64\], the "
                                              r"model needs \[64, 64\]"):
        _load(good, ref)


def test_many_missing_keys_are_listed_briefly(single, ref):
    path = single / "model.safetensors"
    # Every layer keeps its norms, so the outline (layer count) still fits and the key-by-key
    # check is what reports the rest.
    tensors = {k: v for k, v in load_file(path).items()
               if ".self_attn." not in k and ".mlp." not in k}
    save_file(tensors, path, metadata={"format": "pt"})
    with pytest.raises(CheckpointError) as info:
        _load(single, ref)
    message = str(info.value)
    assert "missing from the checkpoint (27): " in message  # 3 layers x 9 tensors
    assert "... and 15 more" in message
    assert len(message) < 2500


def test_truncated_file(single, ref):
    path = single / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[:-1000])
    with pytest.raises(CheckpointError, match=r"model\.safetensors is not a valid safetensors "
                                              r"file .*truncated or corrupt"):
        _load(single, ref)


def test_corrupt_header(single, ref):
    path = single / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[8:24] = b"\xff" * 16  # inside the JSON header
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"model\.safetensors is not a valid safetensors"):
        _load(single, ref)


def test_header_length_beyond_the_file(single, ref):
    path = single / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[:8] = (len(data) * 2).to_bytes(8, "little")
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"model\.safetensors is not a valid safetensors"):
        _load(single, ref)


def test_shard_listed_in_the_index_but_absent(good, ref):
    shard = max(good.glob("model-*.safetensors"))
    shard.unlink()
    with pytest.raises(CheckpointError, match=rf"lists shard\(s\) that are missing .*"
                                              rf"{shard.name}.*download is incomplete"):
        _load(good, ref)


@pytest.mark.parametrize("model_type, architectures, expected", [
    ("llama", ["LlamaForCausalLM"], r"describes a llama model \(LlamaForCausalLM\), not Qwen3"),
    ("qwen2", ["Qwen2ForCausalLM"], r"describes a qwen2 model"),
    ("qwen3", ["Qwen3ForSequenceClassification"],
     r"model_type 'qwen3' but architectures \['Qwen3ForSequenceClassification'\]"),
    (None, [], r"describes a model without a model_type"),
])
def test_config_that_is_not_a_qwen3_causal_lm(single, ref, model_type, architectures, expected):
    _edit_config(single, model_type=model_type, architectures=architectures)
    with pytest.raises(CheckpointError, match=expected):
        _load(single, ref)


@pytest.mark.parametrize("changes, expected", [
    ({"rope_parameters": {"rope_type": "dynamic", "factor": 4.0, "rope_theta": 1e6}},
     r"rope_parameters\.rope_type='dynamic' asks for rope scaling qwen3core does not"),
    ({"quantization_config": {"quant_method": "bitsandbytes"}},
     r"quantization method 'bitsandbytes' is not supported"),
    ({"use_sliding_window": True}, r"sliding-window attention"),
    ({"hidden_act": "gelu"}, r"activation 'gelu'"),
    ({"num_attention_heads": 5}, r"num_attention_heads \(5\) must be a multiple"),
    ({"dtype": "int8"}, r"declares dtype 'int8'"),
])
def test_config_asking_for_what_is_not_implemented(single, ref, changes, expected):
    _edit_config(single, **changes)
    with pytest.raises(CheckpointError, match=expected):
        _load(single, ref)


def test_missing_config(single, ref):
    (single / "config.json").unlink()
    with pytest.raises(CheckpointError, match=r"has no config\.json, so it is not a Hugging "
                                              r"Face model directory"):
        _load(single, ref)


def test_no_weights(single, ref):
    (single / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"has no weights: neither model\.safetensors nor "
                                              r"model\.safetensors\.index\.json"):
        _load(single, ref)


def test_pickled_weights_are_never_loaded(single, ref):
    (single / "model.safetensors").unlink()
    (single / "pytorch_model.bin").write_bytes(b"not read")
    with pytest.raises(CheckpointError, match=r"only pickled weights \(pytorch_model\.bin\), "
                                              r"which qwen3core never loads"):
        _load(single, ref)


def test_integer_tensors_are_refused(single, ref):
    path = single / "model.safetensors"
    tensors = load_file(path)
    tensors["model.norm.weight"] = torch.ones(64, dtype=torch.int8)
    save_file(tensors, path, metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=r"model\.norm\.weight \(torch\.int8\)"):
        _load(single, ref)


@pytest.mark.parametrize("source", ["./no-such-model", "/no/such/dir", "no/such/local/dir",
                                    "~/no-such-model"])
def test_a_path_that_does_not_exist_is_not_looked_up_on_the_hub(source, ref, monkeypatch):
    import huggingface_hub

    def no_network(*args, **kwargs):
        raise AssertionError("a local-looking path must not reach the hub")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", no_network)
    with pytest.raises(CheckpointError, match=r"no such directory"):
        qwen3core.load(source, device="cpu")


def test_a_file_instead_of_a_directory(single):
    with pytest.raises(CheckpointError, match=r"is a file; pass the model directory"):
        qwen3core.load(str(single / "config.json"), device="cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_device_that_is_not_there(single, ref):
    with pytest.raises(Qwen3CoreError, match=r"device 'cuda' requested but .*(no CUDA support|"
                                             r"no CUDA GPU is visible)"):
        qwen3core.load(str(single), device="cuda")


@pytest.mark.skipif(not hasattr(torch, "float8_e8m0fnu"), reason="needs torch >= 2.7")
def test_a_dtype_the_device_cannot_compute_in_is_refused_up_front():
    from qwen3core.checkpoint.device import check_dtype_on_device

    check_dtype_on_device(torch.bfloat16, torch.device("cpu"))  # fine on every CPU torch
    with pytest.raises(Qwen3CoreError, match=r"dtype float8_e8m0fnu is not supported on device "
                                             r"cpu \(.*\); pass a dtype the device supports"):
        check_dtype_on_device(torch.float8_e8m0fnu, torch.device("cpu"))  # no CPU matmul
