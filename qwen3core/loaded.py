"""What :func:`qwen3core.load` returns: the model with everything needed to use it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from qwen3core.contracts import Selection
from qwen3core.model import Qwen3Model
from qwen3core.spec import Qwen3Spec


@dataclass
class LoadedModel:
    model: Qwen3Model
    spec: Qwen3Spec
    selection: Selection
    tokenizer: Any = None  # a qwen3core Tokenizer when the source has one
    source: str = ""
    load_seconds: float = 0.0
    generation_config: dict = field(default_factory=dict)

    @property
    def backends(self) -> dict[str, str]:
        """component -> selected implementation name."""
        return self.selection.names()

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype

    @property
    def device(self) -> torch.device:
        return self.model.device

    def __repr__(self) -> str:
        return (f"LoadedModel(source={self.source!r}, dtype={self.dtype}, device={self.device}, "
                f"backends={self.backends})")
