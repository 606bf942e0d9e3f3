"""Checking :func:`qwen3core.load`'s arguments before any work, one clear error each.

Python does not check annotations, so ``load(None)``, ``backends="eager"`` or ``dtype=torch.int8``
would otherwise surface as an ``AttributeError`` or a tensor error from deep inside the build.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from qwen3core.errors import BackendSelectionError, Qwen3CoreError

MAX_SEED = 2**64 - 1  # torch.manual_seed's range


def check_source(source: object) -> str | Path:
    """A str is a preset, directory or hub id; a path object is always a local directory."""
    if isinstance(source, str):
        if not source.strip():
            raise Qwen3CoreError("source is empty; pass random:<preset>, a model directory or a "
                                 "hub id such as Qwen/Qwen3-0.6B")
        return source
    if isinstance(source, os.PathLike):
        return Path(source)
    raise Qwen3CoreError(f"source must be a string or a path (random:<preset>, a model "
                         f"directory or a hub id such as Qwen/Qwen3-0.6B), got "
                         f"{type(source).__name__} {source!r}"[:300])


def check_backends(backends: object) -> Mapping[str, str] | None:
    if backends is None:
        return None
    if isinstance(backends, str):
        raise BackendSelectionError(
            f"backends={backends!r} is a string; pass a mapping from component to "
            f"implementation, e.g. backends={{'attention': {backends!r}}}, or one entry per "
            f"component (`qwen3 backends` lists them)")
    if not isinstance(backends, Mapping):
        raise BackendSelectionError(f"backends must be a mapping such as {{'attention': "
                                    f"'eager'}}, got {type(backends).__name__}")
    bad = [f"{k!r}: {v!r}" for k, v in backends.items()
           if not (isinstance(k, str) and isinstance(v, str))]
    if bad:
        raise BackendSelectionError(f"backends maps component names to implementation names, "
                                    f"both strings; got {', '.join(bad)}"[:300])
    return backends


def check_seed(seed: object) -> int | None:
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise Qwen3CoreError(f"seed must be an integer, got {type(seed).__name__} {seed!r}")
    if not 0 <= seed <= MAX_SEED:
        raise Qwen3CoreError(f"seed must be in 0..2**64-1, got {seed}")
    return seed


def check_flag(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise Qwen3CoreError(f"{name} must be True or False, got {type(value).__name__} "
                             f"{value!r}")


def check_optional_text(name: str, value: object, *, paths: bool = False) -> None:
    allowed = (str, os.PathLike) if paths else (str,)
    if value is not None and not isinstance(value, allowed):
        kind = "a string or a path" if paths else "a string"
        raise Qwen3CoreError(f"{name} must be {kind}, got {type(value).__name__} {value!r}")
