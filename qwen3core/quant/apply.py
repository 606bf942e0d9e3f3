"""Quantizing a model while it is built, one weight at a time.

The model is built on ``meta`` (shapes only). Each linear weight to quantize is then drawn
(``random:`` presets) or read from the checkpoint, quantized, and handed to its module's
``load_quantized``; only then is the next one made, and a large one (the embedding, a head)
is drawn, converted and quantized a chunk of rows at a time (:func:`quantize_rows`). Peak
memory is therefore the quantized model plus one weight in its stored dtype and one chunk's
float32 temporaries, never the dense model.

Which weights: every projection of the decoder layers (attention q/k/v/o, the dense MLP's and
each routed expert's gate/up/down). The embedding always stays dense (a lookup reads one row);
the LM head stays as the checkpoint has it unless ``quantize_head`` (it is 26 % of the 0.6B's
bytes but its error lands directly in the logits). MoE routers stay dense: a few KiB, and a
routing choice flipped by rounding changes whole experts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import replace

import torch
from torch import nn

from qwen3core.errors import CheckpointError
from qwen3core.memory import ReturnFreedEvery
from qwen3core.quant.schemes import QUANT_METHOD, QuantizationError, QuantScheme
from qwen3core.quant.weight import QuantizedLinearModule, QuantizedWeight
from qwen3core.spec import Qwen3Spec

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
HEAD = "lm_head"


def expected_linear_count(spec: Qwen3Spec) -> int:
    """Projections a Qwen3 of ``spec`` has (what :func:`quantized_targets` must find)."""
    total = 0
    for i in range(spec.num_hidden_layers):
        total += 4 + 3 * (spec.num_experts if spec.is_sparse_layer(i) else 1)
    return total


def quantized_targets(model: nn.Module, spec: Qwen3Spec, head: bool) -> dict[str, nn.Module]:
    """module name -> linear module that takes a quantized weight; a clear error when the
    selected implementations cannot hold one."""
    found = {name: m for name, m in model.named_modules()
             if name.rsplit(".", 1)[-1] in PROJECTIONS}
    if len(found) != expected_linear_count(spec):
        raise QuantizationError(
            f"found {len(found)} projection layers where the model has "
            f"{expected_linear_count(spec)}: the selected moe implementation "
            f"({model.selection['moe'].name}) keeps its experts in a layout of its own, which "
            "cannot hold quantized weights; select backends={'moe': 'eager'}")
    if head:
        found[HEAD] = model.lm_head
    refusing = sorted({type(m).__name__ for m in found.values()
                       if not isinstance(m, QuantizedLinearModule)})
    if any(".experts." in name and not isinstance(m, QuantizedLinearModule)
           for name, m in found.items()):
        raise QuantizationError(
            f"the selected moe implementation ({model.selection['moe'].name}) keeps its "
            "experts in a layout that cannot hold quantized weights; select "
            "backends={'moe': 'eager'}")
    if refusing:
        raise QuantizationError(
            f"the selected linear implementation ({model.selection['linear'].name}: "
            f"{', '.join(refusing)}) cannot hold quantized weights (it has no load_quantized); "
            "select one that can, e.g. backends={'linear': 'cpu'} or {'linear': 'eager'}")
    return found


#: Bytes of float32 a weight is drawn, converted and quantized in at a time. Quantizing
#: makes several float32 temporaries of its input: of the 0.6B's embedding (0.58 GiB in
#: float32) that was 3.4 GiB at once; in chunks, a few times 16 MiB whatever the weight.
CHUNK_BYTES = 16 * 2**20


def chunk_rows(in_features: int) -> int:
    """Output rows per chunk: about CHUNK_BYTES of float32, in whole 256-row tiles of the
    random init (at least one)."""
    return max(1, CHUNK_BYTES // (4 * in_features) // 256) * 256


def quantize_rows(scheme: QuantScheme, shape: tuple[int, int],
                  rows: Callable[[slice], torch.Tensor]) -> QuantizedWeight:
    """``scheme.quantize`` of the [out, in] weight whose rows ``rows(slice(start, stop))`` gives,
    quantized a chunk of rows at a time. Exactly the whole weight's quantization: every
    scheme's levels, scales and zero points are per output row (groups run along the inputs)."""
    out, inp = shape
    step = chunk_rows(inp)
    if step >= out:
        return scheme.quantize(rows(slice(0, out)))
    first = qweight = scales = zeros = None
    for start in range(0, out, step):
        stop = min(out, start + step)
        part = scheme.quantize(rows(slice(start, stop)))
        if first is None:
            first = part
            qweight = part.qweight.new_empty(out, inp)
            scales = part.scales.new_empty(out, part.scales.shape[1])
            zeros = None if part.zeros is None else part.zeros.new_empty(scales.shape)
        qweight[start:stop] = part.qweight
        scales[start:stop] = part.scales
        if zeros is not None:
            zeros[start:stop] = part.zeros
        del part
    # The first chunk's other fields (group size, bits, activation blocks, ...) are the
    # weight's: the scheme sets them, not the values.
    return replace(first, qweight=qweight, scales=scales, zeros=zeros)


