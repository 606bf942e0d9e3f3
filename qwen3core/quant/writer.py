"""Writing a quantized checkpoint (``qwen3 quantize``) that ``qwen3core.load`` reads back.

The output is a Hugging Face-style directory: config.json with a ``quantization_config``
(``quant_method: "qwen3core"``, the scheme, its group size and zero points, whether the head is
quantized), one ``model.safetensors`` where each quantized projection is stored as the scheme
says (``<prefix>.qweight``, ``.scales``, ``.zeros``) and every other tensor as it was, plus the
source's tokenizer and generation files. From a checkpoint, weights are read and quantized one
at a time (memory: the quantized model plus one weight in float32).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from qwen3core.errors import CheckpointError
from qwen3core.quant.apply import HEAD, PROJECTIONS, tensor_reader
from qwen3core.quant.schemes import QuantScheme
from qwen3core.sources import RANDOM_PREFIX

COPIED_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt",
                "generation_config.json", "special_tokens_map.json", "added_tokens.json")


def is_quantized_key(key: str, head: bool) -> bool:
    module, _, leaf = key.rpartition(".")
    return leaf == "weight" and (module.rsplit(".", 1)[-1] in PROJECTIONS
                                 or (head and module == HEAD))


def quantize_checkpoint(source: str, out: str | Path, scheme: QuantScheme, *,
                        quantize_head: bool = False, revision: str | None = None) -> Path:
    """Quantize ``source`` (a model directory, hub id or ``random:<preset>``) into ``out``."""
    from safetensors.torch import save_file

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise CheckpointError(f"{out} exists and is not empty; choose a new directory")
    if source.startswith(RANDOM_PREFIX):
        config, tensors = _from_random(source, scheme, quantize_head)
        files_from = None
    else:
        config, tensors, files_from = _from_checkpoint(source, scheme, quantize_head, revision)
    config["quantization_config"] = scheme.quantization_config(head=quantize_head)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(out / "model.safetensors"),
              metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    if files_from is not None:
        for name in COPIED_FILES:
            if (files_from / name).is_file():
                shutil.copy2(files_from / name, out / name)
    return out


def _from_checkpoint(source: str, scheme: QuantScheme, head: bool, revision: str | None):
    from qwen3core.checkpoint.config import read_config, spec_from_config
    from qwen3core.checkpoint.files import find_weight_files
    from qwen3core.checkpoint.loader import locate

    found = locate(source, revision)
    config = read_config(found.directory)
    if config.get("quantization_config"):
        raise CheckpointError(f"{found.name} is quantized already "
                              f"({config['quantization_config'].get('quant_method')})")
    spec = spec_from_config(config, found.name)
    weights = find_weight_files(found.directory)
    read = tensor_reader(weights, found.name)
    tensors: dict[str, torch.Tensor] = {}
    for key in weights.tensors:
        value = read(key)
        if is_quantized_key(key, head):
            _store(tensors, key, scheme, value)
        else:
            tensors[key] = value
    if head and "lm_head.weight" not in weights.tensors and spec.tie_word_embeddings:
        _store(tensors, "lm_head.weight", scheme, tensors["model.embed_tokens.weight"])
    return config, tensors, found.directory


def _store(tensors: dict, key: str, scheme: QuantScheme, value: torch.Tensor) -> None:
    prefix = key[: -len(".weight")]
    stored = scheme.to_checkpoint(scheme.quantize(value.to(torch.float32)))
    for suffix, tensor in stored.items():
        tensors[f"{prefix}.{suffix}"] = tensor


def _from_random(source: str, scheme: QuantScheme, head: bool):
    import qwen3core

    loaded = qwen3core.load(source, dtype="bfloat16", device="cpu",
                            backends={"linear": "eager", "moe": "eager"},
                            quantize=scheme, quantize_head=head)
    tensors: dict[str, torch.Tensor] = {}
    for name, module in loaded.model.named_modules():
        held = getattr(module, "quantized_weight", None)
        weight = held() if held is not None else None
        if weight is not None:
            for suffix, tensor in scheme.to_checkpoint(weight).items():
                tensors[f"{name}.{suffix}"] = tensor
    for name, param in loaded.model.state_dict().items():
        if name == "lm_head.weight" and loaded.spec.tie_word_embeddings:
            continue
        tensors[name] = param
    spec = loaded.spec
    config = {k: v for k, v in spec.to_dict().items() if v is not None}
    if not spec.is_moe:  # a dense config.json has no MoE fields (0 is not a valid value)
        for key in ("num_experts", "num_experts_per_tok", "moe_intermediate_size",
                    "norm_topk_prob", "decoder_sparse_step", "mlp_only_layers"):
            config.pop(key, None)
    config.update(model_type="qwen3_moe" if spec.is_moe else "qwen3",
                  architectures=["Qwen3MoeForCausalLM" if spec.is_moe else "Qwen3ForCausalLM"],
                  torch_dtype="bfloat16")
    return config, tensors
