"""A checkpoint loaded into the ``cpu`` linear, whose tiles become each weight's only copy.

Loaded in its stored dtype, a checkpoint's tensors are its file, memory-mapped; the linear packs
each into tiles, lets go of it and drops its file pages from memory. The state dict must still
be the files, bit for bit, and the model must compute what the eager one loaded from the same
files computes.
"""

from __future__ import annotations

import sys

import pytest
import torch
from qwen3core_backends import cpu as cpu_backend
from qwen3core_backends.cpu import linear as cpu_linear
from qwen3core_backends.cpu.linear import CpuLinear
from safetensors.torch import load_file

import qwen3core
from qwen3core.memory import drop_file_pages
from qwen3core.tied_embedding import HeadRowsEmbedding

_missing = cpu_backend._check(torch.device("cpu"), torch.bfloat16)
pytestmark = pytest.mark.skipif(_missing is not None,
                                reason=f"cpu kernels unavailable here: {_missing}")


@pytest.mark.parametrize("case", ["dense-untied-gqa2-sharded", "dense-tied-gqa4"])
def test_a_mapped_checkpoint_packed_into_tiles_is_still_the_checkpoint(case, hf_checkpoint,
                                                                      ref, monkeypatch):
    directory = hf_checkpoint(case, torch.bfloat16)
    eager = qwen3core.load(str(directory), device="cpu", backends=ref.EAGER)
    dropped = []

    def counting(address, nbytes):
        dropped.append(drop_file_pages(address, nbytes))
        return dropped[-1]

    monkeypatch.setattr(cpu_linear, "drop_file_pages", counting)
    loaded = qwen3core.load(str(directory), device="cpu",
                            backends={**ref.EAGER, "linear": "cpu"})
    if sys.platform.startswith("linux"):
        assert sum(dropped) > 0  # the packed weights' pages of the mapped files
    model = loaded.model
    tied = loaded.spec.tie_word_embeddings
    for module in model.modules():
        if isinstance(module, CpuLinear):
            assert "weight" not in module._parameters and module.tiles is not None
    # A tied embedding reads the head's tiles: the matrix is not kept as a mapped dense copy.
    assert isinstance(model.model.embed_tokens, HeadRowsEmbedding) == tied
    stored = {}
    for path in directory.glob("*.safetensors"):
        stored.update(load_file(path))
    state = model.state_dict()
    for key, tensor in stored.items():
        assert torch.equal(state[key], tensor), key
    ids = torch.randint(0, 512, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours, theirs = model(ids).float(), eager.model(ids).float()
    # The kernel sums in another order than F.linear: bfloat16 results a rounding apart.
    assert (ours - theirs).abs().max().item() <= 4 * 2.0 ** -7 * theirs.abs().max().item()
