"""Random initialisation of a large matrix (the tiny-chat embedding): its scale, varied rows,
and the same seed giving the same model in every dtype."""

import math

import pytest
import torch

from qwen3core import PRESETS
from qwen3core.build import build_random, select_backends

EAGER = {"attention": "eager", "norm": "eager", "rope": "eager", "kv_cache": "dynamic",
         "linear": "eager", "mlp": "eager", "moe": "eager", "runner": "eager"}
CPU = torch.device("cpu")


def build(preset, dtype, seed=0):
    selection = select_backends(EAGER, device=CPU, dtype=dtype)
    return build_random(PRESETS[preset], selection, dtype=dtype, device=CPU, seed=seed)


def test_large_matrices_have_the_scale_and_varied_rows():
    embed = build("tiny-chat", torch.float32).model.embed_tokens.weight  # 151936 x 64 values
    assert abs(embed.std().item() - 4 / math.sqrt(64)) < 0.01
    assert abs(embed.mean().item()) < 0.01
    rows = embed[:2000]
    assert torch.unique(rows, dim=0).shape[0] == 2000  # no two rows alike


def test_same_seed_same_model_in_every_dtype_and_another_seed_differs():
    a = build("tiny-chat", torch.float32).model.embed_tokens.weight
    b = build("tiny-chat", torch.bfloat16).model.embed_tokens.weight
    c = build("tiny-chat", torch.float32, seed=1).model.embed_tokens.weight
    assert torch.equal(a.to(torch.bfloat16), b)
    assert not torch.equal(a, c)


def test_the_same_values_whatever_the_number_of_threads_drawing_them():
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)  # one thread draws every parameter in turn
        alone = build("tiny-moe", torch.float32).state_dict()
        torch.set_num_threads(5)  # five draw them side by side
        shared = build("tiny-moe", torch.float32).state_dict()
        assert torch.get_num_threads() == 5  # each worker ran on one; the setting is back
    finally:
        torch.set_num_threads(threads)
    assert alone.keys() == shared.keys()
    for name in alone:
        assert torch.equal(alone[name], shared[name]), name


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_tile_is_its_generators_normal_draw_times_the_scale(dtype):
    # The definition the load's tile-by-tile drawing (reused buffers, scaled on the way into
    # the parameter) must keep: every tile is torch.randn from its own generator, times the
    # scale, cast once. A region across tile borders, ragged at both ends.
    from qwen3core.init import TILE, _tile_generator, fill_random

    name, whole, seed = "model.layers.0.mlp.down_proj.weight", (600, 2100), 3
    rows, cols = slice(100, 555), slice(7, 2001)
    got = torch.empty(455, 1994, dtype=dtype)
    fill_random(got, name, seed, 64, whole, (rows, cols))
    want = torch.empty(whole)
    for i in range(-(-whole[0] // TILE[0])):
        for j in range(-(-whole[1] // TILE[1])):
            top, left = i * TILE[0], j * TILE[1]
            shape = (min(TILE[0], whole[0] - top), min(TILE[1], whole[1] - left))
            want[top:top + shape[0], left:left + shape[1]] = torch.randn(
                shape, generator=_tile_generator(seed, name, i, j)) * (2.0 / math.sqrt(2100))
    assert torch.equal(got, want[rows, cols].to(dtype))
