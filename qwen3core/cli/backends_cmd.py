"""``qwen3 backends``: every component, its implementations, and whether each is usable here."""

from __future__ import annotations

import argparse
import json

import torch

from qwen3core.dtypes import dtype_name, parse_dtype


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("backends", help="list components, implementations and availability")
    p.add_argument("--device", default="cpu", help="device to check availability for")
    p.add_argument("--dtype", default="float32", help="dtype to check availability for")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(run=run)


def rows(device: str, dtype: torch.dtype) -> list[dict]:
    from qwen3core.registry import get_registry

    registry = get_registry()
    default = registry.select(None, device=device, dtype=dtype).names() \
        if _all_components_available(registry, device, dtype) else {}
    out = []
    for component in registry.components():
        for a in registry.availability(component, device, dtype):
            impl = a.implementation
            out.append({
                "component": component, "name": impl.name, "plugin": impl.plugin,
                "priority": impl.priority, "available": a.available, "reason": a.reason,
                "default": default.get(component) == impl.name, "summary": impl.summary,
            })
    return out


def _all_components_available(registry, device, dtype) -> bool:
    return all(any(a.available for a in registry.availability(c, device, dtype))
               for c in registry.components())


def run(args: argparse.Namespace) -> int:
    dtype = parse_dtype(args.dtype)
    table = rows(args.device, dtype)
    if args.json:
        print(json.dumps({"device": args.device, "dtype": dtype_name(dtype),
                          "implementations": table}, indent=2))
        return 0
    print(f"Backends on {args.device} with {dtype_name(dtype)} ('*' = chosen when not selected)")
    header = ("component", "name", "plugin", "prio", "status")
    lines = [header]
    for r in table:
        status = "available" if r["available"] else f"unavailable: {r['reason']}"
        lines.append((r["component"], ("*" if r["default"] else " ") + r["name"], r["plugin"],
                      str(r["priority"]), status))
    widths = [max(len(line[i]) for line in lines) for i in range(4)]
    for line in lines:
        print("  ".join(cell.ljust(w) for cell, w in zip(line[:4], widths)) + "  " + line[4])
    return 0
