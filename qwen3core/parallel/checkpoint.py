"""A checkpoint as one rank sees it: only the tensors it holds, at the shapes of its slices.

:func:`shard_weights` turns the headers of the whole checkpoint into this rank's view (keys of
other ranks' experts left out, sharded tensors at their local shapes) plus the slice to read
of each sharded key. The loader checks and reads that view exactly as it reads a whole
checkpoint; ``CheckpointTensors`` reads a slice through safetensors' ``get_slice``, so only
those bytes of the memory-mapped file are touched.
"""

from __future__ import annotations

from dataclasses import replace

from qwen3core.checkpoint.files import WeightFiles
from qwen3core.parallel.layout import ParallelLayout
from qwen3core.parallel.plan import ELSEWHERE, Shard, shard_for
from qwen3core.spec import Qwen3Spec


def shard_weights(weights: WeightFiles, spec: Qwen3Spec, layout: ParallelLayout
                  ) -> tuple[WeightFiles, dict[str, Shard]]:
    if not layout.is_parallel:
        return weights, {}
    tensors, slices = {}, {}
    for key, info in weights.tensors.items():
        shard = shard_for(key, spec, layout)
        if shard == ELSEWHERE:
            continue
        if isinstance(shard, Shard) and len(info.shape) > shard.dim \
                and info.shape[shard.dim] == shard.full:
            shape = list(info.shape)
            shape[shard.dim] = shard.span.size
            info = replace(info, shape=tuple(shape))
            slices[key] = shard
        # A tensor of the wrong whole size stays whole: the shape check reports it as stored.
        tensors[key] = info
    return WeightFiles(weights.directory, weights.files, tensors), slices
