"""Options shared by several commands (model source, dtype, device, backend selection)."""

from __future__ import annotations

import argparse

from qwen3core.errors import Qwen3CoreError


def add_model_options(parser: argparse.ArgumentParser, *, default_model: str | None = None) -> None:
    parser.add_argument("--model", default=default_model, required=default_model is None,
                        metavar="SRC",
                        help="random:<preset>[@seed], a local model directory, or a hub id "
                             "such as Qwen/Qwen3-0.6B" +
                             (f" (default: {default_model})" if default_model else ""))
    parser.add_argument("--dtype", default=None,
                        help="float32, bfloat16, float16 or float64 (default: the checkpoint's, "
                             "float32 for random models)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if "
                                                      "available, else cpu)")
    parser.add_argument("--backend", action="append", default=[], metavar="COMPONENT=NAME",
                        help="select an implementation, e.g. --backend attention=sdpa "
                             "(repeatable; see `qwen3 backends`)")


def add_quantize_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quantize", default=None, metavar="SCHEME",
                        help="quantize the projections while loading: int8, int4, or with "
                             "options such as int4:g64 (see docs/quantization.md)")
    parser.add_argument("--quantize-head", action="store_true",
                        help="with --quantize, quantize the LM head too")


def parse_backend_options(values: list[str]) -> dict[str, str]:
    selection: dict[str, str] = {}
    for value in values:
        component, sep, name = value.partition("=")
        if not sep or not component or not name:
            raise Qwen3CoreError(f"--backend expects COMPONENT=NAME, got {value!r}")
        if component in selection and selection[component] != name:
            raise Qwen3CoreError(f"--backend names {component} twice: {selection[component]!r} "
                                 f"and {name!r}")
        selection[component.strip()] = name.strip()
    return selection
