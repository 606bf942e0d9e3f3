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
    "qwen3core.cli.list_cmd",
    "qwen3core.cli.rm_cmd",
    "qwen3core.cli.bench_cmd",
    "qwen3core.cli.generate_cmd",
    "qwen3core.cli.chat_cmd",
    "qwen3core.cli.serve_cmd",
    "qwen3core.cli.quantize_cmd",
]


def build_parser() -> argparse.ArgumentParser:
    from qwen3core import __version__

    parser = argparse.ArgumentParser(
        prog="qwen3", description="Run, inspect and benchmark Qwen3 models with pluggable backends.")
    parser.add_argument("--version", action="version",
                        version=f"qwen3 (qwen3core) {__version__}, torch {_torch_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(name).register(sub)
    return parser


def _torch_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("torch")  # without importing torch: --version answers at once
    except PackageNotFoundError:
        return "not installed"


def main(argv: list[str] | None = None) -> int:
    from qwen3core import progress
    from qwen3core.errors import Qwen3CoreError

    args = build_parser().parse_args(argv)
    progress.enable()  # the library is quiet; a command shows what it is waiting for
    args.argv = list(sys.argv[1:] if argv is None else argv)  # to re-run as parallel ranks
    try:
        return int(args.run(args) or 0)
    except Qwen3CoreError as exc:
        from qwen3core.cli.messages import for_cli

        print(f"qwen3 {args.command}: error: {for_cli(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `qwen3 generate ... | head`: the reader left; stop quietly
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        return 141
