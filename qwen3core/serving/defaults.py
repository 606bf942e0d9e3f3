"""Sampling defaults from a checkpoint's ``generation_config.json``, as other servers apply
them: a request that leaves ``temperature`` / ``top_p`` / ``top_k`` unset gets the model
author's recommended values (Qwen3 ships temperature 0.6, top_p 0.95, top_k 20)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

KEYS = ("temperature", "top_p", "top_k")


def generation_defaults(source: str) -> dict[str, Any]:
    """The sampling defaults of a local model directory (none for other sources, or when the
    file is missing or does not ask for sampling)."""
    path = Path(source) / "generation_config.json"
    if not path.is_file():
        return {}
    try:
        config = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    if not isinstance(config, dict) or config.get("do_sample") is False:
        return {"temperature": 0.0} if isinstance(config, dict) else {}
    return {k: config[k] for k in KEYS if isinstance(config.get(k), (int, float))
            and not isinstance(config.get(k), bool)}
