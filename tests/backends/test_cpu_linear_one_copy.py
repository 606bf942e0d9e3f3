"""The cpu linear holds each dense weight once: as the kernel's tiles.

Counted, not assumed: the bytes of every tensor a layer (or a model) holds, by storage. And the
dense ``weight`` still behaves as one for everything that reads it: the state dict, loading
(in place, seen by a fused group), tying, ``.to()``, prefill through F.linear.
"""

from __future__ import annotations

import pytest
import torch
from qwen3core_backends import cpu as cpu_backend
from qwen3core_backends.cpu import linear as cpu_linear
from qwen3core_backends.cpu import tiles
from qwen3core_backends.cpu.linear import (
    CpuLinear,
    FusedCpuLinear,
    pack_weight,
    store_weight,
    unpack_weight,
)
from torch import nn
from torch.nn import functional as F

import qwen3core
from qwen3core.testing.models import reference_names
from qwen3core.tied_embedding import HeadRowsEmbedding

CPU = torch.device("cpu")
DTYPES = [torch.bfloat16, torch.float32]
SHAPES = [(1, 1), (5, 3), (16, 8), (17, 33), (100, 65), (48, 258)]
_missing = cpu_backend._check(CPU, torch.float32)
needs_kernels = pytest.mark.skipif(_missing is not None,
                                   reason=f"cpu kernels unavailable here: {_missing}")


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def held_storages(*objects: object) -> dict[int, int]:
    """data_ptr -> bytes of every distinct storage the modules / fused groups hold: their
    parameters, buffers and tensor attributes (the tiles, a fused stack)."""
    found: dict[int, int] = {}

    def add(t: object) -> None:
        if isinstance(t, torch.Tensor) and t.device.type != "meta":
            storage = t.untyped_storage()
            found[storage.data_ptr()] = storage.nbytes()

    for obj in objects:
        modules = obj.modules() if isinstance(obj, nn.Module) else [obj]
        for m in modules:
            for t in [*vars(m).values(), *getattr(m, "_parameters", {}).values(),
                      *getattr(m, "_buffers", {}).values()]:
                add(t)
                for inner in t if isinstance(t, list) else ():
                    add(inner)
    return found


def prepared(n: int, k: int, dtype: torch.dtype, seed: int = 0) -> tuple[CpuLinear, torch.Tensor]:
    layer = CpuLinear(k, n, dtype=dtype, device=CPU)
    dense = torch.randn(n, k, generator=gen(seed)).to(dtype)
    with torch.no_grad():
        layer.weight.copy_(dense)
    layer.prepare_weights()
    return layer, dense


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("n", "k"), SHAPES)
def test_unpack_inverts_pack_and_store_writes_in_place(dtype, n, k):
    dense = torch.randn(n, k, generator=gen(n * k)).to(dtype)
    tiles = pack_weight(dense)
    assert torch.equal(unpack_weight(tiles, n, k), dense)
    other = torch.randn(n, k, generator=gen(1)).to(dtype)
    where = tiles.data_ptr()
    store_weight(tiles, other)
    assert tiles.data_ptr() == where and torch.equal(tiles, pack_weight(other))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("n", "k"), [(112, 40), (16, 8), (17, 33)])
