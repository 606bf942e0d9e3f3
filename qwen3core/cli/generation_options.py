"""Options shared by the commands that generate (``generate``, ``chat``): thinking, length and
sampling, turned into the keywords of ``LoadedModel.generate`` / ``ChatSession``."""

from __future__ import annotations

import argparse
import sys

from qwen3core.generation.sampling import SamplingParams

SAMPLING_FLAGS = ("temperature", "top_k", "top_p", "min_p", "repetition_penalty",
                  "presence_penalty", "frequency_penalty", "seed")


def add_generation_options(p: argparse.ArgumentParser, *, default_max_new_tokens: int) -> None:
    p.add_argument("--no-think", dest="enable_thinking", action="store_false",
                   help="ask the chat template for an empty thinking block (thinking off)")
    p.add_argument("--max-new-tokens", type=int, default=default_max_new_tokens, metavar="N",
                   help="most tokens to generate")
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


def check_sampling_flags(args: argparse.Namespace) -> None:
    """Refuse bad sampling flags before the model loads (each field is checked on its own)."""
    SamplingParams().with_overrides(**{name: getattr(args, name) for name in SAMPLING_FLAGS})


def sampling_from_args(args: argparse.Namespace, loaded) -> SamplingParams:
    """The checkpoint's defaults (for the thinking mode asked for) with the flags given."""
    defaults = loaded.default_sampling(enable_thinking=args.enable_thinking)
    return defaults.with_overrides(**{name: getattr(args, name) for name in SAMPLING_FLAGS})


def generation_options(args: argparse.Namespace, loaded) -> dict:
    return {"max_new_tokens": args.max_new_tokens, "sampling": sampling_from_args(args, loaded),
            "enable_thinking": args.enable_thinking}


def tolerate_unencodable_output() -> None:
    """Generated text can hold any character; a terminal that cannot show one gets a
    replacement instead of the command dying with UnicodeEncodeError."""
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="replace")
