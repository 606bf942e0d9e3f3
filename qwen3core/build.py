"""Assembling a model: select implementations, build on ``meta``, materialise once."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch

from qwen3core.autograd import install_guard
from qwen3core.contracts import BuildContext, Selection
from qwen3core.errors import Qwen3CoreError
from qwen3core.init import initialize_random
from qwen3core.model import Qwen3Model
from qwen3core.parallel import SINGLE_PROCESS, ParallelLayout
from qwen3core.parallel.plan import random_init_region
from qwen3core.registry import Registry, get_registry
from qwen3core.spec import Qwen3Spec


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_device(device: str | torch.device | None) -> torch.device:
    """The device to run on, checked now so that a missing GPU is one clear error."""
    if device is None:
        return default_device()
    if not isinstance(device, (str, torch.device)):
        raise Qwen3CoreError(f"device must be a name such as 'cpu' or 'cuda:0' or a "
                             f"torch.device, got {type(device).__name__} {device!r}")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise Qwen3CoreError(f"unknown device {device!r}: {exc}") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            why = (f"this torch build ({torch.__version__}) has no CUDA support"
                   if torch.version.cuda is None else "no CUDA GPU is visible")
            raise Qwen3CoreError(f"device {device!r} requested but {why}; use --device cpu")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise Qwen3CoreError(f"device {device!r} requested but only "
                                 f"{torch.cuda.device_count()} CUDA device(s) are visible")
    elif resolved.type == "meta":
        raise Qwen3CoreError("the meta device holds no data; load onto cpu or cuda")
    elif resolved.type != "cpu":
        raise Qwen3CoreError(f"device {device!r} ({resolved.type}) is not supported: qwen3core "
                             f"runs on cpu and cuda; use device='cpu'")
    return resolved


def select_backends(backends: Mapping[str, str] | None, *, device: torch.device,
                    dtype: torch.dtype, registry: Registry | None = None,
                    plugins: Iterable[object] = (), training: bool = False) -> Selection:
    registry = registry or get_registry(plugins)
    return registry.select(backends, device=device, dtype=dtype, training=training)


def build_skeleton(spec: Qwen3Spec, selection: Selection, dtype: torch.dtype,
                   parallel: ParallelLayout = SINGLE_PROCESS) -> Qwen3Model:
    """The model (``parallel``: this rank's shard of it) with every parameter on the ``meta``
    device: shapes only, no memory.

    Factories therefore must not compute tensors they keep (buffers) at construction time;
    derived state belongs in ``prepare_weights()``, which runs once the weights are real.
    """
    ctx = BuildContext(spec, dtype, torch.device("meta"), selection, parallel)
    model = Qwen3Model(ctx)
    install_guard(model, selection, spec)  # refuses gradients it cannot give (qwen3core.autograd)
    return model


def build_random(spec: Qwen3Spec, selection: Selection, *, dtype: torch.dtype,
                 device: torch.device, seed: int = 0,
                 parallel: ParallelLayout = SINGLE_PROCESS) -> Qwen3Model:
    """A randomly initialised model (see :mod:`qwen3core.init`), ready to run. With
    ``parallel``, this rank's shard, equal to that part of the one-process model."""
    model = build_skeleton(spec, selection, dtype, parallel)
    model.to_empty(device=device)
    model.tie_weights()  # to_empty may have given the two tied modules separate storage
    initialize_random(model, seed, spec.hidden_size,
                      random_init_region(spec, parallel) if parallel.is_parallel else None)
    model.prepare_weights()
    return model.eval()
