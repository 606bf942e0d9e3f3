"""Checkpoints whose linear layers are stored quantized (AWQ, GPTQ, fine-grained FP8).

``checkpoint_format`` reads ``quantization_config`` from config.json: a supported one gives the
format object (``qwen3core.quant.formats``) that unpacks the tensors, anything else is a
:class:`CheckpointError` naming what is supported.

A quantized linear is found by its tensors, not by name lists: every ``<prefix>.<marker>`` key
(``qweight``; ``weight_scale_inv`` for FP8) together with its sibling parts is one linear whose
module lives at ``<prefix>``. :class:`QuantizedCheckpoint` presents such a checkpoint to the
loader as the dense one it stands for (``dense_files``: each linear's parts replaced by one
``<prefix>.weight`` of the dense [out, in] shape), so the usual checks (missing, unexpected,
wrong shape) apply unchanged, across any number of shards. At load time each linear goes one
of two ways:

- its module implements :class:`~qwen3core.quant.QuantizedLinearModule` (a quantized scheme's
  linear): ``load_quantized(QuantizedWeight)`` is called and the levels stay quantized;
- otherwise (the eager linear, stacked MoE experts, ...): the weight is dequantized to the load
  dtype and assigned like any dense weight, i.e. the quantized format's own reference numbers
  run at full width. FP8 always goes this way (it has no integer-level form yet).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from qwen3core.checkpoint.files import TensorInfo, WeightFiles
from qwen3core.checkpoint.tensors import CheckpointTensors
from qwen3core.errors import CheckpointError
from qwen3core.quant.formats import FORMATS, CheckpointFormat, awq, fp8, gptq
from qwen3core.quant.schemes import QUANT_METHOD
from qwen3core.quant.weight import QuantizedLinearModule, QuantizedWeight

SUPPORTED = f"{awq.SUPPORTED}; {gptq.SUPPORTED}; {fp8.SUPPORTED}"


def checkpoint_format(config: dict[str, Any], where: str) -> CheckpointFormat | None:
    """The published format of a config's ``quantization_config`` (None when it has none, or
    when it is qwen3core's own)."""
    quant = config.get("quantization_config")
    if not quant:
        return None
    if not isinstance(quant, dict):
        raise CheckpointError(f"{where}/config.json: quantization_config must be an object, "
                              f"got {type(quant).__name__}")
    method = str(quant.get("quant_method", "")).lower()
    if method == QUANT_METHOD:
        return None  # what `qwen3 quantize` writes: read by qwen3core.quant.apply
    if method not in FORMATS:
        raise CheckpointError(
            f"{where}/config.json: quantization method {quant.get('quant_method')!r} is not "
            f"supported. qwen3core reads {', '.join(FORMATS)} checkpoints ({SUPPORTED}) and "
            f"its own ({QUANT_METHOD!r}, written by `qwen3 quantize`); otherwise use the "
            "unquantised repository")
    return FORMATS[method].from_config(quant, f"{where}/config.json")


@dataclass(frozen=True)
class QuantizedLinear:
    prefix: str  # the module's name in the model, e.g. model.layers.0.mlp.down_proj
    parts: dict[str, str]  # part suffix -> checkpoint key
    shape: tuple[int, int]  # dense [out, in]

    @property
    def dense_key(self) -> str:
        return f"{self.prefix}.weight"


