"""Quantizing a model while it is built, one weight at a time.

The model is built on ``meta`` (shapes only). Each linear weight to quantize is then drawn
(``random:`` presets) or read from the checkpoint, quantized, and handed to its module's
``load_quantized``; only then is the next one made. Peak memory is therefore the quantized
model plus one weight in float32, never the dense model.

Which weights: every projection of the decoder layers (attention q/k/v/o, the dense MLP's and
each routed expert's gate/up/down). The embedding always stays dense (a lookup reads one row);
the LM head stays as the checkpoint has it unless ``quantize_head`` (it is 26 % of the 0.6B's
bytes but its error lands directly in the logits). MoE routers stay dense: a few KiB, and a
routing choice flipped by rounding changes whole experts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn

from qwen3core.errors import CheckpointError
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
    for name, param in list(model.named_parameters(remove_duplicate=False)):
        module_name, _, leaf = name.rpartition(".")
        target = targets.get(module_name) if leaf == "weight" else None
        drawn_as = first_name.setdefault(id(param), name)  # a tied head: the embedding's values
        if target is not None:
            value = torch.empty(param.shape, dtype=torch.float32)
            fill_random(value, drawn_as, seed, spec.hidden_size)
            target.load_quantized(weight_to(scheme.quantize(value), device))
            del value
            continue
        if drawn_as != name:
            continue  # tied: tie_weights shares the first one
        value = torch.empty(param.shape, dtype=torch.float32)
        fill_random(value, name, seed, spec.hidden_size)
        module = model.get_submodule(module_name)
        module._parameters[leaf] = nn.Parameter(value.to(device=device, dtype=dtype))
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
    read = tensor_reader(weights, where)
    consumed = set()
    for name, module in targets.items():
        key = f"{name}.weight"
        if name == HEAD and key not in weights.tensors and spec.tie_word_embeddings:
            key = "model.embed_tokens.weight"  # tied: the head is the embedding
        else:
            consumed.add(key)
        _require_shape(weights, key, (module.out_features, module.in_features), where)
        module.load_quantized(weight_to(scheme.quantize(read(key).to(torch.float32)), device))
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
