"""Random initialisation of a large matrix (the tiny-chat embedding): its scale, varied rows,
and the same seed giving the same model in every dtype."""

import math

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
