"""The two steps every generation loop is made of, shaped for whole-step compilation.

``prefill`` runs the prompt through the model and fills the cache; ``decode_one`` runs one
token per row. Both return only the last position's logits [B, vocab]. :class:`Steps` wraps
them with the selected ``runner`` implementation once per model, so a compiling runner sees
the same Python function on every call and can reuse its compiled code.
"""

from __future__ import annotations

import torch

from qwen3core.cache import Cache
from qwen3core.model import Qwen3Model


def prefill(model: Qwen3Model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
            cache: Cache) -> torch.Tensor:
    """input_ids [B, S] (left-padded; ``attention_mask`` [B, S] or None) -> logits [B, vocab]."""
    return model(input_ids, attention_mask=attention_mask, cache=cache, last_only=True)[:, -1]


def decode_one(model: Qwen3Model, tokens: torch.Tensor, cache: Cache) -> torch.Tensor:
    """tokens [B, 1] -> logits [B, vocab] for the next position."""
    return model(tokens, cache=cache, last_only=True)[:, -1]


class Steps:
    """``prefill`` and ``decode_one`` bound to a model and wrapped by its runner."""

    def __init__(self, model: Qwen3Model):
        self.model = model
        wrap = model.runner
        self._prefill = wrap(prefill, "prefill")
        self._decode = wrap(decode_one, "decode")

    @torch.inference_mode()
    def prefill(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                cache: Cache) -> torch.Tensor:
        return self._prefill(self.model, input_ids, attention_mask, cache)

    @torch.inference_mode()
    def decode_one(self, tokens: torch.Tensor, cache: Cache) -> torch.Tensor:
        return self._decode(self.model, tokens, cache)


def steps_for(model: Qwen3Model) -> Steps:
    """The model's :class:`Steps`, created once, so a compiling runner compiles once."""
    # Kept on the model itself (not in a weak mapping, whose value would keep the model alive
    # through Steps.model): the pair lives and dies together.
    steps = model.__dict__.get("_generation_steps")
    if steps is None:
        steps = model.__dict__["_generation_steps"] = Steps(model)
    return steps
