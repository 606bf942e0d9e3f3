"""Greedy picks: each row's largest logit, the lowest index among equal ones (and the first
NaN of a row that has one): exactly ``torch.argmax(logits, dim=-1)``.

torch's CPU argmax tracks an index per element and takes ~0.5 ms over a bfloat16 row of the
151936-token vocabulary, ~4 % of a quantized 0.6B decode step. A backend with a faster routine
for its device registers it here (the cpu backend: ``qwen3core_cpu::argmax``, two vectorised
passes, ~10 us); every greedy pick of the generation loop, the server and ``qwen3 bench`` goes
through :func:`greedy_tokens`. A registered routine must return torch.argmax's indices.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

ArgmaxFn = Callable[[torch.Tensor], torch.Tensor]

_argmax_by_device: dict[str, ArgmaxFn] = {}


def register_argmax(device_type: str, fn: ArgmaxFn) -> None:
    """Use ``fn(logits [..., V]) -> int64 [...]`` for logits on ``device_type`` ("cpu")."""
    _argmax_by_device[device_type] = fn


def greedy_tokens(logits: torch.Tensor) -> torch.Tensor:
    """logits [..., V] -> int64 [...]: ``logits.argmax(dim=-1)``, through the device's
    registered routine where there is one (not while torch.compile traces)."""
    fn = _argmax_by_device.get(logits.device.type)
    if fn is None or torch.compiler.is_compiling():
        return logits.argmax(dim=-1)
    return fn(logits)
