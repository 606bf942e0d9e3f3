"""``qwen3 backends``: every component, its implementations, and whether each is usable here."""

from __future__ import annotations

import argparse
import json
import os
import shutil

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
        availability = registry.availability(component, device, dtype)
        first_party = [a.implementation.name for a in availability
                       if a.available and a.implementation.plugin not in registry.third_party]
        for a in availability:
            impl = a.implementation
            is_default = default.get(component) == impl.name
            third_party = impl.plugin in registry.third_party
            out.append({
                "component": component, "name": impl.name, "plugin": impl.plugin,
                "priority": impl.priority, "available": a.available, "reason": a.reason,
                "default": is_default, "summary": impl.summary, "third_party": third_party,
                "supports_autograd": impl.supports_autograd,
                # A plugin from elsewhere that wins the default over qwen3core's own: say so,
                # since it now runs for everyone who does not name an implementation.
                "overrides": first_party[0] if is_default and third_party and first_party
                else None,
            })
    return out


def build_tools() -> dict[str, str | None]:
    """The tools the cpu (and cuda) kernels need to compile on first use: name -> path, or None
    when missing."""
    from qwen3core.kernel_build import find_ninja

    compiler = os.environ.get("CXX", "c++")
    return {compiler: shutil.which(compiler), "ninja": find_ninja()}


def _all_components_available(registry, device, dtype) -> bool:
    return all(any(a.available for a in registry.availability(c, device, dtype))
               for c in registry.components())


def run(args: argparse.Namespace) -> int:
    dtype = parse_dtype(args.dtype)
    table = rows(args.device, dtype)
    tools = build_tools()
    if args.json:
        print(json.dumps({"device": args.device, "dtype": dtype_name(dtype),
                          "implementations": table, "build_tools": tools}, indent=2))
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
    for r in table:
        if r["overrides"]:
            print(f"note: {r['component']} defaults to {r['name']!r} from the third-party plugin "
                  f"{r['plugin']!r}, over the first-party {r['overrides']!r}; name one with "
                  f"backends={{'{r['component']}': ...}} or block the plugin with "
                  f"QWEN3CORE_BLOCK_PLUGINS={r['plugin']}")
    missing = [name for name, path in tools.items() if path is None]
    found = ", ".join(f"{name} ({path})" for name, path in tools.items() if path)
    print(f"build tools: {found or 'none found'}" + (
        f"; missing: {', '.join(missing)} (the cpu kernels compile on first use and need a C++ "
        f"compiler and ninja: install g++ or set CXX, and pip install ninja)" if missing else ""))
    return 0
