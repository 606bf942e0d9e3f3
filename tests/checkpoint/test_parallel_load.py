"""A tensor-parallel rank loads its slice of every checkpoint tensor, and only its experts."""

import pytest
import torch

from qwen3core.build import select_backends
from qwen3core.checkpoint.config import read_config, spec_from_config
from qwen3core.checkpoint.files import find_weight_files
from qwen3core.checkpoint.materialise import load_model
from qwen3core.errors import CheckpointError
from qwen3core.parallel import ParallelLayout
from qwen3core.parallel.plan import ELSEWHERE, Shard, shard_for


def _load(directory, layout, ref, moe="eager"):
    spec = spec_from_config(read_config(directory), str(directory))
    selection = select_backends({**ref.EAGER, "moe": moe}, device=torch.device("cpu"),
                                dtype=torch.float32)
    model = load_model(spec, selection, find_weight_files(directory), dtype=torch.float32,
                       device=torch.device("cpu"), where=str(directory), parallel=layout)
    return spec, model


@pytest.mark.parametrize("case, world_size, moe", [
    ("dense-untied-gqa2-sharded", 2, "eager"),
    ("dense-untied-gqa2-sharded", 4, "eager"),  # 2 KV heads over 4 ranks: replicated
    ("moe-normtopk-mlponly-sharded", 2, "grouped"),
    ("moe-rawtopk-step2-gqa4", 4, "eager"),
])
def test_each_rank_loads_exactly_its_slices(hf_checkpoint, ref, case, world_size, moe):
    directory = hf_checkpoint(case)
    spec, whole = _load(directory, ParallelLayout(), ref, moe)
    whole_state = whole.state_dict()
    for rank in range(world_size):
        layout = ParallelLayout(rank, world_size)
        _, model = _load(directory, layout, ref, moe)
        local = model.state_dict()
        for key, full in whole_state.items():
            shard = shard_for(key, spec, layout)
            if shard == ELSEWHERE:
                assert key not in local
            else:
                want = full[shard.index()] if isinstance(shard, Shard) else full
                assert torch.equal(local[key], want), f"rank {rank}: {key}"


def test_a_tensor_of_the_wrong_whole_size_is_reported_as_stored(hf_checkpoint, ref, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    directory = tmp_path / "m"
    shutil.copytree(hf_checkpoint("dense-tied-gqa1"), directory)
    tensors = load_file(directory / "model.safetensors")
    key = "model.layers.0.self_attn.q_proj.weight"
    tensors[key] = tensors[key][:-16].contiguous()  # one head short
    save_file(tensors, directory / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=r"q_proj.weight .* is \[48, 64\]"):
        _load(directory, ParallelLayout(1, 2), ref)
