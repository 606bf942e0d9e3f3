"""Naming backend combinations on the command line.

``eager`` is every component's reference implementation; ``auto`` is no selection at all (the
registry's fastest available choice); anything else is ``[label:]component=name,...`` with
unnamed components left to the registry.
"""

from __future__ import annotations

from dataclasses import dataclass

from qwen3core.errors import Qwen3CoreError

EAGER_SELECTION = {"attention": "eager", "norm": "eager", "rope": "eager",
                   "kv_cache": "dynamic", "linear": "eager", "mlp": "eager", "moe": "eager",
                   "runner": "eager"}


@dataclass(frozen=True)
class Combo:
    label: str
    selection: dict[str, str] | None  # None: let the registry choose everything

    def describe(self) -> str:
        if self.selection is None:
            return "(auto)"
        return ",".join(f"{k}={v}" for k, v in self.selection.items())


def parse_combo(text: str) -> Combo:
    text = text.strip()
    if text == "eager":
        return Combo("eager", dict(EAGER_SELECTION))
    if text == "auto":
        return Combo("auto", None)
    label, sep, body = text.partition(":")
    if not sep:
        label, body = text, text
    selection: dict[str, str] = {}
    for part in body.split(","):
        component, eq, name = part.partition("=")
        if not eq or not component.strip() or not name.strip():
            raise Qwen3CoreError(
                f"bad combination {text!r}: expected 'eager', 'auto' or "
                f"'[label:]component=name,...' (e.g. 'fast:attention=sdpa,kv_cache=static')")
        selection[component.strip()] = name.strip()
    return Combo(label, selection)