class QuantizedCheckpoint:
    def __init__(self, weights: WeightFiles, fmt: CheckpointFormat, where: str):
        self.weights, self.format, self.where = weights, fmt, where
        self.linears = self._find_linears()  # dense key -> QuantizedLinear
        if not self.linears:
            raise CheckpointError(
                f"{where}: config.json declares {fmt.name} quantization but no tensor ends in "
                f"'.{fmt.marker}'; the config and the weights do not belong together")
        self.dense_files = self._dense_files()

    def _find_linears(self) -> dict[str, QuantizedLinear]:
        tensors, fmt = self.weights.tensors, self.format
        suffix = f".{fmt.marker}"
        found = {}
        for key in tensors:
            if not key.endswith(suffix):
                continue
            prefix = key[: -len(suffix)]
            missing = [p for p in fmt.parts if f"{prefix}.{p}" not in tensors]
            if missing:
                raise CheckpointError(
                    f"{self.where}: quantized layer {prefix} has {fmt.marker} but no "
                    f"{', '.join(missing)}; every {fmt.name} layer stores "
                    f"{', '.join(fmt.parts)}. The checkpoint is incomplete, re-download it")
            parts = {p: f"{prefix}.{p}" for p in (*fmt.parts, *fmt.optional)
                     if f"{prefix}.{p}" in tensors}
            odd = [f"{k} is {tensors[k].dtype}" for p, k in parts.items()
                   if p in fmt.stored_dtypes and tensors[k].dtype not in fmt.stored_dtypes[p]]
            if odd:
                raise CheckpointError(
                    f"{self.where}: {'; '.join(odd)}, but {fmt.name} stores "
                    + ", ".join(f"{p} as {'/'.join(str(d).split('.')[-1] for d in ds)}"
                                for p, ds in fmt.stored_dtypes.items()))
            shapes = {p: tensors[k].shape for p, k in parts.items()}
            linear = QuantizedLinear(prefix, parts, fmt.dense_shape(shapes, prefix))
            found[linear.dense_key] = linear
        return found

    def _dense_files(self) -> WeightFiles:
        """The checkpoint as its dense equivalent, for the checks that run before loading."""
        consumed = {k for linear in self.linears.values() for k in linear.parts.values()}
        dense: dict[str, TensorInfo] = {}
        for key, info in self.weights.tensors.items():
            if key in consumed:  # each part stands for its linear's dense weight
                linear = self.linears[key.rsplit(".", 1)[0] + ".weight"]
                key, info = linear.dense_key, self._dense_info(linear)
            dense[key] = info
        return WeightFiles(self.weights.directory, self.weights.files, dense)

    def _dense_info(self, linear: QuantizedLinear) -> TensorInfo:
        marker = self.weights.tensors[linear.parts[self.format.marker]]
        return replace(marker, shape=linear.shape, dtype=torch.float32)

    def real_keys(self, dense_keys: list[str]) -> list[str]:
        """The checkpoint keys behind ``dense_keys`` (a linear's parts for its dense key)."""
        out = []
        for key in dense_keys:
            linear = self.linears.get(key)
            out.extend(linear.parts.values() if linear else [key])
        return out

    def unpack(self, linear: QuantizedLinear, tensors: CheckpointTensors
               ) -> QuantizedWeight | torch.Tensor:
        stored = {part: tensors.raw(key) for part, key in linear.parts.items()}
        return self.format.unpack(stored, linear.prefix)

    def adopt_quantized(self, model: nn.Module, dense_keys: list[str],
                        tensors: CheckpointTensors) -> set[str]:
        """Call ``load_quantized`` on every module that takes its weight quantized; return the
        dense keys so handled (the rest are dequantized by :meth:`dense_state`)."""
        handled: set[str] = set()
        if not self.format.has_levels:
            return handled  # FP8: dense for now
        for key in dense_keys:
            linear = self.linears.get(key)
            if linear is None:
                continue
            module = _submodule(model, linear.prefix)
            if not isinstance(module, QuantizedLinearModule):
                continue
            module.load_quantized(_to_device(self.unpack(linear, tensors), tensors.device))
            handled.add(key)
        return handled

    def dense_state(self, dense_keys: list[str], tensors: CheckpointTensors) -> DenseState:
        return DenseState(self, dense_keys, tensors)


class DenseState(Mapping[str, torch.Tensor]):
    """The state dict a dense model loads: plain tensors as stored, quantized linears
    dequantized on access (one at a time, so only one dense copy is made)."""

    def __init__(self, checkpoint: QuantizedCheckpoint, keys: list[str],
                 tensors: CheckpointTensors):
        self._checkpoint, self._keys, self._tensors = checkpoint, keys, tensors
        self._key_set = set(keys)

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: object) -> bool:
        return key in self._key_set

    def __getitem__(self, key: str) -> torch.Tensor:
        if key not in self._key_set:
            raise KeyError(key)
        linear = self._checkpoint.linears.get(key)
        if linear is None:
            return self._tensors[key]
        weight = self._checkpoint.unpack(linear, self._tensors)
        if isinstance(weight, QuantizedWeight):
            weight = weight.dequantize(self._tensors.dtype)
        return weight.to(device=self._tensors.device, dtype=self._tensors.dtype)


def _to_device(weight: QuantizedWeight, device: torch.device) -> QuantizedWeight:
    return weight.to(device)


def _submodule(model: nn.Module, name: str) -> nn.Module | None:
    try:
        return model.get_submodule(name)
    except AttributeError:
        return None
