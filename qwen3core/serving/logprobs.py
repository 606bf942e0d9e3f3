"""Log-probabilities of the chosen token and the most likely alternatives, as the OpenAI API
reports them: from the model's own distribution (the raw logits, before any sampling filter)."""

from __future__ import annotations

import torch

from qwen3core.serving.request import TokenLogprobs

#: The most alternatives a request may ask for (OpenAI's own limit is 20).
MAX_TOP_LOGPROBS = 20


def token_logprobs(logits: torch.Tensor, chosen: int, top: int) -> TokenLogprobs:
    """logits [vocab] -> the chosen token's logprob and the ``top`` most likely tokens'."""
    logp = torch.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), -1)
    best = []
    if top > 0:
        values, ids = torch.topk(logp, min(top, logp.shape[-1]))
        best = list(zip(ids.tolist(), values.tolist(), strict=True))
    return TokenLogprobs(logprob=float(logp[chosen]), top=best)
