"""``qwen3 generate``: complete one prompt, streaming the text to the terminal (or --json)."""

from __future__ import annotations

import argparse
import json
import sys

from qwen3core.cli.common import (
    add_model_options,
    add_quantize_options,
    parse_backend_options,
)
from qwen3core.errors import Qwen3CoreError
from qwen3core.generation.sampling import SamplingParams


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="generate text from a prompt (streams to the terminal)",
                       description="Generate a completion. Random models (random:<preset>) "
                                   "produce gibberish at real speed; they have no tokenizer, so "
                                   "pass --tokenizer DIR for text prompts or use --prompt-ids.")
    add_model_options(p)
    add_quantize_options(p)
    add_tokenizer_option(p)
    prompt = p.add_mutually_exclusive_group(required=True)
    prompt.add_argument("--prompt", metavar="TEXT", help="the prompt text")
    prompt.add_argument("--prompt-ids", metavar="IDS", help="the prompt as token ids: 1,2,3")
    p.add_argument("--chat", action="store_true",
                   help="send --prompt as a user message rendered with the chat template")
    add_generation_options(p, default_max_new_tokens=256)
    p.add_argument("--stop", nargs="+", action="extend", default=[], metavar="STR",
                   help="stop when the text contains any of these strings (needs a tokenizer)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object (token_ids, text, finish_reason, timings, ...)")
    p.add_argument("--verbose", action="store_true",
                   help="print the selected backends and the timings to stderr")
    add_tensor_parallel_option(p)
    p.set_defaults(run=run)


def add_tensor_parallel_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tensor-parallel", type=int, default=1, metavar="N",
                   help="split the model over N processes on this machine (one per GPU with "
                        "--device cuda; gloo on CPU), launched through torch.distributed.run; "
                        "see docs/parallel.md")


def add_tokenizer_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tokenizer", metavar="DIR", default=None,
                   help="directory with tokenizer.json and tokenizer_config.json to use "
                        "(needed for text with random:<preset> models)")


def add_generation_options(p: argparse.ArgumentParser, *, default_max_new_tokens: int) -> None:
    p.add_argument("--no-think", dest="enable_thinking", action="store_false",
                   help="ask the chat template for an empty thinking block (thinking off)")
    p.add_argument("--max-new-tokens", type=int, default=default_max_new_tokens, metavar="N",
                   help=f"most tokens to generate (default: {default_max_new_tokens})")
    s = p.add_argument_group(
        "sampling", "Unset options take the checkpoint's generation_config.json (Qwen3: "
                    "temperature 0.6, top-p 0.95, top-k 20; with --no-think 0.7, 0.8, 20); "
                    "a model without one (random:<preset>) decodes greedily. --verbose shows "
                    "the settings in use.")
    s.add_argument("--temperature", type=float, default=None, metavar="T",
                   help="0 is greedy; higher samples more freely")
    s.add_argument("--top-k", type=int, default=None, metavar="K",
                   help="sample among the K most likely tokens (0: off)")
    s.add_argument("--top-p", type=float, default=None, metavar="P",
                   help="sample among the fewest tokens whose probability reaches P (1: off)")
    s.add_argument("--min-p", type=float, default=None, metavar="P",
                   help="drop tokens less likely than P times the most likely one (0: off)")
    s.add_argument("--repetition-penalty", type=float, default=None, metavar="R",
                   help="divide the logits of tokens already seen (prompt included) by R "
                        "(1: off)")
    s.add_argument("--presence-penalty", type=float, default=None, metavar="X",
                   help="subtract X from tokens already generated, in [-2, 2] (0: off)")
    s.add_argument("--frequency-penalty", type=float, default=None, metavar="X",
                   help="subtract X per earlier occurrence of a generated token, in [-2, 2] "
                        "(0: off)")
    s.add_argument("--seed", type=int, default=None, metavar="S",
                   help="seed for sampling, 0 <= S < 2**64 (same seed, same output; "
                        "default: a fresh one)")


SAMPLING_FLAGS = ("temperature", "top_k", "top_p", "min_p", "repetition_penalty",
                  "presence_penalty", "frequency_penalty", "seed")


def sampling_from_args(args: argparse.Namespace, loaded) -> SamplingParams:
    """The checkpoint's defaults (for the thinking mode asked for) with the flags given."""
    defaults = loaded.default_sampling(enable_thinking=args.enable_thinking)
    return defaults.with_overrides(**{name: getattr(args, name) for name in SAMPLING_FLAGS})


def generation_options(args: argparse.Namespace, loaded) -> dict:
    return {"max_new_tokens": args.max_new_tokens, "sampling": sampling_from_args(args, loaded),
            "enable_thinking": args.enable_thinking}


def load_from_args(args: argparse.Namespace):
    import qwen3core

    return qwen3core.load(args.model, dtype=args.dtype, device=args.device,
                          backends=parse_backend_options(args.backend),
                          tokenizer=args.tokenizer,
                          tensor_parallel=getattr(args, "tensor_parallel", None),
                          quantize=getattr(args, "quantize", None),
                          quantize_head=getattr(args, "quantize_head", False))


def parse_prompt(args: argparse.Namespace):
    """The ``prompts`` argument for generate(): ids, text, or a one-message chat."""
    if args.prompt_ids is not None:
        if args.chat:
            raise Qwen3CoreError("--chat renders text with the chat template; use it with "
                                 "--prompt, not --prompt-ids")
        try:
            return [int(t) for t in args.prompt_ids.replace(" ", "").split(",") if t]
        except ValueError:
            raise Qwen3CoreError(f"--prompt-ids expects comma-separated integers such as "
                                 f"1,2,3; got {args.prompt_ids!r}") from None
    if args.chat:
        return [{"role": "user", "content": args.prompt}]
    return args.prompt


def tolerate_unencodable_output() -> None:
    """Generated text can hold any character; a terminal that cannot show one gets a
    replacement instead of the command dying with UnicodeEncodeError."""
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="replace")


def run(args: argparse.Namespace) -> int:
    from qwen3core.parallel import launch

    if args.tensor_parallel > 1 and not launch.in_worker():
        launch.check_splits(args.model, args.tensor_parallel)
        return launch.relaunch(args.tensor_parallel, "qwen3core.cli", args.argv)
    tolerate_unencodable_output()
    loaded = load_from_args(args)
    if args.tensor_parallel > 1:  # every rank runs the same steps; rank 0 writes
        launch.silence_other_ranks()
        args.verbose = args.verbose and launch.rank() == 0
        args.seed = launch.shared_seed(args.seed)
    try:
        return _generate(args, loaded)
    finally:
        launch.finish()


def _generate(args: argparse.Namespace, loaded) -> int:
    if args.verbose:
        print(f"model    {loaded.source} ({loaded.dtype}, {loaded.device}, loaded in "
              f"{loaded.load_seconds:.2f} s)", file=sys.stderr)
        print("backends " + ", ".join(f"{c}={n}" for c, n in loaded.backends.items()),
              file=sys.stderr)
    options = generation_options(args, loaded)
    if args.verbose:
        print(f"sampling {options['sampling'].describe()}", file=sys.stderr)
    events = loaded.stream(parse_prompt(args), stop=args.stop or None, **options)
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
