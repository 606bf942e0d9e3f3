"""``qwen3core.load``: one entry point for random presets, local directories and hub ids."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch

from qwen3core.autograd import set_training
from qwen3core.build import build_random, resolve_device, select_backends
from qwen3core.dtypes import default_random_dtype, dtype_name, parse_dtype
from qwen3core.errors import CheckpointError, Qwen3CoreError
from qwen3core.load_arguments import (
    check_backends,
    check_flag,
    check_optional_text,
    check_seed,
    check_source,
)
from qwen3core.loaded import LoadedModel
from qwen3core.memory import check_fits, return_freed_memory
from qwen3core.progress import phase
from qwen3core.quant.moe_choice import with_quantized_moe
from qwen3core.registry import get_registry
from qwen3core.sources import RANDOM_PREFIX, parse_random


def load(source: str | Path, *, dtype: str | torch.dtype | None = None,
         device: str | torch.device | None = None, backends: Mapping[str, str] | None = None,
         seed: int | None = None, plugins: Iterable[object] = (),
         tokenizer: str | Path | None = None, revision: str | None = None,
         training: bool = False, tensor_parallel: int | None = None,
         quantize: str | None = None, quantize_head: bool = False) -> LoadedModel:
    """Load a Qwen3 model.

    ``source`` is ``random:<preset>[@seed]`` (a preset shape with random weights, no download),
    a local Hugging Face model directory (a str or a path object), or a hub id such as ``Qwen/Qwen3-0.6B``.
    ``backends`` maps components to implementation names (``{"attention": "sdpa"}``); components
    left out get the fastest implementation available for the device and dtype.
    ``plugins`` adds plugin objects for this call only (tests, experiments).
    ``revision`` picks a hub branch, tag or commit (same as ``owner/name@revision``).
    ``tokenizer`` is a directory with tokenizer files, used instead of the source's own (random
    models have none).
    ``training=True`` selects only implementations that support autograd and leaves the
    parameters requiring gradients; by default they do not (inference builds no graph), and a
    selection without autograd refuses a forward pass that needs gradients (qwen3core.autograd).
    ``tensor_parallel=N`` loads this process's shard of the model split over N processes (one
    per rank, e.g. ``torchrun --nproc-per-node N``; the default process group is initialised
    from torchrun's environment if it is not yet): every rank calls ``load`` and then runs the
    same calls, and gets the same logits. See docs/parallel.md.
    ``quantize`` ("int8", "int4", or with options such as "int4:g64", see
    :mod:`qwen3core.quant.registry`) quantizes the projections while loading, one at a time;
    ``quantize_head`` quantizes the LM head too. See docs/quantization.md.
    """
    source = check_source(source)
    backends = check_backends(backends)
    seed = check_seed(seed)
    check_optional_text("revision", revision)
    check_optional_text("tokenizer", tokenizer, paths=True)
    check_flag("training", training)
    check_flag("quantize_head", quantize_head)
    own_tokenizer = None
    if tokenizer is not None:  # read first: a wrong path fails before the model loads
        from qwen3core.tokenizer import Tokenizer

        own_tokenizer = Tokenizer.from_dir(tokenizer)
        if isinstance(source, str) and source.startswith(RANDOM_PREFIX):  # before building
            check_tokenizer_fits(own_tokenizer, parse_random(source, seed).spec, source,
                                 str(tokenizer))
    scheme = None
    if quantize is not None:
        from qwen3core.quant import resolve_scheme

        scheme = resolve_scheme(quantize, plugins=plugins)
    elif quantize_head:
        raise Qwen3CoreError("quantize_head=True needs a scheme: pass quantize='int8' or 'int4'")
    if scheme is not None and tensor_parallel not in (None, 1):
        raise Qwen3CoreError("quantize= with tensor_parallel > 1 is not supported yet: quantize "
                             "in one process, or split the unquantized model")
    if scheme is not None and training:
        raise Qwen3CoreError("quantized weights are for inference: load with training=False, "
                             "or without quantize=")
    loaded = _load_model(source, dtype=dtype, device=device, backends=backends, seed=seed,
                         plugins=plugins, revision=revision, training=training,
                         tensor_parallel=tensor_parallel, scheme=scheme,
                         quantize_head=quantize_head)
    set_training(loaded.model, training)
    if own_tokenizer is not None:
        loaded.tokenizer = own_tokenizer
    if loaded.tokenizer is not None:
        check_tokenizer_fits(loaded.tokenizer, loaded.spec, loaded.source,
                             str(tokenizer) if tokenizer is not None else "its tokenizer")
    return loaded


def check_tokenizer_fits(tokenizer, spec, source: str, where: str) -> None:
    """Every id the tokenizer can produce must index the model's embedding; otherwise each
    text prompt would fail later with "token ids outside the model's vocabulary"."""
    largest = tokenizer.max_token_id
    if largest >= spec.vocab_size:
        hint = (" (random:tiny-chat is tiny with Qwen3's vocabulary)"
                if source.startswith(RANDOM_PREFIX) else "")
        raise CheckpointError(
            f"the tokenizer ({where}) produces ids up to {largest}, but {source} has a "
            f"vocabulary of {spec.vocab_size}: they do not belong together. Use a tokenizer "
            f"made for this model, or a model whose vocabulary holds the tokenizer's ids{hint}")


def _load_model(source: str | Path, *, dtype, device, backends, seed, plugins,
                revision, training, tensor_parallel, scheme=None,
                quantize_head=False) -> LoadedModel:
    from qwen3core.parallel import group

    started = time.perf_counter()
    torch_device = resolve_device(device)
    parallel = group.join(tensor_parallel, torch_device)
    torch_device = group.rank_device(torch_device, parallel)
    if isinstance(source, str) and source.startswith(RANDOM_PREFIX):
        if revision is not None:
            raise Qwen3CoreError(f"revision={revision!r} applies to hub ids, not to {source!r}")
        rnd = parse_random(source, seed)
        # Training selects only autograd implementations (not the cpu kernels), and tensor
        # parallelism keeps the float32 it was proven in: there the default is float32.
        plain = not training and parallel.world_size == 1
        torch_dtype = parse_dtype(dtype) or (
            default_random_dtype(torch_device, plugins) if plain else torch.float32)
        check_fits(rnd.spec, torch_dtype, torch_device, str(rnd), ranks=parallel.world_size,
                   needed=_quantized_bytes(rnd.spec, torch_dtype, scheme, quantize_head))
        if scheme is not None:  # a moe that holds quantized experts, unless one is named
            backends = with_quantized_moe(backends, get_registry(plugins), torch_device,
                                          torch_dtype)
        selection = select_backends(backends, device=torch_device, dtype=torch_dtype,
                                    plugins=plugins, training=training)
        with phase(f"building {rnd} ({dtype_name(torch_dtype)}, {torch_device})"):
            if scheme is None:
                model = build_random(rnd.spec, selection, dtype=torch_dtype,
                                     device=torch_device, seed=rnd.seed, parallel=parallel)
            else:
                from qwen3core.quant.apply import build_random_quantized

                model = build_random_quantized(rnd.spec, selection, dtype=torch_dtype,
                                               device=torch_device, seed=rnd.seed,
                                               scheme=scheme, quantize_head=quantize_head)
        return_freed_memory()  # what the build made and dropped (see the function)
        return LoadedModel(model=model, spec=rnd.spec, selection=selection, source=str(rnd),
                           load_seconds=time.perf_counter() - started)
    from qwen3core.checkpoint import load_pretrained

    with phase(f"loading {source}"):
        loaded = load_pretrained(source, dtype=parse_dtype(dtype), device=torch_device,
                                 backends=backends, plugins=plugins, started=started,
                                 revision=revision, training=training, parallel=parallel,
                                 scheme=scheme, quantize_head=quantize_head)
    return_freed_memory()
    return loaded


def _quantized_bytes(spec, dtype: torch.dtype, scheme, quantize_head: bool) -> int | None:
    """Resident weight bytes with ``scheme`` (None without one: the dense size applies)."""
    if scheme is None:
        return None
    from qwen3core.quant.sizes import weight_bytes

    return weight_bytes(spec, dtype, scheme, quantize_head).resident