class Workspace:
    """One float32 buffer that every drawn chunk of rows is filled into in turn: the draws'
    memory is allocated once for the whole load, not once per weight. (A fresh buffer of a few
    MiB per weight is a fresh mapping that the kernel faults in page by page and takes back on
    free: for the 30B-A3B's 18,000 expert weights most of the load's system time.)"""

    def __init__(self) -> None:
        self._buffer = torch.empty(0)

    def take(self, rows: int, cols: int) -> torch.Tensor:
        """A [rows, cols] float32 view of the buffer, valid until the next ``take``."""
        if self._buffer.numel() < rows * cols:
            self._buffer = torch.empty(0)  # the old one goes before the new one comes
            self._buffer = torch.empty(rows * cols)
        return self._buffer[:rows * cols].view(rows, cols)


def _drawn_rows(name: str, shape: tuple[int, int], seed: int, hidden_size: int,
                workspace: Workspace | None = None) -> Callable[[slice], torch.Tensor]:
    """Rows of the random weight ``name`` (the values the whole draw has there); with a
    ``workspace``, each call's rows are a view of it, valid until the next call."""
    from qwen3core.init import fill_random

    def rows(index: slice) -> torch.Tensor:
        start, stop, _ = index.indices(shape[0])
        if workspace is None:
            value = torch.empty(stop - start, shape[1], dtype=torch.float32)
        else:
            value = workspace.take(stop - start, shape[1])
        fill_random(value, name, seed, hidden_size, shape, (index,))
        return value

    return rows


def load_rows(module: QuantizedLinearModule, scheme: QuantScheme, shape: tuple[int, int],
              rows: Callable[[slice], torch.Tensor], device: torch.device) -> None:
    """Quantize with ``scheme`` the [out, in] weight whose rows ``rows(slice)`` gives into
    ``module``: by the module's own ``load_quantized_rows`` where it has one (the same result,
    in a chunk of rows at a time of its own making, see :class:`QuantizedLinearModule`), else
    :func:`quantize_rows` then ``load_quantized``."""
    by_rows = getattr(module, "load_quantized_rows", None)
    if by_rows is not None:
        by_rows(scheme, rows)
    else:
        module.load_quantized(weight_to(quantize_rows(scheme, shape, rows), device))


#: Float32 bytes quantized between two returns of freed memory to the system (see
#: :func:`qwen3core.memory.return_freed_memory`): int4 0.6B, a return every 256 MiB of
#: input (7 in all, 0.2 s) took the load's peak RSS from 1.56 to 1.25 GiB.
TRIM_EVERY_BYTES = 256 * 2**20


def weight_to(weight: QuantizedWeight, device: torch.device) -> QuantizedWeight:
    return weight.to(device)


def _materialise_rest(model: nn.Module, device: torch.device) -> None:
    """Give every parameter and buffer still on meta (norms, embedding, rope tables) memory."""
    for module in model.modules():
        for registry in (module._parameters, module._buffers):
            for name, tensor in registry.items():
                if tensor is not None and tensor.is_meta:
                    empty = torch.empty_like(tensor, device=device)
                    registry[name] = (nn.Parameter(empty, tensor.requires_grad)
                                      if isinstance(tensor, nn.Parameter) else empty)


@torch.no_grad()
def build_random_quantized(spec: Qwen3Spec, selection, *, dtype: torch.dtype,
                           device: torch.device, seed: int, scheme: QuantScheme,
                           quantize_head: bool = False) -> nn.Module:
    """``build_random``'s model with its projections quantized as they are drawn: the same
    float32 values (:func:`qwen3core.init.fill_random`, by parameter name), so it is
    ``scheme`` applied to that model's draws, never holding more than one dense weight."""
    from qwen3core.build import build_skeleton
    from qwen3core.init import fill_random

    model = build_skeleton(spec, selection, dtype)
    targets = quantized_targets(model, spec, quantize_head)
    first_name: dict[int, str] = {}
    freed = ReturnFreedEvery(TRIM_EVERY_BYTES)
    workspace = Workspace()
    for name, param in list(model.named_parameters(remove_duplicate=False)):
        module_name, _, leaf = name.rpartition(".")
        target = targets.get(module_name) if leaf == "weight" else None
        drawn_as = first_name.setdefault(id(param), name)  # a tied head: the embedding's values
        if target is not None:
            shape = tuple(param.shape)
            load_rows(target, scheme, shape,
                      _drawn_rows(drawn_as, shape, seed, spec.hidden_size, workspace), device)
            freed.freed(math.prod(shape) * 4)
            continue
        if drawn_as != name:
            continue  # tied: tie_weights shares the first one
        # Drawn straight into its dtype, one float32 tile at a time (the same values as a
        # whole float32 draw cast once): no float32 copy of the embedding.
        value = torch.empty(param.shape, dtype=dtype, device=device)
        fill_random(value, name, seed, spec.hidden_size)
        module = model.get_submodule(module_name)
        module._parameters[leaf] = nn.Parameter(value)
        del value  # the parameter's memory is its own (a linear may pack it in place)
    model.tie_weights()
    _materialise_rest(model, device)
    model.prepare_weights()
    return model.eval()


