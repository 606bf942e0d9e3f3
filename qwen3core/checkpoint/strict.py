"""Checking a checkpoint against the model before any weight is read.

The check runs the model's own state-dict loading (every module's ``_load_from_state_dict``) on
the ``meta`` skeleton with ``meta`` tensors of the checkpoint's shapes. A backend whose
module keeps weights in a layout of its own (stacked experts, fused projections) therefore
decides for itself which checkpoint keys it consumes, and nothing here hard-codes the module
tree. Missing keys, unexpected keys and shape mismatches are gathered into one error.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from qwen3core.checkpoint.files import LOADABLE_DTYPES, WeightFiles
from qwen3core.errors import CheckpointError

SHOWN_PER_KIND = 12  # keys listed per kind of problem before "... and N more"


@dataclass
class Mismatch:
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    wrong_shape: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)
    other: list[str] = field(default_factory=list)  # what a backend's own loader reported

    def __bool__(self) -> bool:
        return bool(self.missing or self.unexpected or self.wrong_shape or self.other)


def tied_duplicates(model: nn.Module) -> dict[str, str]:
    """For parameters registered under several names (tied embeddings): every later name ->
    the first name. Loading the first name fills them all (``tie_weights``)."""
    first: dict[int, str] = {}
    out: dict[str, str] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        if id(param) in first:
            out[name] = first[id(param)]
        else:
            first[id(param)] = name
    return out


def keys_to_load(model_on_meta: nn.Module, weights: WeightFiles) -> list[str]:
    """The checkpoint keys to hand to the model: all of them except a tied duplicate whose
    first name is present (a tied ``lm_head.weight`` some checkpoints carry)."""
    duplicates = tied_duplicates(model_on_meta)
    return [key for key in weights.tensors
            if not (key in duplicates and duplicates[key] in weights.tensors)]


def check_checkpoint(model_on_meta: nn.Module, weights: WeightFiles, keys: list[str],
                     dtype: torch.dtype, where: str) -> None:
    """Raise one :class:`CheckpointError` listing every way ``keys`` of ``weights`` fail to fit
    the model. On success the model's parameters have been replaced by meta tensors of the
    checkpoint's shapes, which the real load replaces in turn."""
    _check_dtypes(weights, keys, where)
    duplicates = tied_duplicates(model_on_meta)  # before loading unties them
    expected = model_on_meta.state_dict()
    problems = Mismatch()
    for key in keys:
        shape = weights.tensors[key].shape
        if key in expected and tuple(expected[key].shape) != shape:
            problems.wrong_shape[key] = (shape, tuple(expected[key].shape))
    meta_state = {key: torch.empty(weights.tensors[key].shape, dtype=dtype, device="meta")
                  for key in keys if key not in problems.wrong_shape}
    try:
        result = model_on_meta.load_state_dict(meta_state, strict=False, assign=True)
        problems.missing = list(result.missing_keys)
        problems.unexpected = list(result.unexpected_keys)
    except RuntimeError as exc:  # a module's own loader refused something
        problems.other.append(str(exc))
    problems.missing = [k for k in problems.missing if k not in problems.wrong_shape
                        and not (k in duplicates and duplicates[k] in weights.tensors)]
    if problems:
        raise CheckpointError(format_mismatch(problems, weights, where))


def format_mismatch(problems: Mismatch, weights: WeightFiles, where: str) -> str:
    def located(key: str) -> str:
        return f"{key} [{weights.short_name(key)}]" if key in weights.tensors else key

    def listing(keys: list[str]) -> str:
        shown = ", ".join(located(k) for k in keys[:SHOWN_PER_KIND])
        return shown + (f", ... and {len(keys) - SHOWN_PER_KIND} more"
                        if len(keys) > SHOWN_PER_KIND else "")

    names = [p.name for p in weights.files]
    files = ", ".join(names) if len(names) <= 3 else (
        f"{len(names)} shards: {names[0]} ... {names[-1]}")
    lines = [(f"the weights in {where} ({files}) do not fit the model its config.json "
              "describes:")]
    if problems.missing:
        lines.append(f"  missing from the checkpoint ({len(problems.missing)}): "
                     f"{listing(problems.missing)}")
    if problems.unexpected:
        lines.append(f"  unexpected in the checkpoint ({len(problems.unexpected)}): "
                     f"{listing(problems.unexpected)}")
    if problems.wrong_shape:
        items = [f"{located(k)} is {list(got)}, the model needs {list(want)}"
                 for k, (got, want) in problems.wrong_shape.items()]
        shown = "; ".join(items[:SHOWN_PER_KIND]) + (
            f"; ... and {len(items) - SHOWN_PER_KIND} more" if len(items) > SHOWN_PER_KIND else "")
        lines.append(f"  wrong shape ({len(items)}): {shown}")
    lines += [f"  {text}" for text in problems.other]
    lines.append("Check that config.json and the *.safetensors files come from the same model "
                 "(re-download it if in doubt).")
    return "\n".join(lines)


def _check_dtypes(weights: WeightFiles, keys: list[str], where: str) -> None:
    odd = [f"{k} ({weights.tensors[k].dtype})" for k in keys
           if weights.tensors[k].dtype not in LOADABLE_DTYPES]
    if odd:
        raise CheckpointError(
            f"{where} stores tensors in dtypes qwen3core cannot load: {', '.join(odd[:5])}"
            f"{' ...' if len(odd) > 5 else ''}. Quantized layers are read only as part of a "
            "format config.json's quantization_config declares (awq, gptq, fp8)")
