"""A tied model's embedding reads its rows from the cpu head's tiles: the matrix is held once.

The rows must be exactly the dense weight's (the embedding is not an approximation), every
state of the head must keep serving them (dense before packing, tiles after, a dtype the
kernel does not take), bad ids must fail as ``F.embedding`` fails, and the checkpoint keys,
loading and ``.to()`` must behave as they did with a shared parameter.
"""

from __future__ import annotations

import pytest
import torch
from qwen3core_backends import cpu as cpu_backend
from qwen3core_backends.cpu.linear import CpuLinear
from qwen3core_backends.cpu.tiles import gather_rows, pack_weight
from torch import nn
from torch.nn import functional as F

import qwen3core
from qwen3core.contracts import WeightRows
from qwen3core.testing.harness import greedy
from qwen3core.testing.models import reference_names
from qwen3core.tied_embedding import HeadRowsEmbedding

CPU = torch.device("cpu")
DTYPES = [torch.bfloat16, torch.float32]
_missing = cpu_backend._check(CPU, torch.float32)
needs_kernels = pytest.mark.skipif(_missing is not None,
                                   reason=f"cpu kernels unavailable here: {_missing}")


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("n", "k"), [(1, 1), (16, 8), (17, 33), (100, 65), (48, 258)])
def test_gather_rows_reads_exactly_the_packed_rows(dtype, n, k):
    dense = torch.randn(n, k, generator=gen(n + k)).to(dtype)
    ids = torch.randint(0, n, (3, 5), generator=gen(1))
    got = gather_rows(pack_weight(dense), ids, k)
    assert got.shape == (3, 5, k) and got.dtype == dtype
    assert torch.equal(got, F.embedding(ids, dense))
    assert gather_rows(pack_weight(dense), ids[:0], k).shape == (0, 5, k)


@needs_kernels
@pytest.mark.parametrize("dtype", [*DTYPES, torch.float64])
def test_weight_rows_serves_every_state_of_the_head(dtype):
    dense = torch.randn(40, 24, generator=gen(2)).to(dtype)
    head = CpuLinear(24, 40, dtype=dtype, device=CPU)
    assert isinstance(head, WeightRows)
    with torch.no_grad():
        head.weight.copy_(dense)
    ids = torch.tensor([[0, 39, 17], [16, 15, 3]])
    assert torch.equal(head.weight_rows(ids), F.embedding(ids, dense))  # dense, not packed yet
    head.prepare_weights()
    assert ("weight" in head._parameters) == (dtype == torch.float64)  # no kernel for float64
    assert torch.equal(head.weight_rows(ids), F.embedding(ids, dense))
    for bad in ([40], [-1], [0, 41]):  # out of range, as F.embedding refuses them
        with pytest.raises(IndexError):
            head.weight_rows(torch.tensor(bad))


@needs_kernels
@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
def test_a_tied_model_holds_the_matrix_once_and_decodes_as_the_reference(dtype):
    names = reference_names()
    reference = qwen3core.load("random:tiny", dtype=dtype, device="cpu", backends=names)
    loaded = qwen3core.load("random:tiny", dtype=dtype, device="cpu",
                            backends={**names, "linear": "cpu"})
    model = loaded.model
    embedding = model.model.embed_tokens
    assert isinstance(embedding, HeadRowsEmbedding) and not list(embedding.parameters())
    assert "weight" not in model.lm_head._parameters  # the tiles are the only copy
    assert loaded.dtype == getattr(torch, dtype) and loaded.model.device == CPU
    ids = torch.tensor([[0, 5, 511, 7]])
    assert torch.equal(embedding(ids), reference.model.model.embed_tokens(ids))
    with pytest.raises(IndexError):
        embedding(torch.tensor([[512]]))
    prompts = [[3, 1, 4, 1, 5], [2, 7, 1, 8]]
    assert greedy(model, prompts, 8).tokens == greedy(reference.model, prompts, 8).tokens
    # The checkpoint keys are the eager model's, both carrying the one matrix.
    state = model.state_dict()
    assert list(state) == list(reference.model.state_dict())
    assert torch.equal(state["model.embed_tokens.weight"], state["lm_head.weight"])
    # Loading the embedding's key writes the head (the matrix's holder); a wrong shape is
    # refused as torch refuses it, and a strict load without the key names it missing.
    new = torch.randn(512, 64, generator=gen(3)).to(getattr(torch, dtype))
    model.model.embed_tokens.load_state_dict({"weight": new})
    assert torch.equal(model.lm_head.weight, new) and torch.equal(embedding(ids), new[ids])
    with pytest.raises(RuntimeError, match="size mismatch"):
        model.model.embed_tokens.load_state_dict({"weight": new[:10]})
    with pytest.raises(RuntimeError, match="Missing key"):
        model.model.embed_tokens.load_state_dict({})
    # Converted: the head repacks, the embedding follows it.
    model.float() if dtype == "bfloat16" else model.bfloat16()
    assert loaded.model.dtype == model.lm_head.tiles.dtype
    assert torch.equal(embedding(ids), new[ids].to(model.lm_head.tiles.dtype))


@needs_kernels
def test_a_quantized_head_leaves_the_embedding_its_dense_rows():
    names = {**reference_names(), "linear": "cpu"}
    loaded = qwen3core.load("random:tiny", dtype="bfloat16", device="cpu", backends=names,
                            quantize="int8", quantize_head=True)
    embedding = loaded.model.model.embed_tokens
    assert isinstance(embedding, nn.Embedding)  # exact rows, the head's are levels
    plain = qwen3core.load("random:tiny", dtype="bfloat16", device="cpu", backends=names,
                           quantize="int8")
    # The head as stored (dense, tied): it serves the rows and holds the only copy.
    assert isinstance(plain.model.model.embed_tokens, HeadRowsEmbedding)
    ids = torch.tensor([[1, 2, 3]])
    assert torch.equal(plain.model.model.embed_tokens(ids), embedding(ids))
