"""The ``cpu`` linear's layout of a dense weight: 16-output tiles (see ``csrc/kernels.h``).

bfloat16 ``[ceil(N/16), ceil(K/2), 16, 2]`` with input pairs interleaved, float32
``[ceil(N/16), ceil(K/2)*2, 16]``, zero-padded. Packing (whole, or a block of rows at a time),
its inverse, writing a dense weight into existing tiles in place, reading rows without
unpacking, and packing a weight over its own memory.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

TILE = 16  # output features per packed tile (kTile in csrc/kernels.h)


def pack_weight(weight: torch.Tensor) -> torch.Tensor:
    """[N, K] -> the kernel's tiles: bfloat16 [ceil(N/16), ceil(K/2), 16, 2] with input pairs
    interleaved, float32 [ceil(N/16), ceil(K/2)*2, 16]; zero-padded."""
    n, k = weight.shape
    n_pad, k_pad = -(-n // TILE) * TILE, -(-k // 2) * 2
    padded = weight = weight.detach()  # no autograd record: it would keep the weight alive
    if (n_pad, k_pad) != (n, k):
        padded = weight.new_zeros(n_pad, k_pad)
        padded[:n, :k] = weight
    if weight.dtype == torch.bfloat16:
        tiles = padded.view(n_pad // TILE, TILE, k_pad // 2, 2).transpose(1, 2)
    else:
        tiles = padded.view(n_pad // TILE, TILE, k_pad).transpose(1, 2)
    return tiles.contiguous()


def _rows_of(tiles: torch.Tensor) -> torch.Tensor:
    """The tiles seen as [tiles, 16, columns]: one row per output, float32 values or (bfloat16)
    32-bit words that each hold an input pair. A view: writing it writes the tiles. Moving
    pairs as words makes the transpose of bfloat16 a 4-byte copy, several times faster in
    torch than one of 2-byte pairs."""
    if tiles.dtype == torch.bfloat16:
        return tiles.view(torch.int32).squeeze(-1).transpose(1, 2)
    return tiles.transpose(1, 2)


def unpack_weight(tiles: torch.Tensor, out_features: int, in_features: int,
                  into: torch.Tensor | None = None) -> torch.Tensor:
    """:func:`pack_weight`'s inverse: the dense [out, in] weight, as a new contiguous tensor,
    or written into the start of ``into`` (a flat byte buffer at least that large) where the
    shape needs no padding removed."""
    view = _rows_of(tiles)
    nbytes = view.numel() * view.element_size()
    if (into is not None and into.numel() >= nbytes and tiles.shape[0] * TILE == out_features
            and view.shape[-1] * (2 if tiles.dtype == torch.bfloat16 else 1) == in_features):
        rows = into[:nbytes].view(view.dtype).view(view.shape).copy_(view)
    else:
        rows = torch.empty(view.shape, dtype=view.dtype, device=view.device).copy_(view)
    rows = rows.view(tiles.shape[0] * TILE, -1)
    dense = rows.view(torch.bfloat16) if tiles.dtype == torch.bfloat16 else rows
    if dense.shape != (out_features, in_features):
        dense = dense[:out_features, :in_features].contiguous()  # drop the padding
    return dense


def gather_rows(tiles: torch.Tensor, ids: torch.Tensor, in_features: int) -> torch.Tensor:
    """Rows ``ids`` (int64, any shape) of the weight packed in ``tiles``:
    ``[*ids.shape, in_features]``, equal to ``unpack_weight(...)[ids]`` without unpacking the
    rest. Row r is lane r % 16 of tile r // 16, its inputs 16 lanes (64 bytes) apart. The ids
    must be in range (a padding row would read as zeros, a negative id wrap)."""
    flat = ids.reshape(-1)
    tile, lane = flat.div(TILE, rounding_mode="floor"), flat.remainder(TILE)
    if tiles.dtype == torch.bfloat16:  # each input pair as one 32-bit word, as _rows_of does
        rows = tiles.view(torch.int32).squeeze(-1)[tile, :, lane].view(torch.bfloat16)
    else:
        rows = tiles[tile, :, lane]
    if rows.shape[1] != in_features:
        rows = rows[:, :in_features]
    return rows.reshape(*ids.shape, in_features)


@torch.no_grad()
def store_weight(tiles: torch.Tensor, weight: torch.Tensor) -> None:
    """Write the dense ``weight`` into ``tiles`` in place (views of them, a fused group's
    stack, see the new values)."""
    n, k = weight.shape
    if tiles.shape[0] * TILE != n or k % 2 or weight.dtype != tiles.dtype:
        tiles.copy_(pack_weight(weight.to(tiles.dtype)))  # padded: through a packed copy
        return
    source = weight.detach()
    if source.dtype == torch.bfloat16:
        source = source.contiguous().view(torch.int32)
    _rows_of(tiles).copy_(source.reshape(tiles.shape[0], TILE, -1))


def tile_shape(dtype: torch.dtype, in_features: int) -> tuple[int, ...]:
    """The shape of one tile of :func:`pack_weight`'s result."""
    k_pad = -(-in_features // 2) * 2
    return (k_pad // 2, TILE, 2) if dtype == torch.bfloat16 else (k_pad, TILE)


def storage_tensor(storage: torch.UntypedStorage, offset: int, shape: Sequence[int],
                   dtype: torch.dtype) -> torch.Tensor:
    """A contiguous tensor of ``shape`` over ``storage`` from element ``offset``."""
    return torch.empty(0, dtype=dtype, device=storage.device).set_(storage, offset, shape)


def sole_owner(storage: torch.UntypedStorage) -> bool:
    """Whether the one reference to ``storage`` is the caller's (torch's private use count:
    where it is missing the answer is no, and packing copies)."""
    try:
        return torch._C._storage_Use_Count(storage._cdata) == 1
    except (AttributeError, RuntimeError):
        return False


#: Tiles rearranged at a time by :func:`pack_in_place` and :func:`pack_in_blocks` (4096
#: outputs).
IN_PLACE_TILES = 256


@torch.no_grad()
def pack_in_blocks(weight: torch.Tensor, packed: Callable[[torch.Tensor], None]) -> torch.Tensor:
    """:func:`pack_weight` of ``weight``, written into new tiles a block of rows at a time,
    calling ``packed(rows)`` with each block once its tiles hold it (a weight mapped from a
    checkpoint drops the block's file pages there, so the file's copy of a large weight is never
    resident whole beside its tiles). A shape that needs padding is packed whole."""
    n, k = weight.shape
    if n % TILE or k % 2:
        tiles = pack_weight(weight)
        packed(weight)
        return tiles
    tiles = torch.empty(n // TILE, *tile_shape(weight.dtype, k), dtype=weight.dtype,
                        device=weight.device)
    for t0 in range(0, n // TILE, IN_PLACE_TILES):
        t1 = min(n // TILE, t0 + IN_PLACE_TILES)
        rows = weight[t0 * TILE:t1 * TILE]
        store_weight(tiles[t0:t1], rows)
        packed(rows)
    return tiles


@torch.no_grad()
def pack_in_place(storage: torch.UntypedStorage, offset: int, shape: Sequence[int],
                  dtype: torch.dtype) -> torch.Tensor:
    """:func:`pack_weight` of the contiguous [N, K] weight at ``offset`` in ``storage`` (N a
    multiple of 16, K even), written over it: the tiles of outputs 16t..16t+15 occupy exactly
    the bytes of those rows, so each block of rows is copied aside and written back
    rearranged. Only for memory nothing else reads."""
    n, k = shape
    dense = storage_tensor(storage, offset, (n, k), dtype)
    tiles = storage_tensor(storage, offset, (n // TILE, *tile_shape(dtype, k)), dtype)
    for t0 in range(0, n // TILE, IN_PLACE_TILES):
        t1 = min(n // TILE, t0 + IN_PLACE_TILES)
        block = dense[t0 * TILE:t1 * TILE].clone()
        if dtype == torch.bfloat16:
            block = block.view(t1 - t0, TILE, k // 2, 2).transpose(1, 2)
        else:
            block = block.view(t1 - t0, TILE, k).transpose(1, 2)
        tiles[t0:t1].copy_(block)
    return tiles
