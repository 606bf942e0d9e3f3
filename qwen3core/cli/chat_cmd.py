"""``qwen3 chat``: an interactive multi-turn chat on stdin/stdout."""

from __future__ import annotations

import argparse
import json
import sys

from qwen3core.cli.chat_terminal import LineEditor, quiet_input_while
from qwen3core.cli.common import (
    HelpFormatter,
    add_model_options,
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
from qwen3core.errors import GenerationError, Qwen3CoreError
from qwen3core.generation.chat import ChatReply, ChatSession

THINKING_PLACEHOLDER = "(thinking...)"

#: command -> what it does (``/help`` prints this table).
COMMANDS = {
    "/help": "list these commands",
    "/reset": "forget the conversation (the system message stays)",
    "/settings": "show the model and the sampling settings in use",
    "/exit": "quit (also /quit, or Ctrl-D)",
}
EXIT_COMMANDS = ("/exit", "/quit")

DESCRIPTION = """\
Chat with a model, one message per line. Works on a terminal (line editing and history,
kept in ~/.local/state/qwen3core/chat_history or $QWEN3CORE_CHAT_HISTORY) and with piped
input. Replies stream as they are generated; the thinking part is hidden unless
--show-thinking. A line starting with / is a command (/help lists them); start a message
with // to send one that begins with /. --verbose writes one JSON line per turn to stderr
(rendered prompt, generated text, answer kept in the history, timings)."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("chat", help="interactive multi-turn chat (streams replies)",
                       description=DESCRIPTION, formatter_class=HelpFormatter)
    add_model_options(p)
    add_tokenizer_option(p)
    add_threads_option(p)
    add_generation_options(p, default_max_new_tokens=1024)
    p.add_argument("--show-thinking", action="store_true",
                   help="print the model's reasoning (<think> part) as well as its answer")
    p.add_argument("--system", metavar="TEXT", default=None, help="a system message")
    p.add_argument("--verbose", action="store_true",
                   help="print the model, backends and sampling settings, and per turn a JSON "
                        "line (prompt, text, answer, timings), to stderr")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    tolerate_unencodable_output()
    check_sampling_flags(args)
    loaded = load_from_args(args)
    if loaded.tokenizer is None:
        raise Qwen3CoreError(f"{loaded.source} has no tokenizer; chat needs one: pass "
                             f"--tokenizer DIR (a directory with tokenizer.json and "
                             f"tokenizer_config.json)")
    options = generation_options(args, loaded)
    sampling = options["sampling"]
    session = ChatSession(loaded.model, loaded.tokenizer, system=args.system,
                          enable_thinking=options.pop("enable_thinking"), **options)
    interactive = sys.stdin.isatty()
    editor = LineEditor() if interactive else None
    settings = (f"model    {loaded.source} ({str(loaded.dtype).replace('torch.', '')}, "
                f"{loaded.device})\nsampling {sampling.describe()}, at most "
                f"{args.max_new_tokens} new tokens per reply")
    if interactive:
        print(f"Chatting with {loaded.source}. /help lists the commands, /exit or Ctrl-D "
              f"quits.", file=sys.stderr)
    if args.verbose:
        print(settings, file=sys.stderr)
        print("backends " + ", ".join(f"{c}={n}" for c, n in loaded.backends.items()),
              file=sys.stderr)
    turns = failures = 0
    while True:
        try:
            line = editor.read("you> ") if editor else input()
        except EOFError:
            break
        except KeyboardInterrupt:  # Ctrl-C at the prompt: a fresh line, as shells do
            print(file=sys.stderr)
            continue
        text = line.strip()
        if not text:
            continue
        if text.startswith("/") and not text.startswith("//"):
            command = text.split()[0].lower()
            if command in EXIT_COMMANDS:
                break
            if command == "/help":
                for name, what in COMMANDS.items():
                    print(f"  {name:<10} {what}", file=sys.stderr)
                print("  //text     send a message that starts with /", file=sys.stderr)
            elif command == "/reset":
                session.reset()
                print("(history cleared)", file=sys.stderr)
            elif command == "/settings":
                print(settings, file=sys.stderr)
            else:
                print(f"qwen3 chat: unknown command {command}; /help lists the commands "
                      f"(start with // to send text beginning with /)", file=sys.stderr)
                failures += not interactive
            continue
        if text.startswith("//"):
            text = text[1:]
        try:
            with quiet_input_while(interactive):
                reply = session.send(text)
                show_reply(reply, show_thinking=args.show_thinking, out=sys.stdout)
        except GenerationError as exc:  # e.g. the history outgrew the context: keep chatting
            print(f"qwen3 chat: error: {exc} (type /reset to start over)", file=sys.stderr)
            failures += 1
            continue
        except KeyboardInterrupt:
            print("\n(interrupted; this turn is not kept)", file=sys.stderr)
            continue
        turns += 1
        result = reply.turn.result
        if result.finish_reason == "length":
            print(f"(reply cut off: it reached --max-new-tokens {args.max_new_tokens})",
                  file=sys.stderr)
        if args.verbose:
            turn = reply.turn
            print(json.dumps({"turn": turns, "prompt": turn.prompt, "text": turn.text,
                              "answer": turn.answer, "finish_reason": result.finish_reason,
                              "timings": result.timings.to_dict()}, ensure_ascii=False),
                  file=sys.stderr, flush=True)
    if interactive:
        print(file=sys.stderr)
    # Piped input that produced errors (bad commands, failed turns) is a failed run.
    return 1 if failures and not interactive else 0


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
    if placeholder:  # the reply ended while still thinking: say so instead of a blank line
        out.write("\r\033[K(the reply ended while still thinking)")
    if thinking_open:  # the reply ended while still thinking (max_new_tokens)
        out.write("\n</think>")
    out.write("\n")
    out.flush()
