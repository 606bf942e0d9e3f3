"""``qwen3 chat``: an interactive multi-turn chat on stdin/stdout.

Works on a terminal and with piped input. ``/reset`` clears the history, ``/exit`` (or end of
input) quits. Replies stream as they are generated; the thinking part is hidden unless
``--show-thinking``. ``--verbose`` writes one JSON line per turn to stderr with the rendered
prompt, the whole generated text, the answer kept in the history, and the timings.
"""

from __future__ import annotations

import argparse
import json
import sys

from qwen3core.cli.common import add_model_options
from qwen3core.cli.generate_cmd import (
    add_generation_options,
    add_tokenizer_option,
    generation_options,
    load_from_args,
    tolerate_unencodable_output,
)
from qwen3core.errors import GenerationError, Qwen3CoreError
from qwen3core.generation.chat import ChatReply, ChatSession

EXIT_COMMANDS = ("/exit", "/quit")
RESET_COMMAND = "/reset"
THINKING_PLACEHOLDER = "(thinking...)"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("chat", help="interactive multi-turn chat (streams replies)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_options(p)
    add_tokenizer_option(p)
    add_generation_options(p, default_max_new_tokens=1024)
    p.add_argument("--show-thinking", action="store_true",
                   help="print the model's reasoning (<think> part) as well as its answer")
    p.add_argument("--system", metavar="TEXT", default=None, help="a system message")
    p.add_argument("--verbose", action="store_true",
                   help="print backends, and per turn a JSON line (prompt, text, answer, "
                        "timings), to stderr")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    tolerate_unencodable_output()
    loaded = load_from_args(args)
    if loaded.tokenizer is None:
        raise Qwen3CoreError(f"{loaded.source} has no tokenizer; chat needs one: pass "
                             f"--tokenizer DIR (a directory with tokenizer.json and "
                             f"tokenizer_config.json)")
    options = generation_options(args, loaded)
    session = ChatSession(loaded.model, loaded.tokenizer, system=args.system,
                          enable_thinking=options.pop("enable_thinking"), **options)
    interactive = sys.stdin.isatty()
    if interactive:
        _enable_line_editing()
        print(f"Chatting with {loaded.source}. {RESET_COMMAND} clears the history, "
              f"{EXIT_COMMANDS[0]} or Ctrl-D quits.", file=sys.stderr)
    if args.verbose:
        print(f"sampling {options['sampling'].describe()}", file=sys.stderr)
        print("backends " + ", ".join(f"{c}={n}" for c, n in loaded.backends.items()),
              file=sys.stderr)
    turns = 0
    while True:
        try:
            line = input("you> " if interactive else "")
        except EOFError:
            break
        text = line.strip()
        if not text:
            continue
        if text in EXIT_COMMANDS:
            break
        if text == RESET_COMMAND:
            session.reset()
            print("(history cleared)", file=sys.stderr)
            continue
        try:
            reply = session.send(text)
            show_reply(reply, show_thinking=args.show_thinking, out=sys.stdout)
        except GenerationError as exc:  # e.g. the history outgrew the context: keep chatting
            print(f"qwen3 chat: error: {exc} (type {RESET_COMMAND} to start over)",
                  file=sys.stderr)
            continue
        except KeyboardInterrupt:
            print("\n(interrupted; this turn is not kept)", file=sys.stderr)
            continue
        turns += 1
        if args.verbose:
            turn = reply.turn
            print(json.dumps({"turn": turns, "prompt": turn.prompt, "text": turn.text,
                              "answer": turn.answer, "finish_reason": turn.result.finish_reason,
                              "timings": turn.result.timings.to_dict()}, ensure_ascii=False),
                  file=sys.stderr, flush=True)
    if interactive:
        print(file=sys.stderr)
    return 0


def show_reply(reply: ChatReply, *, show_thinking: bool, out) -> None:
    """Stream a reply; with ``show_thinking`` the reasoning is framed by <think> tags, else a
    terminal shows "(thinking...)" until the answer starts."""
    thinking_open = False
    placeholder = False
    for delta in reply:
        if show_thinking and delta.reasoning:
            if not thinking_open:
                out.write("<think>\n")
                thinking_open = True
            out.write(delta.reasoning)
        elif delta.reasoning and not placeholder and out.isatty():
            out.write(THINKING_PLACEHOLDER)
            placeholder = True
        if delta.answer and placeholder:
            out.write("\r\033[K")  # erase the placeholder line
            placeholder = False
        if delta.answer:
            if thinking_open:
                out.write("\n</think>\n\n")
                thinking_open = False
            out.write(delta.answer)
        out.flush()
    if thinking_open:  # the reply ended while still thinking (max_new_tokens)
        out.write("\n</think>")
    out.write("\n")
    out.flush()


def _enable_line_editing() -> None:
    try:
        import readline  # noqa: F401  (input() then offers history and editing)
    except ImportError:  # not on every platform; plain input() still works
        pass
