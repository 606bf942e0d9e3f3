"""Parsing the ``source`` argument of :func:`qwen3core.load` into what it names."""

from __future__ import annotations

from dataclasses import dataclass

from qwen3core.errors import Qwen3CoreError
from qwen3core.spec import Qwen3Spec, preset

RANDOM_PREFIX = "random:"


@dataclass(frozen=True)
class RandomSource:
    """``random:<preset>`` or ``random:<preset>@<seed>``: a preset shape with random weights."""

    preset_name: str
    spec: Qwen3Spec
    seed: int

    def __str__(self) -> str:
        return f"{RANDOM_PREFIX}{self.preset_name}@{self.seed}"


def parse_random(source: str, seed: int | None = None) -> RandomSource:
    body = source[len(RANDOM_PREFIX):]
    name, _, seed_text = body.partition("@")
    if seed_text:
        try:
            parsed = int(seed_text)
        except ValueError:
            raise Qwen3CoreError(
                f"bad seed in {source!r}: expected random:<preset>@<integer>") from None
        if seed is not None and seed != parsed:
            raise Qwen3CoreError(f"{source!r} names seed {parsed} but seed={seed} was passed")
        seed = parsed
    return RandomSource(name, preset(name), 0 if seed is None else seed)
