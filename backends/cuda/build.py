"""Compile the CUDA kernels ahead of time into the kernel cache (see :mod:`.library`).

    python -m qwen3core_backends.cuda.build                          # for the visible GPU
    python -m qwen3core_backends.cuda.build --arch 8.0 --arch 9.0    # for a list of GPUs

Prints the library's path. A process that later finds the finished build loads it without
compiling, even where nvcc is missing.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import torch

from .library import build, parse_capability, toolchain_reason


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m qwen3core_backends.cuda.build",
        description="Compile the qwen3core CUDA kernels ahead of time into the kernel cache.")
    parser.add_argument("--arch", action="append", default=[], metavar="X.Y",
                        help="compute capability to build for (repeatable; default: the "
                             "visible GPU's)")
    parser.add_argument("--verbose", action="store_true", help="show the compiler's output")
    args = parser.parse_args(argv)
    if args.arch:
        capabilities = [parse_capability(a) for a in args.arch]
    elif torch.cuda.is_available():
        capabilities = [torch.cuda.get_device_capability()]
    else:
        print("no GPU is visible: name the architectures to build for with --arch (e.g. "
              "--arch 9.0)", file=sys.stderr)
        return 2
    if torch.version.cuda is None:
        print(f"this torch build ({torch.__version__}) has no CUDA; install a CUDA build of "
              f"torch to compile the kernels", file=sys.stderr)
        return 2
    reason = toolchain_reason()
    if reason is not None:
        print(reason, file=sys.stderr)
        return 2
    try:
        library = build(capabilities, verbose=args.verbose)
    except Exception as exc:  # noqa: BLE001 - the compiler's message is the useful part
        print(f"building the cuda kernels failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(library)
    return 0


if __name__ == "__main__":
    sys.exit(main())