def test_pack_in_blocks_packs_as_a_whole_and_hands_over_every_row_once(dtype, n, k,
                                                                       monkeypatch):
    monkeypatch.setattr(tiles, "IN_PLACE_TILES", 3)  # blocks of 48 rows, a short last one
    dense = torch.randn(n, k, generator=gen(n + k)).to(dtype)
    seen = []
    packed = tiles.pack_in_blocks(dense, lambda rows: seen.append(
        (rows.data_ptr() - dense.data_ptr()) // (k * dense.element_size())))
    assert torch.equal(packed, pack_weight(dense))
    # Every row handed over once, block by block in order (a mapped checkpoint drops each
    # block's pages there); a shape that needs padding goes whole.
    want = [0] if n % 16 or k % 2 else list(range(0, n, 48))
    assert seen == want


@needs_kernels
@pytest.mark.parametrize("dtype", DTYPES)
def test_a_prepared_layer_holds_only_its_tiles(dtype):
    layer, dense = prepared(100, 64, dtype)
    assert "weight" not in layer._parameters
    assert held_storages(layer) == {layer.tiles.data_ptr(): pack_weight(dense).nbytes}
    assert torch.equal(layer.weight, dense)  # read back, unpacked
    assert set(layer.state_dict()) == {"weight"}
    assert torch.equal(layer.state_dict()["weight"], dense)
    x = torch.randn(3, 64, generator=gen(2)).to(dtype)
    assert torch.equal(layer(x), torch.ops.qwen3core_cpu.linear(x, pack_weight(dense), 100))
    limit = layer.max_kernel_rows
    if limit is not None:  # past the row limit: F.linear on the weight unpacked for the call
        many = torch.randn(limit + 1, 64, generator=gen(3)).to(dtype)
        assert torch.equal(layer(many), F.linear(many, dense))
    assert len(held_storages(layer)) == 1  # the unpacked copy of that call is gone


@needs_kernels
def test_many_rows_unpack_into_one_reused_buffer_and_stay_correct(monkeypatch):
    """Past the kernel's row limit each weight is unpacked into this thread's scratch buffer
    (no tensor per call for glibc to keep): two layers taking turns get their own products,
    an earlier result is not overwritten by a later call, and a weight above the scratch's
    size is unpacked on its own."""
    a, dense_a = prepared(48, 40, torch.float32, seed=1)
    b, dense_b = prepared(32, 40, torch.float32, seed=2)
    many = torch.randn(a.max_kernel_rows + 1, 40, generator=gen(3))
    first = a(many)
    scratch = cpu_linear._scratch.buffer
    second = b(many)
    assert cpu_linear._scratch.buffer is scratch  # the same buffer, grown once
    assert torch.equal(first, F.linear(many, dense_a)) and torch.equal(second, F.linear(many,
                                                                                      dense_b))
    assert torch.equal(a(many), first)
    monkeypatch.setattr(cpu_linear, "UNPACK_SCRATCH_MAX_BYTES", 16)
    assert cpu_linear._unpack_scratch(a.tiles) is None  # too large: a tensor of its own
    assert torch.equal(a(many), first)


@needs_kernels
@pytest.mark.parametrize("dtype", DTYPES)
def test_load_state_dict_writes_the_tiles_in_place_and_checks_like_torch(dtype):
    layer, _ = prepared(32, 16, dtype)
    where = layer.tiles.data_ptr()
    new = torch.randn(32, 16, generator=gen(4)).to(dtype)
    layer.load_state_dict({"weight": new})
    assert layer.tiles.data_ptr() == where and torch.equal(layer.weight, new)
    layer.load_state_dict({"weight": new * 2}, assign=True)  # the tiles cannot alias it
    assert layer.tiles.data_ptr() == where and torch.equal(layer.weight, new * 2)
    assert "weight" not in layer._parameters
    with pytest.raises(RuntimeError, match="size mismatch"):
        layer.load_state_dict({"weight": torch.zeros(16, 16)})
    with pytest.raises(RuntimeError, match="Missing key"):
        layer.load_state_dict({})
    assert torch.equal(layer.weight, new * 2)  # the refused loads changed nothing


@needs_kernels
def test_to_converts_and_repacks():
    layer, dense = prepared(48, 40, torch.float32)
    layer.to(torch.bfloat16)
    assert layer.tiles.dtype == torch.bfloat16 and "weight" not in layer._parameters
    assert torch.equal(layer.weight, dense.bfloat16())
    x = torch.randn(2, 40, generator=gen(5)).bfloat16()
    assert torch.equal(layer(x), torch.ops.qwen3core_cpu.linear(x, pack_weight(dense.bfloat16()),
                                                                 48))
    layer.double()  # not a kernel dtype: the dense weight again, F.linear
    assert layer.tiles is None and layer.weight.dtype == torch.float64
    assert torch.equal(layer(x.double()), F.linear(x.double(), dense.bfloat16().double()))


@needs_kernels
def test_a_tied_weight_stays_shared_and_the_tiles_follow_it():
    embedding = nn.Embedding(64, 16)
    head = CpuLinear(16, 64, dtype=torch.float32, device=CPU)
    head.weight = embedding.weight
    head.prepare_weights()
    assert head.weight is embedding.weight  # held by the embedding: not freed, not copied
    x = torch.randn(1, 16, generator=gen(6))
    torch.testing.assert_close(head(x), F.linear(x, embedding.weight))
    with torch.no_grad():
        embedding.weight.mul_(3)  # written through the embedding
    torch.testing.assert_close(head(x), F.linear(x, embedding.weight))


@needs_kernels
@pytest.mark.parametrize("dtype", DTYPES)
def test_a_fused_group_holds_its_weights_once(dtype):
    layers = [prepared(n, 32, dtype, seed=n)[0] for n in (64, 16, 16)]
    dense = [layer.weight for layer in layers]
    fused = FusedCpuLinear.fuse(layers)
    assert held_storages(fused, *layers) == {fused.stack.data_ptr(): fused.stack.nbytes}
    assert all(torch.equal(layer.weight, d) for layer, d in zip(layers, dense))
    layers[2].load_state_dict({"weight": torch.ones(16, 32, dtype=dtype)})
    x = torch.randn(1, 32, generator=gen(7)).to(dtype)
    assert torch.equal(fused(x)[:, 80:], layers[2](x))
    layers[0].to(torch.float32).to(dtype)  # the layer left the stack: the group restacks
    assert torch.equal(fused(x), torch.cat([layer(x) for layer in layers], dim=-1))
    assert len(held_storages(fused, *layers)) == 1


@needs_kernels
@pytest.mark.parametrize(("preset", "dtype"), [("tiny", "bfloat16"), ("tiny-moe", "float32")])
def test_a_loaded_model_holds_each_weight_once_and_saves_the_same_checkpoint(preset, dtype):
    names = reference_names()
    reference = qwen3core.load(f"random:{preset}", dtype=dtype, device="cpu", backends=names)
    loaded = qwen3core.load(f"random:{preset}", dtype=dtype, device="cpu",
                            backends={**names, "linear": "cpu"})
    model, spec = loaded.model, loaded.spec
    want, got = reference.model.state_dict(), model.state_dict()
    assert list(got) == list(want)
    assert all(torch.equal(got[key], want[key]) for key in want)
    linears = [m for m in model.modules() if isinstance(m, CpuLinear)]
    assert all("weight" not in layer._parameters for layer in linears)
    # A tied embedding reads its rows from the head's tiles (qwen3core.tied_embedding).
    tied = spec.tie_word_embeddings
    assert isinstance(model.model.embed_tokens, HeadRowsEmbedding) == tied
    # Bytes held: every parameter of the eager model once (a tied matrix once, as the head's
    # tiles), plus the tiles' zero padding (the MoE router's 8 outputs fill half a tile).
    eager_bytes = sum(held_storages(reference.model).values())
    padding = sum(m.tiles.nbytes - m.out_features * m.in_features * m.tiles.element_size()
                  for m in linears)
    assert sum(held_storages(model).values()) == eager_bytes + padding
    # and a second model loaded from this one's state dict is the same model
    again = qwen3core.load(f"random:{preset}", dtype=dtype, device="cpu",
                           backends={**names, "linear": "cpu"}, seed=1)
    again.model.load_state_dict(got)
    assert all(torch.equal(v, got[k]) for k, v in again.model.state_dict().items())


@needs_kernels
@pytest.mark.parametrize("dtype", DTYPES)
def test_a_large_weight_of_its_own_is_packed_in_place(dtype, monkeypatch):
    monkeypatch.setattr(cpu_linear, "IN_PLACE_MIN_BYTES", 0)  # "large": any size here
    monkeypatch.setattr(tiles, "IN_PLACE_TILES", 3)  # several blocks, a short last one
    dense = torch.randn(112, 40, generator=gen(8)).to(dtype)
    layer = CpuLinear(40, 112, dtype=dtype, device=CPU)
    with torch.no_grad():
        layer.weight.copy_(dense)
    where = layer.weight.data_ptr()
    layer.prepare_weights()
    assert layer.tiles.data_ptr() == where  # rearranged where it was: no copy
    assert torch.equal(layer.tiles, pack_weight(dense))
    # Memory someone else still reads (a larger tensor the weight is a view of) is never
    # rearranged: the layer packs a copy and the other tensor keeps its values.
    base = torch.randn(224, 40, generator=gen(9)).to(dtype)
    before = base.clone()
    shared = CpuLinear(40, 112, dtype=dtype, device=CPU)
    shared.weight = nn.Parameter(base[:112], requires_grad=False)
    shared.prepare_weights()
    assert torch.equal(base, before) and shared.tiles.data_ptr() != base.data_ptr()
    assert torch.equal(shared.tiles, pack_weight(before[:112]))
