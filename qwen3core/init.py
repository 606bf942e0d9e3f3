"""Random initialisation that gives a usable random model.

The usual 0.02 normal init makes a random Qwen3 greedily repeat one token forever, which would
blind every equivalence test (all backends would "agree" on a constant). Scaling each linear
by ``2/sqrt(fan_in)`` makes each layer change the residual stream substantially (with gain 1
the tiny presets still fell into one repeated token for some seeds), and embeddings / head at
``4/sqrt(hidden)`` give logits of standard deviation ~4: varied greedy tokens with top-1/top-2
margins wide enough to survive bfloat16 rounding most of the time. tests/test_init.py checks
the variety. Norm weights are
drawn around 1 so that a loader or backend that ignores them is caught.

Values are drawn in float32 and then cast, so the same seed gives the same model (up to
rounding) in every dtype and on every device. Each parameter is drawn in tiles of at most
:data:`TILE` elements, each from its own generator seeded by (seed, checkpoint key, tile):
any part of a tensor can be drawn without drawing the rest, so a tensor-parallel rank fills
only its shard, holding one tile at a time, with exactly the values the whole model has there
(and the values do not depend on the order modules are registered in).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import torch
from torch import nn

#: Rows x columns of one tile (a 1-D parameter is one row).
TILE = (256, 1024)

#: For a parameter name and its local shape: (its whole shape, the index of the local part in
#: the whole), or None when the parameter is whole.
Region = Callable[[str, tuple[int, ...]], "tuple[tuple[int, ...], tuple[slice, ...]] | None"]


def _tile_generator(seed: int, name: str, row: int, col: int) -> torch.Generator:
    digest = hashlib.sha256(f"{seed}/{name}/{row}/{col}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def _sampler(name: str, whole: tuple[int, ...], hidden_size: int
             ) -> tuple[Callable[[torch.Tensor, torch.Generator], torch.Tensor], float | None]:
    """How a tile is drawn: a function filling a float32 buffer (reused from tile to tile: no
    allocation per tile) from the tile's generator, and the scale its values are multiplied by
    on their way into the parameter (None: none). Together the values of
    ``torch.randn(shape, generator=gen) * scale``, cast once to the parameter's dtype."""
    if name.endswith("norm.weight"):
        return (lambda out, gen: out.uniform_(0.8, 1.2, generator=gen)), None
    if name.endswith("embed_tokens.weight") or name == "lm_head.weight":
        scale = 4.0 / math.sqrt(hidden_size)
    elif len(whole) >= 2:
        scale = 2.0 / math.sqrt(whole[-1])  # the whole tensor's fan-in, also on a shard
    else:
        scale = 0.02
    return (lambda out, gen: torch.randn(out.shape, generator=gen, out=out)), scale


@torch.no_grad()
def fill_random(param: torch.Tensor, name: str, seed: int, hidden_size: int,
                whole: tuple[int, ...] | None = None,
                index: tuple[slice, ...] = ()) -> None:
    """Fill ``param`` with part ``index`` of the random tensor of shape ``whole`` (default:
    ``param``'s own shape, index everything) that parameter ``name`` has under ``seed``."""
    whole = tuple(param.shape) if whole is None else tuple(whole)
    if len(whole) > 2:
        raise ValueError(f"{name}: random init handles 1-D and 2-D parameters, not {whole}")
    rows, cols = (1, whole[0]) if len(whole) == 1 else whole
    index = tuple(index) + (slice(None),) * (len(whole) - len(index))
    r_lo, r_hi = (0, 1) if len(whole) == 1 else index[0].indices(rows)[:2]
    c_lo, c_hi = index[-1].indices(cols)[:2]
    target = param.view(1, -1) if len(whole) == 1 else param
    draw, scale = _sampler(name, whole, hidden_size)
    tr, tc = TILE
    buffer = torch.empty(min(tr, rows) * min(tc, cols))
    for i in range(r_lo // tr, -(-r_hi // tr)):
        for j in range(c_lo // tc, -(-c_hi // tc)):
            top, left = i * tr, j * tc
            shape = (min(tr, rows - top), min(tc, cols - left))
            tile = draw(buffer[:shape[0] * shape[1]].view(shape),
                        _tile_generator(seed, name, i, j))
            # The overlap of this tile with the requested part, in both coordinates.
            r0, r1 = max(top, r_lo), min(top + tile.shape[0], r_hi)
            c0, c1 = max(left, c_lo), min(left + tile.shape[1], c_hi)
            into = target[r0 - r_lo:r1 - r_lo, c0 - c_lo:c1 - c_lo]
            # Drawn on the CPU (the same values on every device), then moved: ``mul`` with
            # ``out=`` takes no operands from another device.
            part = tile[r0 - top:r1 - top, c0 - left:c1 - left].to(into.device)
            if scale is None:
                into.copy_(part)
            else:  # scaled in float32 and cast once, in one pass
                torch.mul(part, scale, out=into)


@torch.no_grad()
def initialize_random(model: nn.Module, seed: int, hidden_size: int,
                      region: Region | None = None) -> None:
    """Fill every parameter of ``model`` (tied ones once) from ``seed``. ``region`` says which
    part of the whole tensor a parameter holds (a tensor-parallel shard); default: all of it."""
    seen: set[int] = set()
    jobs = []
    for name, param in model.named_parameters(remove_duplicate=False):
        if id(param) in seen:
            continue
        seen.add(id(param))
        part = None if region is None else region(name, tuple(param.shape))
        jobs.append((param, name, () if part is None else part))

    def fill(job) -> None:
        param, name, part = job
        fill_random(param, name, seed, hidden_size, *part)

    # Drawing is one CPU thread's work per tensor (torch's normal sampler runs on one thread),
    # ~0.25 G values/s: 35 s for the 8B shape. The parameters are independent (every tile has its
    # own generator), so they are drawn on all of torch's threads, each value the same as drawn
    # alone; torch releases the GIL inside its operators.
    threads = torch.get_num_threads()
    workers = min(threads, len(jobs))
    if workers <= 1:
        for job in jobs:
            fill(job)
        return
    # The pool is the parallelism: each worker's own operators (the scaling, the copy) run on one
    # thread, or every worker would start a team of ``threads`` OpenMP threads of its own.
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(workers, thread_name_prefix="qwen3core-init") as pool:
            for _ in pool.map(fill, jobs):  # re-raises the first failure
                pass
    finally:
        torch.set_num_threads(threads)
