"""Turning a meta-device skeleton into a runnable model from a checkpoint's tensors.

Each parameter is *assigned* (``load_state_dict(assign=True)``): the tensor read from the file
becomes the parameter, so no second, initialised copy of the model ever exists. Loading goes
through every module's own ``_load_from_state_dict``; a backend that stacks or fuses weights
converts checkpoint keys there or in ``prepare_weights()``. A quantized checkpoint
(``quantized.py``) is checked as the dense one it stands for; its linears are handed to
``load_quantized`` where the module takes them, and dequantized otherwise.
"""

from __future__ import annotations

import torch
from torch import nn

from qwen3core.build import build_skeleton
from qwen3core.checkpoint.files import WeightFiles
from qwen3core.checkpoint.progress import load_bar
from qwen3core.checkpoint.quantized import QuantizedCheckpoint
from qwen3core.checkpoint.strict import check_checkpoint, keys_to_load
from qwen3core.checkpoint.tensors import CheckpointTensors
from qwen3core.contracts import Selection
from qwen3core.errors import CheckpointError
from qwen3core.model import Qwen3Model
from qwen3core.parallel import SINGLE_PROCESS, ParallelLayout
from qwen3core.quant.formats import CheckpointFormat
from qwen3core.spec import Qwen3Spec


def load_model(spec: Qwen3Spec, selection: Selection, weights: WeightFiles, *,
               dtype: torch.dtype, device: torch.device, where: str,
               parallel: ParallelLayout = SINGLE_PROCESS, scheme=None,
               quantize_head: bool = False, quantization_config=None,
               quantized: CheckpointFormat | None = None) -> Qwen3Model:
    """Build the model ``spec`` describes with the ``selection``'s implementations and fill it
    from ``weights``; raise :class:`CheckpointError` if they do not fit. With ``parallel``,
    this rank's shard, reading only its slices of the files. Quantized projections (a
    ``scheme`` to quantize with, or a checkpoint ``qwen3 quantize`` wrote) are loaded first,
    one at a time (:mod:`qwen3core.quant.apply`; one process only); a checkpoint in a published
    ``quantized`` format (AWQ, GPTQ, FP8) is checked as the dense one it stands for and its
    layers go to ``load_quantized`` or are dequantized (:mod:`qwen3core.checkpoint.quantized`;
    one process only)."""
    from qwen3core.parallel.checkpoint import shard_weights

    if quantized is not None and parallel.is_parallel:
        raise CheckpointError(f"{where} is a {quantized.name} checkpoint; tensor parallelism "
                              "does not split quantized layers yet: load it in one process")
    model = build_skeleton(spec, selection, dtype, parallel)
    weights, slices = shard_weights(weights, spec, parallel)
    packed = QuantizedCheckpoint(weights, quantized, where) if quantized else None
    if packed is not None and scheme is not None:
        raise CheckpointError(f"{where} is quantized already ({quantized.name}); load it "
                              "without quantize=")
    consumed = _load_quantized(model, spec, weights, scheme, quantize_head,
                               quantization_config, device, where)
    files = packed.dense_files if packed else weights
    keys = [k for k in keys_to_load(model, files) if k not in consumed]
    check_checkpoint(model, files, keys, dtype, where)  # a dry run on meta: nothing is read
    stored_keys = packed.real_keys(keys) if packed else keys
    total = sum(weights.tensors[k].nbytes for k in stored_keys)
    with load_bar(total, f"Loading {where}") as bar:
        tensors = CheckpointTensors(weights, stored_keys, dtype=dtype, device=device,
                                    progress=bar, slices=slices)
        if packed:
            taken = packed.adopt_quantized(model, keys, tensors)
            state = packed.dense_state([k for k in keys if k not in taken], tensors)
        else:
            state = tensors
        model.load_state_dict(state, strict=False, assign=True)
        tensors.close()
    model.tie_weights()  # the assigned embedding replaced the tensor lm_head was tied to
    _allocate_unloaded_buffers(model, device)
    model.prepare_weights()
    _check_materialised(model, where)
    return model.eval()


def _load_quantized(model, spec, weights, scheme, quantize_head, quantization_config, device,
                    where) -> set[str]:
    from qwen3core.quant import apply

    if quantization_config and quantization_config.get("quant_method") == apply.QUANT_METHOD:
        if scheme is not None:
            raise CheckpointError(f"{where} is quantized already "
                                  f"({quantization_config.get('scheme')}); load it without "
                                  "quantize=")
        return apply.load_prequantized_linears(model, spec, weights, quantization_config,
                                               device=device, where=where)
    if scheme is not None:
        return apply.quantize_checkpoint_linears(model, spec, weights, scheme=scheme,
                                                 quantize_head=quantize_head, device=device,
                                                 where=where)
    return set()


def _allocate_unloaded_buffers(model: nn.Module, device: torch.device) -> None:
    """Non-persistent buffers are not in any checkpoint: give them memory on the device, for
    ``prepare_weights()`` to fill (the contract: derived state is computed there)."""
    for module in model.modules():
        for name, buffer in module._buffers.items():
            if buffer is not None and buffer.is_meta:
                module._buffers[name] = torch.empty_like(buffer, device=device)


def _check_materialised(model: nn.Module, where: str) -> None:
    left = [name for name, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:
        raise CheckpointError(
            f"after loading {where}, {len(left)} tensor(s) still have no data: "
            f"{', '.join(left[:8])}. The selected implementation of their module neither loads "
            "them from the checkpoint nor creates them in prepare_weights(); this is a bug in "
            "that backend (see `qwen3 backends`)")
