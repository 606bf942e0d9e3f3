"""The ``qwen3`` command line: one module per subcommand, listed in ``COMMANDS``.

Each command module defines ``register(subparsers)`` adding its parser with
``set_defaults(run=...)``; ``run(args) -> int`` does the work. Errors the framework raises on
purpose are printed as one line, not a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = [
    "qwen3core.cli.backends_cmd",
    "qwen3core.cli.info_cmd",
    "qwen3core.cli.download_cmd",
    "qwen3core.cli.bench_cmd",
    "qwen3core.cli.generate_cmd",
    "qwen3core.cli.chat_cmd",
    "qwen3core.cli.serve_cmd",
    "qwen3core.cli.quantize_cmd",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qwen3", description="Run, inspect and benchmark Qwen3 models with pluggable backends.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from qwen3core.errors import Qwen3CoreError

    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # to re-run as parallel ranks
    try:
        return int(args.run(args) or 0)
    except Qwen3CoreError as exc:
        print(f"qwen3 {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
