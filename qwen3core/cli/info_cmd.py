"""``qwen3 info --model SRC``: the architecture, parameter counts, memory per dtype and the
implementations that would be selected, without loading any weights."""

from __future__ import annotations

import argparse
import json

import torch

from qwen3core.build import resolve_device
from qwen3core.cli.common import HelpFormatter, add_model_options, parse_backend_options
from qwen3core.dtypes import bytes_per_element, default_random_dtype, dtype_name, parse_dtype
from qwen3core.sources import RANDOM_PREFIX, parse_random
from qwen3core.spec import Qwen3Spec


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="show a model's spec, size and selected backends",
                       formatter_class=HelpFormatter)
    add_model_options(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--tensor-parallel", type=int, default=1, metavar="N",
                   help="also show the weight bytes each of N tensor-parallel ranks holds")
    p.set_defaults(run=run)


def resolve_spec(source: str) -> tuple[Qwen3Spec, torch.dtype | None]:
    """The spec a source describes and its stored dtype (None for random presets)."""
    if source.startswith(RANDOM_PREFIX):
        return parse_random(source).spec, None
    from qwen3core.checkpoint import read_spec

    return read_spec(source)


def describe(source: str, dtype: torch.dtype | None, device: torch.device,
             backends: dict[str, str], tensor_parallel: int = 1) -> dict:
    from qwen3core.quant.sizes import kv_cache_bytes_per_token
    from qwen3core.registry import get_registry

    spec, stored_dtype = resolve_spec(source)
    run_dtype = dtype or stored_dtype or (default_random_dtype(device)
                                          if source.startswith(RANDOM_PREFIX) else torch.float32)
    selection = get_registry().select(backends, device=device, dtype=run_dtype)
    unique = spec.parameter_count(count_tied_twice=False)
    kv_per_token = kv_cache_bytes_per_token(spec, run_dtype)
    parallel = {}
    if tensor_parallel != 1:
        from qwen3core.errors import ParallelError
        from qwen3core.parallel.memory import weight_bytes_per_rank

        if tensor_parallel < 1:
            raise ParallelError(f"--tensor-parallel must be >= 1, got {tensor_parallel}")
        parallel = {"tensor_parallel": tensor_parallel, "weights_bytes_per_rank":
                    weight_bytes_per_rank(spec, selection, run_dtype, tensor_parallel)}
    return {
        "source": source,
        "spec": spec.to_dict(),
        "moe": spec.is_moe,
        "sparse_layers": sum(spec.is_sparse_layer(i) for i in range(spec.num_hidden_layers)),
        "parameters": spec.parameter_count(count_tied_twice=True),
        "parameters_unique": unique,
        "parameters_active_per_token": spec.active_parameter_count(),
        "stored_dtype": dtype_name(stored_dtype) if stored_dtype else None,
        "weights_bytes": {dtype_name(d): unique * bytes_per_element(d)
                          for d in (torch.float32, torch.bfloat16, torch.float16)},
        # keys and values of every layer, in the run dtype
        "kv_cache_bytes_per_token": kv_per_token,
        "kv_cache_bytes_full_context": kv_per_token * spec.max_position_embeddings,
        "schemes": _scheme_sizes(spec, run_dtype),
        "device": str(device),
        "dtype": dtype_name(run_dtype),
        "backends": selection.names(),
        **parallel,
    }


def run(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    info = describe(args.model, parse_dtype(args.dtype), device,
                    parse_backend_options(args.backend), args.tensor_parallel)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    spec = info["spec"]
    print(f"model      {info['source']}")
    kind = (f"MoE: {spec['num_experts']} experts, {spec['num_experts_per_tok']} active, "
            f"width {spec['moe_intermediate_size']}, {info['sparse_layers']} sparse layers"
            if info["moe"] else f"dense, intermediate {spec['intermediate_size']}")
    print(f"shape      hidden {spec['hidden_size']}, {spec['num_hidden_layers']} layers, "
          f"{spec['num_attention_heads']} q heads / {spec['num_key_value_heads']} kv heads, "
          f"head_dim {spec['head_dim']}, vocab {spec['vocab_size']}; {kind}")
    scaling = spec.get("rope_scaling")
    scaled = (f" ({scaling['rope_type']} rope scaling, factor {scaling['factor']:g}"
              + (f", original context {scaling['original_max_position_embeddings']}"
                 if "original_max_position_embeddings" in scaling else "") + ")"
              if scaling else "")
    print(f"           tied embeddings: {spec['tie_word_embeddings']}, rope theta "
          f"{spec['rope_theta']:g}, context {spec['max_position_embeddings']}{scaled}")
    if spec["tie_word_embeddings"]:
        print(f"parameters {info['parameters']:,} (tied head counted twice), "
              f"{info['parameters_unique']:,} unique, "
              f"{info['parameters_active_per_token']:,} active per token")
    else:
        print(f"parameters {info['parameters']:,}, "
              f"{info['parameters_active_per_token']:,} active per token")
    sizes = ", ".join(f"{name} {format_bytes(n)}" for name, n in info["weights_bytes"].items())
    print(f"weights    {sizes}" + (f"; stored as {info['stored_dtype']}"
                                   if info["stored_dtype"] else ""))
    print(f"kv cache   {format_bytes(info['kv_cache_bytes_per_token'])} per token, "
          f"{format_bytes(info['kv_cache_bytes_full_context'])} for the full context of "
          f"{spec['max_position_embeddings']:,} tokens ({info['dtype']}, per sequence)")
    for name, sizes in info["schemes"].items():
        print(f"  {name:22s} resident {format_bytes(sizes['resident_bytes'])}, "
              f"{sizes['bytes_per_token'] / 1e9:.3f} GB read per decoded token")
    if "weights_bytes_per_rank" in info:
        per_rank = info["weights_bytes_per_rank"]
        whole = info["parameters_unique"] * torch.empty(
            (), dtype=parse_dtype(info["dtype"])).element_size()
        print(f"per rank   {info['tensor_parallel']} ranks in {info['dtype']}: " +
              ", ".join(format_bytes(n) for n in per_rank) +
              f" ({max(per_rank) / whole:.3f} of one process's {format_bytes(whole)})")
    print(f"backends   on {info['device']} with {info['dtype']}: " +
          ", ".join(f"{c}={n}" for c, n in info["backends"].items()))
    return 0


def format_bytes(n: int) -> str:
    """Bytes in the largest binary unit that keeps the number at least 1 (no "0.00 GiB")."""
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} B"
def _scheme_sizes(spec: Qwen3Spec, dtype: torch.dtype) -> dict[str, dict[str, int]]:
    """Resident and per-token weight bytes in ``dtype`` and each installed scheme (default
    options), with the LM head as stored and quantized."""
    from qwen3core.quant import scheme_families
    from qwen3core.quant.sizes import weight_bytes

    out = {}
    variants = [(dtype_name(dtype), None, False)]
    for family in scheme_families().values():
        scheme = family.make()
        variants += [(scheme.name, scheme, False), (f"{scheme.name} + head", scheme, True)]
    for name, scheme, head in variants:
        sizes = weight_bytes(spec, dtype, scheme, head)
        out[name] = {"resident_bytes": sizes.resident, "bytes_per_token": sizes.per_token}
    return out


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB"
