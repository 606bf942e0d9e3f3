"""What the equivalence suite checked in this process, for the pytest summary.

Each checked example records its backend selection, dtype, device and the number of tokens
compared; each property records how many combinations were available to draw from. The
pytest plugin prints the totals (and gathers them from pytest-xdist workers).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

_examples: list[dict] = []
_spaces: dict[str, int] = {}  # "device dtype [restriction]" -> available combinations


def record_example(selection: Mapping[str, str], dtype: str, device: str, tokens: int, *,
                   longest_prompt: int = 0, deepest_position: int = 0,
                   past_yarn_original: bool = False) -> None:
    """``deepest_position``: 0-based position of the last token whose logits were compared;
    ``past_yarn_original``: a yarn spec's example that went past its original context."""
    _examples.append({"selection": dict(selection), "dtype": dtype, "device": device,
                      "tokens": tokens, "longest_prompt": longest_prompt,
                      "deepest_position": deepest_position,
                      "past_yarn_original": past_yarn_original})


def record_space(label: str, available: int) -> None:
    _spaces[label] = max(available, _spaces.get(label, 0))


def snapshot() -> dict:
    """Plain data (for pytest-xdist's worker output)."""
    return {"examples": list(_examples), "spaces": dict(_spaces)}


def merge(data: Mapping) -> None:
    _examples.extend(data.get("examples", ()))
    for label, n in data.get("spaces", {}).items():
        record_space(label, n)


def summary_lines() -> list[str]:
    if not _examples:
        return []
    combos = {tuple(sorted(e["selection"].items())) + (("dtype", e["dtype"]),)
              for e in _examples}
    tokens = sum(e["tokens"] for e in _examples)
    lines = [(f"{len(_examples)} examples checked against the eager reference, "
              f"{len(combos)} distinct backend combinations (selection x dtype), "
              f"{tokens} greedy tokens compared")]
    longest = max(e.get("longest_prompt", 0) for e in _examples)
    deepest = max(e.get("deepest_position", 0) for e in _examples)
    past_100 = sum(1 for e in _examples if e.get("deepest_position", 0) > 100)
    past_yarn = sum(1 for e in _examples if e.get("past_yarn_original"))
    lines.append(f"  longest prompt {longest} tokens, deepest position checked {deepest} "
                 f"(0-based); {past_100} examples checked positions past 100, {past_yarn} "
                 f"past a yarn spec's original context")
    by_dtype = Counter(e["dtype"] for e in _examples)
    for dtype, n in sorted(by_dtype.items()):
        seen = {tuple(sorted(e["selection"].items())) for e in _examples if e["dtype"] == dtype}
        lines.append(f"  {dtype}: {n} examples, {len(seen)} combinations")
    for label, n in sorted(_spaces.items()):
        lines.append(f"  available to draw from ({label}): {n} combinations")
    per_impl: dict[str, Counter] = {}
    for e in _examples:
        for component, name in e["selection"].items():
            per_impl.setdefault(component, Counter())[name] += 1
    for component, counts in per_impl.items():
        lines.append(f"  {component}: " + ", ".join(f"{name} {n}" for name, n in
                                                     sorted(counts.items())))
    return lines


def reset() -> None:
    _examples.clear()
    _spaces.clear()