def tensor_reader(weights, where: str) -> Callable[[str], torch.Tensor]:
    """key -> the stored tensor (on CPU, stored dtype), read on its own."""
    from safetensors import SafetensorError, safe_open

    def read(key: str) -> torch.Tensor:
        info = weights.tensors[key]
        try:
            with safe_open(str(info.file), framework="pt", device="cpu") as handle:
                return handle.get_tensor(key)
        except (SafetensorError, OSError) as exc:
            raise CheckpointError(f"reading {key!r} from {where} failed ({exc})") from None

    return read


def row_reader(weights, key: str, where: str) -> Callable[[slice], torch.Tensor]:
    """slice -> those rows of the stored tensor ``key`` (on CPU, stored dtype), read on their
    own: a large weight (a head) is never read whole."""
    from safetensors import SafetensorError, safe_open

    info = weights.tensors[key]

    def rows(index: slice) -> torch.Tensor:
        try:
            with safe_open(str(info.file), framework="pt", device="cpu") as handle:
                return handle.get_slice(key)[index]
        except (SafetensorError, OSError) as exc:
            raise CheckpointError(f"reading {key!r} from {where} failed ({exc})") from None

    return rows


def _require_shape(weights, key: str, shape: tuple[int, ...], where: str) -> None:
    if key not in weights.tensors:
        raise CheckpointError(f"{where} has no {key!r}, which the model needs")
    got = tuple(weights.tensors[key].shape)
    if got != tuple(shape):
        raise CheckpointError(f"{key} in {where} is {list(got)}, the model needs {list(shape)}")


@torch.no_grad()
def quantize_checkpoint_linears(model: nn.Module, spec: Qwen3Spec, weights, *,
                                scheme: QuantScheme, quantize_head: bool,
                                device: torch.device, where: str) -> set[str]:
    """Read, quantize and load each projection of ``weights`` (one at a time) into the meta
    skeleton ``model``; return the checkpoint keys consumed."""
    targets = quantized_targets(model, spec, quantize_head)
    consumed = set()
    freed = ReturnFreedEvery(TRIM_EVERY_BYTES)
    for name, module in targets.items():
        key = f"{name}.weight"
        if name == HEAD and key not in weights.tensors and spec.tie_word_embeddings:
            key = "model.embed_tokens.weight"  # tied: the head is the embedding
        else:
            consumed.add(key)
        shape = (module.out_features, module.in_features)
        _require_shape(weights, key, shape, where)
        # Read and quantized a chunk of rows at a time, in the checkpoint's dtype.
        load_rows(module, scheme, shape, row_reader(weights, key, where), device)
        freed.freed(math.prod(shape) * 4)
    return consumed


@torch.no_grad()
def load_prequantized_linears(model: nn.Module, spec: Qwen3Spec, weights,
                              config: Mapping[str, object], *, device: torch.device,
                              where: str) -> set[str]:
    """Load the projections of a checkpoint ``qwen3 quantize`` wrote (``quantization_config``
    with ``quant_method`` "qwen3core"); return the checkpoint keys consumed."""
    scheme = scheme_from_config(config, where)
    targets = quantized_targets(model, spec, bool(config.get("lm_head")))
    read = tensor_reader(weights, where)
    consumed = set()
    for name, module in targets.items():
        shapes = scheme.checkpoint_shapes(module.out_features, module.in_features)
        parts = {}
        for suffix, shape in shapes.items():
            key = f"{name}.{suffix}"
            _require_shape(weights, key, shape, where)
            parts[suffix] = read(key)
            consumed.add(key)
        module.load_quantized(weight_to(scheme.from_checkpoint(parts, module.in_features),
                                        device))
    return consumed


def scheme_from_config(config: Mapping[str, object], where: str) -> QuantScheme:
    if config.get("quant_method") != QUANT_METHOD:
        raise CheckpointError(f"{where}: quantization_config quant_method "
                              f"{config.get('quant_method')!r} is not {QUANT_METHOD!r}")
    try:
        activations = config.get("activations")
        act_block = None
        if activations is not None:
            if dict(activations) != {"bits": 8, "block_size": activations.get("block_size"),
                                     "symmetric": True, "dynamic": True}:
                raise ValueError(f"unsupported activation quantization {activations}: only "
                                 "dynamic symmetric 8-bit blocks are")
            act_block = int(activations["block_size"])
        return QuantScheme(str(config["scheme"]), int(config["bits"]), config["group_size"],
                           bool(config["zero_point"]), act_block)
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{where}: malformed quantization_config {dict(config)} "
                              f"({exc})") from None
