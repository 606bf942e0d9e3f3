"""``qwen3 generate``: complete one prompt, streaming the text to the terminal (or --json)."""

from __future__ import annotations

import argparse
import json
import sys

from qwen3core.cli.common import (
    HelpFormatter,
    add_model_options,
    add_quantize_options,
    add_threads_option,
    add_tokenizer_option,
    load_from_args,
)
from qwen3core.cli.generation_options import (
    add_generation_options,
    check_sampling_flags,
    generation_options,
    tolerate_unencodable_output,
)
from qwen3core.dtypes import dtype_name
from qwen3core.errors import Qwen3CoreError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="generate text from a prompt (streams to the terminal)",
                       description="Generate a completion. Random models (random:<preset>) "
                                   "produce gibberish at real speed; they have no tokenizer, so "
                                   "pass --tokenizer DIR for text prompts (random:tiny-chat "
                                   "fits Qwen3's tokenizer) or use --prompt-ids.",
                       formatter_class=HelpFormatter)
    add_model_options(p)
    add_quantize_options(p)
    add_tokenizer_option(p)
    add_threads_option(p)
    prompt = p.add_mutually_exclusive_group(required=True)
    prompt.add_argument("--prompt", metavar="TEXT",
                        help="the prompt text; - reads it from standard input")
    prompt.add_argument("--prompt-file", metavar="PATH", help="read the prompt text from a file")
    prompt.add_argument("--prompt-ids", metavar="IDS", help="the prompt as token ids: 1,2,3")
    p.add_argument("--chat", action="store_true",
                   help="send the prompt as a user message rendered with the chat template")
    p.add_argument("--system", metavar="TEXT", default=None,
                   help="a system message (implies --chat)")
    add_generation_options(p, default_max_new_tokens=256)
    p.add_argument("--stop", nargs="+", action="extend", default=[], metavar="STR",
                   help="stop when the text contains any of these strings (needs a tokenizer)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object (token_ids, text, finish_reason, timings, ...)")
    p.add_argument("--verbose", action="store_true",
                   help="print the model, backends, sampling settings and timings to stderr")
    add_tensor_parallel_option(p)
    p.set_defaults(run=run)


def add_tensor_parallel_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tensor-parallel", type=int, default=1, metavar="N",
                   help="split the model over N processes on this machine (one per GPU with "
                        "--device cuda; gloo on CPU), launched through torch.distributed.run; "
                        "see docs/parallel.md")


def read_prompt_text(args: argparse.Namespace) -> str:
    """--prompt TEXT, --prompt - (standard input) or --prompt-file PATH."""
    if args.prompt_file is not None:
        try:
            with open(args.prompt_file, encoding="utf-8") as f:
                return f.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise Qwen3CoreError(f"--prompt-file {args.prompt_file}: cannot read it "
                                 f"({exc.strerror if isinstance(exc, OSError) else exc})"
                                 ) from None
    if args.prompt == "-":
        if sys.stdin.isatty():
            print("(reading the prompt from standard input; end it with Ctrl-D)",
                  file=sys.stderr)
        return sys.stdin.read()
    return args.prompt


def parse_prompt(args: argparse.Namespace):
    """The ``prompts`` argument for generate(): ids, text, or a chat (system + user)."""
    chat = args.chat or args.system is not None
    if args.prompt_ids is not None:
        if chat:
            raise Qwen3CoreError("--chat and --system render text with the chat template; use "
                                 "them with --prompt or --prompt-file, not --prompt-ids")
        return parse_token_ids(args.prompt_ids)
    text = read_prompt_text(args)
    if not text:
        raise Qwen3CoreError("the prompt is empty")
    if chat:
        system = [{"role": "system", "content": args.system}] if args.system else []
        return [*system, {"role": "user", "content": text}]
    return text


def parse_token_ids(text: str) -> list[int]:
    """``"1,2, 3"`` -> [1, 2, 3]; an empty item (``1,,2``) or a non-integer is an error."""
    items = [t.strip() for t in text.split(",")]
    try:
        if not all(items):
            raise ValueError
        return [int(t) for t in items]
    except ValueError:
        raise Qwen3CoreError(f"--prompt-ids expects comma-separated integers such as 1,2,3 "
                             f"(no empty items); got {text!r}") from None


def print_model(loaded, *, file) -> None:
    print(f"model    {loaded.source} ({dtype_name(loaded.dtype)}, {loaded.device}, loaded in "
          f"{loaded.load_seconds:.2f} s)", file=file)
    print("backends " + ", ".join(f"{c}={n}" for c, n in loaded.backends.items()), file=file)
    if loaded.device.type == "cpu":
        import torch

        print(f"threads  {torch.get_num_threads()}", file=file)


def run(args: argparse.Namespace) -> int:
    from qwen3core.parallel import launch

    check_sampling_flags(args)  # bad input is refused before the model loads (or ranks start)
    if args.tensor_parallel > 1 and not launch.in_worker():
        parse_token_ids(args.prompt_ids) if args.prompt_ids is not None else None
        launch.check_splits(args.model, args.tensor_parallel)
        return launch.relaunch(args.tensor_parallel, "qwen3core.cli", args.argv)
    tolerate_unencodable_output()
    prompt = parse_prompt(args)
    loaded = load_from_args(args)
    if args.tensor_parallel > 1:  # every rank runs the same steps; rank 0 writes
        launch.silence_other_ranks()
        args.verbose = args.verbose and launch.rank() == 0
        args.seed = launch.shared_seed(args.seed)
    try:
        return _generate(args, loaded, prompt)
    finally:
        launch.finish()


def _generate(args: argparse.Namespace, loaded, prompt) -> int:
    options = generation_options(args, loaded)
    if args.verbose:
        print_model(loaded, file=sys.stderr)
        print(f"sampling {options['sampling'].describe()}", file=sys.stderr)
    events = loaded.stream(prompt, stop=args.stop or None, **options)
    has_text = loaded.tokenizer is not None
    for event in events:
        if args.json:
            continue
        if has_text:
            sys.stdout.write(event.text)
        else:
            sys.stdout.write("".join(f"{t} " for t in event.token_ids))
        sys.stdout.flush()
    result = events.result
    if args.json:
        print(json.dumps({"source": loaded.source, **result.to_dict(),
                          "backends": loaded.backends}, ensure_ascii=False))
    else:
        print()
    if args.verbose:
        print_timings(result, file=sys.stderr)
    return 0


def print_timings(result, *, file) -> None:
    t = result.timings
    rate = f"{t.decode_tokens_per_s:.1f} tokens/s" if t.decode_tokens_per_s else "n/a"
    print(f"finish   {result.finish_reason} after {len(result.token_ids)} tokens "
          f"(prompt {result.prompt_tokens} tokens)", file=file)
    print(f"timings  prefill {t.prefill_s * 1000:.1f} ms, first token after "
          f"{t.time_to_first_token_s * 1000:.1f} ms, decode {rate}", file=file)
