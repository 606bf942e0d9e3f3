"""``load_pretrained`` and ``read_spec``: local directories and hub ids, end to end."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from qwen3core.build import resolve_device, select_backends
from qwen3core.checkpoint import hub
from qwen3core.checkpoint.config import (
    read_config,
    read_generation_config,
    read_json,
    spec_from_config,
    stored_dtype,
)
from qwen3core.checkpoint.device import check_dtype_on_device
from qwen3core.checkpoint.files import WeightFiles, find_weight_files
from qwen3core.checkpoint.layout_check import check_outline
from qwen3core.checkpoint.materialise import load_model
from qwen3core.checkpoint.quantized import checkpoint_format
from qwen3core.checkpoint.source import HubSource, LocalSource, parse_source
from qwen3core.errors import CheckpointError
from qwen3core.loaded import LoadedModel
from qwen3core.memory import check_fits
from qwen3core.parallel import SINGLE_PROCESS, ParallelLayout
from qwen3core.quant.moe_choice import with_quantized_moe
from qwen3core.registry import get_registry
from qwen3core.spec import Qwen3Spec

TOKENIZER_FILE = "tokenizer.json"


@dataclass(frozen=True)
class Located:
    directory: Path
    name: str  # how errors and LoadedModel.source refer to it
    hub: HubSource | None = None


def locate(source: str | Path, revision: str | None = None) -> Located:
    """The local directory of ``source``; hub ids are downloaded (or found in the cache)."""
    parsed = parse_source(source, revision)
    if isinstance(parsed, LocalSource):
        return Located(parsed.path, str(parsed.path))
    snapshot = hub.fetch_snapshot(parsed)
    # A snapshot folder is named by its commit: recording it makes the source reproducible.
    return Located(snapshot, f"{parsed.repo_id}@{snapshot.name}", parsed)


def download(source: str, revision: str | None = None) -> Path:
    """Fetch a hub repository's model files into the Hugging Face cache; return the folder."""
    parsed = parse_source(source, revision)
    if isinstance(parsed, LocalSource):
        raise CheckpointError(f"{source!r} is a local directory already; download takes a hub "
                              "id such as Qwen/Qwen3-0.6B")
    folder = hub.fetch_snapshot(parsed)
    hub.check_snapshot_complete(folder, parsed)  # a download that ends must have the weights
    return folder


def read_source_config(source: str | Path, revision: str | None = None) -> tuple[dict, str]:
    """A checkpoint's config.json as a dict, and where it came from (for a hub id only that
    file is fetched)."""
    parsed = parse_source(source, revision)
    if isinstance(parsed, LocalSource):
        return read_config(parsed.path), str(parsed.path)
    return read_json(hub.fetch_config(parsed)), str(parsed)


def read_spec(source: str | Path, revision: str | None = None
              ) -> tuple[Qwen3Spec, torch.dtype | None]:
    """The spec and stored dtype of a checkpoint, from its config.json alone."""
    config, where = read_source_config(source, revision)
    return spec_from_config(config, where), stored_dtype(config, where)


def load_pretrained(source: str | Path, *, dtype: torch.dtype | None = None,
                    device: torch.device | str | None = None,
                    backends: Mapping[str, str] | None = None, plugins: Iterable[object] = (),
                    started: float | None = None, revision: str | None = None,
                    training: bool = False,
                    parallel: ParallelLayout = SINGLE_PROCESS, scheme: Any = None,
                    quantize_head: bool = False) -> LoadedModel:
    """Load a Qwen3 checkpoint from a local directory or the hub; see :func:`qwen3core.load`.

    ``dtype`` None means the dtype the checkpoint was saved in (bfloat16 for the released
    models). On CPU in that dtype the weights stay memory-mapped from the files.
    ``parallel``: load this rank's shard only (see :func:`qwen3core.load`'s tensor_parallel).
    """
    started = time.perf_counter() if started is None else started
    device = resolve_device(device)
    found = locate(source, revision)
    config = read_config(found.directory)
    spec = spec_from_config(config, found.name)
    weights = _weights(found)
    run_dtype = (dtype or stored_dtype(config, found.name) or weights.dominant_dtype()
                 or torch.float32)
    check_dtype_on_device(run_dtype, device)
    check_outline(spec, weights, found.name)  # before the skeleton, whose cost config decides
    needed = None
    if scheme is not None:
        from qwen3core.quant.sizes import weight_bytes as quantized_bytes

        needed = quantized_bytes(spec, run_dtype, scheme, quantize_head).resident
    check_fits(spec, run_dtype, device, found.name, ranks=parallel.world_size, needed=needed)
    if scheme is not None or config.get("quantization_config"):
        # A moe that holds quantized experts (qwen3core.quant.moe_choice), unless one is named.
        backends = with_quantized_moe(backends, get_registry(plugins), device, run_dtype)
    selection = select_backends(backends, device=device, dtype=run_dtype, plugins=plugins,
                                training=training)
    model = load_model(spec, selection, weights, dtype=run_dtype, device=device,
                       where=found.name, parallel=parallel, scheme=scheme,
                       quantize_head=quantize_head,
                       quantization_config=config.get("quantization_config"),
                       quantized=checkpoint_format(config, found.name))
    return LoadedModel(model=model, spec=spec, selection=selection,
                       tokenizer=_tokenizer(found.directory), source=found.name,
                       load_seconds=time.perf_counter() - started,
                       generation_config=read_generation_config(found.directory))


def _weights(found: Located) -> WeightFiles:
    try:
        return find_weight_files(found.directory)
    except CheckpointError as exc:
        if found.hub is None:
            raise
        # Typically only config.json was cached (by `qwen3 info`) and the hub is unreachable.
        raise CheckpointError(
            f"{exc}. This is the cached snapshot of {found.hub}; run `qwen3 download "
            f"{found.hub.repo_id}` with network access to complete it") from None


def _tokenizer(directory: Path) -> Any:
    if not (directory / TOKENIZER_FILE).is_file():
        return None
    from qwen3core.tokenizer import Tokenizer

    return Tokenizer.from_dir(directory)
