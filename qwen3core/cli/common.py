"""Options shared by several commands (model source, dtype, device, backend selection, threads,
tokenizer) and loading a model from them. Generation options live in ``generation_options``."""

from __future__ import annotations

import argparse

from qwen3core.errors import Qwen3CoreError


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions as written (line breaks kept), and "(default: X)" after every option
    whose help does not already state its default (None / off flags have nothing to show)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if ("default" in text or not action.option_strings
                or action.default in (None, False, True, [], argparse.SUPPRESS)):
            return text
        return text + " (default: %(default)s)"


DTYPE_HELP = ("float32, bfloat16, float16 or float64 (default: the checkpoint's torch_dtype; "
              "for random:<preset>, bfloat16 on CUDA and on a CPU with the cpu backend's "
              "bfloat16 kernel, else float32)")


def add_model_options(parser: argparse.ArgumentParser, *, default_model: str | None = None) -> None:
    parser.add_argument("--model", default=default_model, required=default_model is None,
                        metavar="SRC",
                        help="random:<preset>[@seed], a local model directory, or a hub id "
                             "such as Qwen/Qwen3-0.6B" +
                             (f" (default: {default_model})" if default_model else ""))
    parser.add_argument("--dtype", default=None, help=DTYPE_HELP)
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if "
                                                      "available, else cpu)")
    parser.add_argument("--backend", action="append", default=[], metavar="COMPONENT=NAME",
                        help="select an implementation, e.g. --backend attention=sdpa "
                             "(repeatable; see `qwen3 backends`)")


def add_threads_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="CPU threads for torch (default: torch's choice, one per core; on "
                             "a busy machine fewer can be much faster)")


def apply_threads(threads: int | None) -> None:
    if threads is None:
        return
    if threads < 1:
        raise Qwen3CoreError(f"--threads must be >= 1, got {threads}")
    import torch

    torch.set_num_threads(threads)


def add_tokenizer_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tokenizer", metavar="DIR", default=None,
                   help="directory with tokenizer.json and tokenizer_config.json to use "
                        "(needed for text with random:<preset> models; random:tiny-chat has "
                        "the vocabulary of Qwen3's tokenizer)")


def load_from_args(args: argparse.Namespace):
    """qwen3core.load with --model, --dtype, --device, --backend, --tokenizer (and --threads
    applied first, when the command has it)."""
    import qwen3core

    apply_threads(getattr(args, "threads", None))
    return qwen3core.load(args.model, dtype=args.dtype, device=args.device,
                          backends=parse_backend_options(args.backend),
                          tokenizer=getattr(args, "tokenizer", None),
                          tensor_parallel=getattr(args, "tensor_parallel", None),
                          quantize=getattr(args, "quantize", None),
                          quantize_head=getattr(args, "quantize_head", False))


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


def check_output_file(path: str, flag: str) -> None:
    """Refuse an output file that cannot be written, before the work that fills it starts
    (a benchmark must not run for minutes and then lose its results)."""
    import os

    target = os.path.abspath(path)
    folder = os.path.dirname(target)
    if os.path.isdir(target):
        raise Qwen3CoreError(f"{flag} {path}: that is a directory; give a file name")
    if not os.path.isdir(folder):
        raise Qwen3CoreError(f"{flag} {path}: the folder {folder} does not exist; create it "
                             f"first or choose another place")
    if os.path.exists(target) and not os.access(target, os.W_OK):
        raise Qwen3CoreError(f"{flag} {path}: the file is not writable")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise Qwen3CoreError(f"{flag} {path}: the folder {folder} is not writable")
